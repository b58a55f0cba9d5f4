"""Trains the Shapes models. One command per model; each resumes from its last checkpoint in --workdir.

  python3 train.py --model vae     # AutoencoderKL; then computes scaling_factor and caches the dataset's latents
  python3 train.py --model sd      # UNet2DConditionModel + CLIPTextModel, jointly, on the cached latents
  python3 train.py --model clip    # CLIPModel, contrastive
  python3 train.py --model vit     # ViTForImageClassification, shape x colour (12 classes) on single-shape images

Use /usr/bin/python3 (Debian python3-torch 1.13). Everything is seeded (torch.manual_seed(SEED[model]) before the
model is built; batch indices from numpy default_rng([SEED[model], step])), so the same command with the same --steps
retrains the same model up to floating-point summation order.
"""
import argparse
import json
import math
import os
import time

import env  # noqa: F401
import numpy as np
import torch
import torch.nn.functional as F

import architectures as arch
import tokenizer as shapes_tokenizer
import world

SEED = {"vae": 10, "sd": 11, "clip": 12, "vit": 13}
DEFAULT_STEPS = {"vae": 450, "sd": 6000, "clip": 6000, "vit": 4000}
BATCH = {"vae": 16, "sd": 16, "clip": 64, "vit": 32}
LR = {"vae": 1e-3, "sd": 1e-3, "clip": 1e-3, "vit": 1e-3}
WARMUP = 50
# Training images whose latents are cached for the UNet.
N_LATENT_IMAGES = int(os.environ.get("HEED_SHAPES_N_LATENTS", "4000"))
VAE_CROP = 64
CAPTION_DROPOUT = 0.1
EMA_DECAY = 0.99
# Second phase of the SD recipe (added after the first 3000 steps were trained at a constant rate): from this step on
# the learning rate follows a cosine from LR to LR * SD_LR_FLOOR at the run's last step, and the EMA averages over
# ~1000 steps instead of ~100 — smoother weights for sampling once the loss has plateaued.
SD_DECAY_FROM = 3000
SD_LR_FLOOR = 0.1
SD_EMA_DECAY_LATE = 0.999
# Second phase of the CLIP recipe (added after the first 3000 steps, which reached 100 % caption accuracy while the
# Chefer relevance of a subject's text, `a red circle`, peaked on the OTHER subject of a pair image for 17 % of
# held-out subjects): from this step on half of each batch are two-shape images (PAIR_FRACTION, 25 %, before), every
# two-shape image also brings its colour-swapped caption as a hard negative text ("a red circle and a blue square" ->
# "a blue circle and a red square": same words, other binding), and the learning rate follows a cosine from LR to
# LR * CLIP_LR_FLOOR at the run's last step. Localising a subject's text needs images whose captions differ only in
# which colour goes with which shape; single-shape images never ask for that. (The log's `bind` is the share of pair
# images that score their own caption above the swapped one: ~1.0 from the start, so the hard negatives mostly sharpen
# a margin; the measured gain, model card, may come as much from the pair share and the decay.)
CLIP_BINDING_FROM = 3000
CLIP_PAIR_SHARE_LATE = 0.5
CLIP_LR_FLOOR = 0.1
CHECKPOINT_EVERY_S = 180

CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def log(workdir, msg):
    line = f"{time.strftime('%H:%M:%S')} {msg}"
    print(line, flush=True)
    with open(os.path.join(workdir, "log.txt"), "a") as f:
        f.write(line + "\n")


