"""Quick evaluation of the trained Shapes models in PyTorch (the checkpoints that export.py exports).

  python3 evaluate.py [--workdir /root/heed-shapes] [--seeds 20] [--pair-seeds 5] [--steps 20] [--cfg 5]

- SD singles: for each of the 12 single-shape prompts x seeds (held out: generation seeds are unrelated to the
  training data), is the asked colour present (>= PRESENT_FRACTION of the pixels within 40 of the palette colour) and
  does the Shapes ViT classify the image as the asked shape?
- SD pairs: for two-subject prompts x seeds, the share of images missing a subject (its colour absent).
- ViT: accuracy on held-out single-shape images (world split VAL_SEED). CLIP: how often the right caption (up to the
  order of the two subjects) ranks first among the grammar's 84 captions, on held-out images with one or two shapes.
Sampler: diffusers DDIMScheduler with the training betas, classifier-free guidance; Heed's own runs use the exported
ONNX pipeline and are reported separately in the model card.
"""
import argparse
import itertools
import json
import os

import env  # noqa: F401
import numpy as np
import torch

import architectures as arch
import tokenizer as shapes_tokenizer
import train
import world

PRESENT_FRACTION = 0.01


def load_sd(workdir, raw=False):
    from diffusers import AutoencoderKL
    tok = shapes_tokenizer.load(os.path.join(workdir, "tokenizer"))
    state = torch.load(os.path.join(workdir, "sd", "ckpt.pt"))
    unet = arch.unet()
    unet.load_state_dict(state["modules"]["unet"] if raw else state["ema"])
    te = arch.sd_text_encoder(tok)
    # The EMA text encoder goes with the EMA UNet (train.py averages both); raw weights with raw weights.
    ema_text = state.get("extra_emas", {}).get("text_encoder")
    te.load_state_dict(state["modules"]["text_encoder"] if raw or ema_text is None else ema_text)
    vae = AutoencoderKL.from_pretrained(os.path.join(workdir, "vae", "vae"))
    for m in (unet, te, vae):
        m.eval()
    return tok, unet, te, vae, state["step"]


