"""Writes a folder of single-shape Shapes-world images for `heed eval explain`: per sample i

  <i>.png          the 128x128 image (world.sample(seed, i, pair=False))
  <i>.mask.png     the shape's mask, white (255) on black (0)
  <i>.label.txt    its class as the Shapes ViT names it ("red circle", ...: colour and shape, config.json id2label)

  /usr/bin/python3 models/shapes/train/explain_eval_set.py --out /tmp/shapes-eval --count 100 [--seed 2]

Default seed: world.VAL_SEED (held out from ViT training, which uses world.TRAIN_SEED). Needs numpy and PIL only.
"""
import argparse
import os

import numpy as np
from PIL import Image

import world


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--seed", type=int, default=world.VAL_SEED)
    p.add_argument("--start", type=int, default=0, help="first sample index")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    width = len(str(args.start + args.count - 1))
    for i in range(args.start, args.start + args.count):
        d = world.sample(args.seed, i, pair=False)
        stem = os.path.join(args.out, str(i).zfill(width))
        Image.fromarray(d["image"]).save(stem + ".png")
        Image.fromarray(d["masks"][0].astype(np.uint8) * 255).save(stem + ".mask.png")
        colour, shape = d["subjects"][0]
        with open(stem + ".label.txt", "w") as f:
            f.write(f"{colour} {shape}\n")
    print(f"wrote {args.count} images with masks and labels to {args.out}")


if __name__ == "__main__":
    main()