def batch_images(seed, step, n, pair=None, index_range=None, pair_share=None):
    """n world samples for a step: fresh indices (infinite data) unless index_range bounds them.

    pair_share: the first round(n * pair_share) samples are forced to two shapes, the rest to one (instead of the
    world's PAIR_FRACTION); the indices are the same, the scenes differ from the pair=None ones."""
    rng = np.random.default_rng([seed, step])
    if index_range is None:
        idx = step * n + np.arange(n)
    else:
        idx = rng.integers(0, index_range, size=n)
    if pair_share is None:
        pairs = [pair] * n
    else:
        n_pair = round(n * pair_share)
        pairs = [True] * n_pair + [False] * (n - n_pair)
    samples = [world.sample(world.TRAIN_SEED, int(i), pair=p) for i, p in zip(idx, pairs)]
    images = torch.from_numpy(np.stack([s["image"] for s in samples])).permute(0, 3, 1, 2).float() / 255.0
    return images, samples


def lr_at(step, base, name=None, total=None):
    warm = base * min(1.0, (step + 1) / WARMUP)
    decay_from, floor = {"sd": (SD_DECAY_FROM, SD_LR_FLOOR), "clip": (CLIP_BINDING_FROM, CLIP_LR_FLOOR)}.get(name, (None, None))
    if decay_from is None or total is None or step < decay_from or total <= decay_from:
        return warm
    t = (step - decay_from) / (total - decay_from)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def ema_decay_at(name, step):
    return SD_EMA_DECAY_LATE if name == "sd" and step >= SD_DECAY_FROM else EMA_DECAY


class Trainer:
    def __init__(self, name, workdir, modules, params, steps):
        self.name, self.workdir, self.modules, self.steps = name, workdir, modules, steps
        self.opt = torch.optim.AdamW(params, lr=LR[name], weight_decay=1e-2)
        self.step = 0
        self.ema = None
        # EMAs of further modules trained jointly with the first (the SD text encoder): sampling must pair the EMA UNet
        # with an EMA text encoder of the same age, or the UNet sees embeddings it was not averaged on.
        self.extra_emas = {}
        self.ckpt = os.path.join(workdir, "ckpt.pt")
        self.last_save = time.time()

    def enable_ema(self, module):
        self.ema = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.ema_module = module

    def enable_extra_ema(self, key, module):
        self.extra_emas[key] = (module, {k: v.detach().clone() for k, v in module.state_dict().items()})

    def update_ema(self):
        if self.ema is None:
            return
        decay = ema_decay_at(self.name, self.step)
        with torch.no_grad():
            for module, ema in [(self.ema_module, self.ema)] + list(self.extra_emas.values()):
                for k, v in module.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[k].mul_(decay).add_(v, alpha=1 - decay)
                    else:
                        ema[k].copy_(v)

    def resume(self):
        if os.path.exists(self.ckpt):
            state = torch.load(self.ckpt)
            for k, m in self.modules.items():
                m.load_state_dict(state["modules"][k])
            self.opt.load_state_dict(state["opt"])
            self.step = state["step"]
            if state.get("ema") is not None:
                self.ema = state["ema"]
            for key, (module, _) in list(self.extra_emas.items()):
                saved = state.get("extra_emas", {}).get(key)
                if saved is not None:
                    self.extra_emas[key] = (module, saved)
                else:  # a checkpoint from before this EMA existed: it starts from the resumed weights
                    self.extra_emas[key] = (module, {k: v.detach().clone() for k, v in module.state_dict().items()})
                    log(self.workdir, f"EMA of {key} starts at step {self.step}")
            torch.set_rng_state(state["torch_rng"])
            log(self.workdir, f"resumed at step {self.step}")

    def save(self, final=False):
        state = {"modules": {k: m.state_dict() for k, m in self.modules.items()}, "opt": self.opt.state_dict(),
                 "step": self.step, "ema": self.ema, "torch_rng": torch.get_rng_state(),
                 "extra_emas": {k: ema for k, (_, ema) in self.extra_emas.items()}}
        torch.save(state, self.ckpt + ".tmp")
        os.replace(self.ckpt + ".tmp", self.ckpt)
        self.last_save = time.time()

    def run(self, loss_fn, deadline=None):
        t0 = time.time()
        losses = []
        while self.step < self.steps:
            if deadline is not None and time.time() > deadline:
                log(self.workdir, f"deadline reached at step {self.step}")
                break
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.step, LR[self.name], self.name, self.steps)
            loss, extra = loss_fn(self.step)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 1.0)
            self.opt.step()
            self.update_ema()
            self.step += 1
            losses.append(loss.item())
            if self.step % 25 == 0 or self.step == self.steps:
                dt = (time.time() - t0) / len(losses)
                log(self.workdir, f"step {self.step}/{self.steps} loss {np.mean(losses[-25:]):.5f} {extra} "
                                  f"{dt:.2f}s/step")
            if time.time() - self.last_save > CHECKPOINT_EVERY_S:
                self.save()
        self.save()
        with open(os.path.join(self.workdir, "done.json"), "w") as f:
            json.dump({"step": self.step, "final_loss_mean_last_100": float(np.mean(losses[-100:])) if losses else None},
                      f)
        log(self.workdir, f"finished at step {self.step}")


