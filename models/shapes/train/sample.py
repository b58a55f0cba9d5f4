"""Samples the current SD checkpoint (PyTorch, DDIM, classifier-free guidance) into a grid, to check training.

  python3 sample.py [--workdir /root/heed-shapes] [--raw] [--out /tmp/shapes-samples.png] [--steps 20] [--cfg 5]
Rows: prompts; columns: seeds. Prints the share of palette pixels of each prompt's colours per image.
"""
import argparse
import os

import env  # noqa: F401
import numpy as np
import torch
from PIL import Image

import architectures as arch
import tokenizer as shapes_tokenizer
import world

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow circle",
           "a red square and a blue triangle", "a green circle and a yellow square"]


@torch.no_grad()
def main():
    from diffusers import AutoencoderKL, DDIMScheduler
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/root/heed-shapes")
    p.add_argument("--raw", action="store_true")
    p.add_argument("--out", default="/tmp/shapes-samples.png")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--seeds", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(1)
    tok = shapes_tokenizer.load(os.path.join(args.workdir, "tokenizer"))
    state = torch.load(os.path.join(args.workdir, "sd", "ckpt.pt"))
    unet = arch.unet()
    unet.load_state_dict(state["modules"]["unet"] if args.raw else state["ema"])
    te = arch.sd_text_encoder(tok)
    # The EMA text encoder goes with the EMA UNet (train.py averages both); raw weights with raw weights.
    ema_text = state.get("extra_emas", {}).get("text_encoder")
    te.load_state_dict(state["modules"]["text_encoder"] if args.raw or ema_text is None else ema_text)
    vae = AutoencoderKL.from_pretrained(os.path.join(args.workdir, "vae", "vae"))
    unet.eval(), te.eval(), vae.eval()
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    sched.set_timesteps(args.steps)
    n = args.seeds
    rows = []
    for prompt in PROMPTS:
        ids = tok([prompt] * n + [""] * n, padding="max_length", max_length=77, return_tensors="pt").input_ids
        cond = te(ids).last_hidden_state
        x = torch.randn(n, 4, arch.LATENT_SIZE, arch.LATENT_SIZE, generator=torch.Generator().manual_seed(0))
        for t in sched.timesteps:
            eps = unet(torch.cat([x, x]), t, encoder_hidden_states=cond).sample
            e_c, e_u = eps[:n], eps[n:]
            x = sched.step(e_u + args.cfg * (e_c - e_u), t, x).prev_sample
        img = vae.decode(x / vae.config.scaling_factor).sample
        img = ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        colours = [w for w in prompt.split() if w in world.PALETTE]
        fr = [[round(world.colour_fraction(im, c), 3) for c in colours] for im in img]
        print(f"{prompt:40s} step {state['step']} colour fractions {fr}")
        rows.append(np.concatenate(list(img), 1))
    Image.fromarray(np.concatenate(rows, 0)).save(args.out)
    print("saved", args.out)


if __name__ == "__main__":
    main()