@torch.no_grad()
def generate(sd, prompts, seeds, steps=20, cfg=5.0):
    """uint8 images [len(prompts)*len(seeds), 128, 128, 3], prompt-major; latents from torch.manual_seed(seed)."""
    from diffusers import DDIMScheduler
    tok, unet, te, vae, _ = sd
    out = []
    for prompt in prompts:
        n = len(seeds)
        ids = tok([prompt] * n + [""] * n, padding="max_length", max_length=77, return_tensors="pt").input_ids
        cond = te(ids).last_hidden_state
        x = torch.cat([torch.randn(1, 4, arch.LATENT_SIZE, arch.LATENT_SIZE, generator=torch.Generator().manual_seed(s))
                       for s in seeds])
        sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
        sched.set_timesteps(steps)
        for t in sched.timesteps:
            eps = unet(torch.cat([x, x]), t, encoder_hidden_states=cond).sample
            x = sched.step(eps[n:] + cfg * (eps[:n] - eps[n:]), t, x).prev_sample
        img = vae.decode(x / vae.config.scaling_factor).sample
        out.append(((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def load_vit(workdir):
    model = arch.vit()
    model.load_state_dict(torch.load(os.path.join(workdir, "vit", "ckpt.pt"))["modules"]["vit"])
    return model.eval()


@torch.no_grad()
def vit_shapes(vit, images):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    labels = arch.vit_labels()
    return [labels[i].split()[1] for i in vit(pixel_values=x).logits.argmax(-1).tolist()]


def eval_sd(workdir, seeds, pair_seeds, steps, cfg, raw):
    sd = load_sd(workdir, raw)
    vit = load_vit(workdir) if os.path.exists(os.path.join(workdir, "vit", "ckpt.pt")) else None
    singles = [f"a {c} {s}" for s in world.SHAPES for c in world.COLOURS]
    imgs = generate(sd, singles, list(range(seeds)), steps, cfg)
    colour_ok, shape_ok = [], []
    for k, prompt in enumerate(singles):
        _, c, s = prompt.split()
        block = imgs[k * seeds:(k + 1) * seeds]
        colour_ok += [world.colour_fraction(im, c) >= PRESENT_FRACTION for im in block]
        if vit is not None:
            shape_ok += [p == s for p in vit_shapes(vit, block)]
    rng = np.random.default_rng(0)
    pair_caps = [c for c in world.grammar_captions() if " and " in c]
    pairs = [pair_caps[i] for i in rng.choice(len(pair_caps), size=12, replace=False)]
    pimgs = generate(sd, pairs, list(range(pair_seeds)), steps, cfg)
    miss_any, miss_subject = 0, 0
    per_prompt = {}
    for k, prompt in enumerate(pairs):
        cols = [w for w in prompt.split() if w in world.PALETTE]
        block = pimgs[k * pair_seeds:(k + 1) * pair_seeds]
        present = [[world.colour_fraction(im, c) >= PRESENT_FRACTION for c in cols] for im in block]
        per_prompt[prompt] = present
        miss_any += sum(not all(p) for p in present)
        miss_subject += sum(not x for p in present for x in p)
    n_pair_imgs = len(pairs) * pair_seeds
    return {"sd_step": sd[4], "singles_colour_present": float(np.mean(colour_ok)),
            "singles_shape_vit": float(np.mean(shape_ok)) if shape_ok else None,
            "single_images": len(colour_ok), "pair_images": n_pair_imgs,
            "pair_images_missing_a_subject": miss_any / n_pair_imgs,
            "pair_subjects_missing": miss_subject / (2 * n_pair_imgs), "pairs": per_prompt,
            "sampler": f"DDIM {steps} steps, cfg {cfg}, {'raw' if raw else 'EMA'} UNet"}


@torch.no_grad()
def eval_vit(workdir, n=300):
    vit = load_vit(workdir)
    samples = [world.sample(world.VAL_SEED, i, pair=False) for i in range(n)]
    pred = arch.vit_labels()
    x = torch.from_numpy(np.stack([s["image"] for s in samples])).permute(0, 3, 1, 2).float() / 127.5 - 1
    p = vit(pixel_values=x).logits.argmax(-1).tolist()
    acc = np.mean([pred[i] == f"{s['subjects'][0][0]} {s['subjects'][0][1]}" for i, s in zip(p, samples)])
    shape_acc = np.mean([pred[i].split()[1] == s["subjects"][0][1] for i, s in zip(p, samples)])
    return {"vit_accuracy_12_classes": float(acc), "vit_shape_accuracy": float(shape_acc), "vit_images": n}


@torch.no_grad()
def clip_top1(model, tok, samples):
    """Share of samples whose best grammar caption names their subjects (either order)."""
    caps = world.grammar_captions()
    enc = tok(caps, padding="max_length", max_length=77, return_tensors="pt")
    x = torch.from_numpy(np.stack([s["image"] for s in samples])).permute(0, 3, 1, 2).float() / 255
    out = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                pixel_values=(x - train.CLIP_MEAN) / train.CLIP_STD)
    best = out.logits_per_image.argmax(-1).tolist()
    keys = [frozenset(tuple(p.split()[1:3]) for p in c.split(" and ")) for c in caps]
    return [keys[b] == frozenset(s["subjects"]) for b, s in zip(best, samples)]


@torch.no_grad()
def eval_clip(workdir, n=300, pair_images=0):
    tok = shapes_tokenizer.load(os.path.join(workdir, "tokenizer"))
    model = arch.clip(tok)
    model.load_state_dict(torch.load(os.path.join(workdir, "clip", "ckpt.pt"))["modules"]["clip"])
    model.eval()
    samples = [world.sample(world.VAL_SEED, 10_000 + i) for i in range(n)]
    ok = clip_top1(model, tok, samples)
    single = [o for o, s in zip(ok, samples) if len(s["subjects"]) == 1]
    pair = [o for o, s in zip(ok, samples) if len(s["subjects"]) == 2]
    res = {"clip_top1_caption": float(np.mean(ok)), "clip_top1_single": float(np.mean(single)),
           "clip_top1_pair": float(np.mean(pair)) if pair else None, "clip_images": n}
    if pair_images:
        # Two-shape images only (the world draws 25 %), the set pair_eval_set.py writes for Chefer pointing: where
        # the captions differ only in which colour goes with which shape.
        pairs = [world.sample(world.VAL_SEED, 2000 + i, pair=True) for i in range(pair_images)]
        res.update({"clip_top1_pair_only": float(np.mean(clip_top1(model, tok, pairs))), "clip_pair_images": pair_images})
    return res


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/root/heed-shapes")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--pair-seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--raw", action="store_true")
    p.add_argument("--only", default="sd,vit,clip")
    p.add_argument("--out", default=None)
    p.add_argument("--clip-pairs", type=int, default=0,
                   help="also score CLIP on this many two-shape images (VAL_SEED 2000.., as pair_eval_set.py)")
    args = p.parse_args()
    torch.set_num_threads(1)
    res = {}
    parts = args.only.split(",")
    if "vit" in parts:
        res.update(eval_vit(args.workdir))
    if "clip" in parts:
        res.update(eval_clip(args.workdir, pair_images=args.clip_pairs))
    if "sd" in parts:
        res.update(eval_sd(args.workdir, args.seeds, args.pair_seeds, args.steps, args.cfg, args.raw))
    print(json.dumps({k: v for k, v in res.items() if k != "pairs"}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