def train_vae(args, workdir):
    torch.manual_seed(SEED["vae"])
    model = arch.vae()
    log(workdir, f"vae params {sum(p.numel() for p in model.parameters())}")
    tr = Trainer("vae", workdir, {"vae": model}, model.parameters(), args.steps or DEFAULT_STEPS["vae"])
    tr.resume()

    def loss_fn(step):
        x, _ = batch_images(SEED["vae"], step, BATCH["vae"])
        # The VAE is convolutional: random VAE_CROP crops (aligned to the 8-pixel latent grid) teach it the same flat
        # colours and edges at a quarter of the cost of full images.
        rng = np.random.default_rng([SEED["vae"], step, 1])
        ox, oy = (rng.integers(0, (arch.IMAGE_SIZE - VAE_CROP) // 8 + 1, size=2) * 8).tolist()
        x = x[:, :, oy:oy + VAE_CROP, ox:ox + VAE_CROP] * 2 - 1
        post = model.encode(x).latent_dist
        rec = model.decode(post.sample()).sample
        mse = F.mse_loss(rec, x)
        kl = post.kl().mean() / (4 * (VAE_CROP // 8) ** 2)
        return mse + 1e-4 * kl, f"mse {mse.item():.5f} kl {kl.item():.3f}"

    tr.run(loss_fn, args.deadline)
    cache_latents(model, workdir)


@torch.no_grad()
def cache_latents(model, workdir):
    """Encodes N_LATENT_IMAGES training images once; scaling_factor = 1 / std of the latents (as SD's 0.18215)."""
    model.eval()
    gen = torch.Generator().manual_seed(SEED["vae"])
    lat, caps = [], []
    for start in range(0, N_LATENT_IMAGES, 100):
        samples = [world.sample(world.TRAIN_SEED, i) for i in range(start, start + 100)]
        x = torch.from_numpy(np.stack([s["image"] for s in samples])).permute(0, 3, 1, 2).float() / 127.5 - 1
        d = model.encode(x).latent_dist
        lat.append(d.mean + d.std * torch.randn(d.mean.shape, generator=gen))
        caps += [s["caption"] for s in samples]
    lat = torch.cat(lat)
    scaling = float(1.0 / lat.std())
    model.register_to_config(scaling_factor=scaling)
    model.save_pretrained(os.path.join(workdir, "vae"), safe_serialization=False)
    torch.save({"latents": lat, "captions": caps, "scaling_factor": scaling}, os.path.join(workdir, "latents.pt"))
    log(workdir, f"cached {len(caps)} latents, std {lat.std():.4f}, scaling_factor {scaling:.5f}")


def train_sd(args, workdir, vae_dir):
    cache = torch.load(os.path.join(vae_dir, "latents.pt"))
    latents = cache["latents"] * cache["scaling_factor"]
    captions = cache["captions"]
    tok = shapes_tokenizer.load(os.path.join(workdir, "tokenizer"))
    ids_all = tok(captions, padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    ids_empty = tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids[0]
    torch.manual_seed(SEED["sd"])
    text_encoder = arch.sd_text_encoder(tok)
    unet = arch.unet()
    sched = arch.noise_scheduler()
    log(workdir, f"unet params {sum(p.numel() for p in unet.parameters())}, text encoder params "
                 f"{sum(p.numel() for p in text_encoder.parameters())}")
    tr = Trainer("sd", workdir, {"unet": unet, "text_encoder": text_encoder},
                 list(unet.parameters()) + list(text_encoder.parameters()), args.steps or DEFAULT_STEPS["sd"])
    tr.enable_ema(unet)
    tr.enable_extra_ema("text_encoder", text_encoder)
    tr.resume()

    def loss_fn(step):
        rng = np.random.default_rng([SEED["sd"], step])
        idx = torch.from_numpy(rng.integers(0, len(captions), size=BATCH["sd"]))
        x0 = latents[idx]
        ids = ids_all[idx].clone()
        drop = torch.from_numpy(rng.random(BATCH["sd"]) < CAPTION_DROPOUT)
        ids[drop] = ids_empty
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (BATCH["sd"],))
        xt = sched.add_noise(x0, noise, t)
        cond = text_encoder(ids).last_hidden_state
        pred = unet(xt, t, encoder_hidden_states=cond).sample
        return F.mse_loss(pred, noise), ""

    tr.run(loss_fn, args.deadline)


def soft_targets(samples):
    """Contrastive targets: images whose subject SETS are equal count as positives of each other's captions."""
    keys = [frozenset(s["subjects"]) for s in samples]
    eq = torch.tensor([[float(a == b) for b in keys] for a in keys])
    return eq / eq.sum(-1, keepdim=True)


def swapped_subjects(subjects):
    """The hard negative of a two-shape scene: the same colours and shapes, each colour on the other shape."""
    (c1, s1), (c2, s2) = subjects
    return [(c2, s1), (c1, s2)]


def clip_loss_with_hard_negatives(logits_per_image, samples, extra_subjects):
    """Symmetric InfoNCE where the texts are the batch's captions followed by extra (hard negative) captions.

    A text is a positive of every image with the same subject SET (so a swapped caption that happens to describe
    another image of the batch is that image's positive, not a negative). Image -> text: over all texts. Text ->
    image: over the texts that have a positive image in the batch (a hard negative usually has none)."""
    image_keys = [frozenset(s["subjects"]) for s in samples]
    text_keys = image_keys + [frozenset(x) for x in extra_subjects]
    eq = torch.tensor([[float(a == b) for b in text_keys] for a in image_keys])  # [images, texts]
    li = -(eq / eq.sum(-1, keepdim=True) * F.log_softmax(logits_per_image, -1)).sum(-1).mean()
    has = eq.sum(0) > 0
    eq_t, logits_t = eq.t()[has], logits_per_image.t()[has]
    lt = -(eq_t / eq_t.sum(-1, keepdim=True) * F.log_softmax(logits_t, -1)).sum(-1).mean()
    return (li + lt) / 2


def train_clip(args, workdir):
    tok = shapes_tokenizer.load(os.path.join(workdir, "tokenizer"))
    torch.manual_seed(SEED["clip"])
    model = arch.clip(tok)
    log(workdir, f"clip params {sum(p.numel() for p in model.parameters())}")
    tr = Trainer("clip", workdir, {"clip": model}, model.parameters(), args.steps or DEFAULT_STEPS["clip"])
    tr.resume()

    def loss_fn(step):
        binding = step >= CLIP_BINDING_FROM
        x, samples = batch_images(SEED["clip"], step, BATCH["clip"], pair_share=CLIP_PAIR_SHARE_LATE if binding else None)
        pix = (x - CLIP_MEAN) / CLIP_STD
        if not binding:
            enc = tok([s["caption"] for s in samples], padding="max_length", max_length=tok.model_max_length,
                      return_tensors="pt")
            out = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=pix)
            target = soft_targets(samples)
            li = -(target * F.log_softmax(out.logits_per_image, -1)).sum(-1).mean()
            lt = -(target * F.log_softmax(out.logits_per_text, -1)).sum(-1).mean()
            return (li + lt) / 2, f"scale {model.logit_scale.exp().item():.1f}"
        extra = [swapped_subjects(s["subjects"]) for s in samples if len(s["subjects"]) == 2]
        texts = [s["caption"] for s in samples] + [world.caption_of(x) for x in extra]
        enc = tok(texts, padding="max_length", max_length=tok.model_max_length, return_tensors="pt")
        out = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=pix)
        loss = clip_loss_with_hard_negatives(out.logits_per_image, samples, extra)
        # How often a pair image prefers its own caption to its colour-swapped one: the binding being learned.
        n = len(samples)
        pair_rows = [i for i, s in enumerate(samples) if len(s["subjects"]) == 2]
        own = out.logits_per_image[pair_rows, pair_rows]
        swapped = out.logits_per_image[pair_rows, n + torch.arange(len(pair_rows))]
        bind = (own > swapped).float().mean().item()
        return loss, f"scale {model.logit_scale.exp().item():.1f} bind {bind:.3f}"

    tr.run(loss_fn, args.deadline)


def train_vit(args, workdir):
    torch.manual_seed(SEED["vit"])
    model = arch.vit()
    labels = arch.vit_labels()
    log(workdir, f"vit params {sum(p.numel() for p in model.parameters())}")
    tr = Trainer("vit", workdir, {"vit": model}, model.parameters(), args.steps or DEFAULT_STEPS["vit"])
    tr.resume()

    def loss_fn(step):
        x, samples = batch_images(SEED["vit"], step, BATCH["vit"], pair=False)
        y = torch.tensor([labels.index(f"{s['subjects'][0][0]} {s['subjects'][0][1]}") for s in samples])
        logits = model(pixel_values=x * 2 - 1).logits
        acc = (logits.argmax(-1) == y).float().mean().item()
        return F.cross_entropy(logits, y), f"acc {acc:.3f}"

    tr.run(loss_fn, args.deadline)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, choices=["vae", "sd", "clip", "vit"])
    p.add_argument("--workdir", default=os.environ.get("HEED_SHAPES_WORKDIR", "/root/heed-shapes"))
    p.add_argument("--steps", type=int, default=0, help="training steps (default: DEFAULT_STEPS)")
    p.add_argument("--deadline", type=str, default=None, help="stop early at this UTC time HH:MM (saved as usual)")
    # One thread: on a shared, oversubscribed 2-core machine OpenMP's second thread made steps 4x SLOWER (measured).
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    # Denormal floats can make CPU kernels 100x slower late in training; flush them to zero.
    torch.set_flush_denormal(True)
    if args.deadline:
        hh, mm = map(int, args.deadline.split(":"))
        now = time.gmtime()
        args.deadline = time.time() + ((hh * 60 + mm) - (now.tm_hour * 60 + now.tm_min)) * 60 - now.tm_sec
    root = args.workdir
    os.makedirs(root, exist_ok=True)
    tok_dir = os.path.join(root, "tokenizer")
    if not os.path.exists(os.path.join(tok_dir, "vocab.json")):
        shapes_tokenizer.write(tok_dir)
    workdir = os.path.join(root, args.model)
    os.makedirs(workdir, exist_ok=True)
    if not os.path.exists(os.path.join(workdir, "tokenizer")):
        os.symlink(tok_dir, os.path.join(workdir, "tokenizer"))
    if args.model == "vae":
        train_vae(args, workdir)
    elif args.model == "sd":
        train_sd(args, workdir, os.path.join(root, "vae"))
    elif args.model == "clip":
        train_clip(args, workdir)
    else:
        train_vit(args, workdir)


if __name__ == "__main__":
    main()
