"""Writes a folder of two-shape Shapes-world images for measuring where a subject's text points (Chefer relevance of
`a <colour> <shape>` on the Shapes CLIP), in the layout of test/fixtures/shapes/val:

  <name>.png           the 128x128 image (world.sample(seed, i, pair=True)), name = pair-<i>
  <name>.mask<k>.png   the k-th subject's mask (caption order), white (255) on black (0)
  index.json           {"split_seed", "images": [{"name", "caption", "subjects": [{"colour", "shape"}]}]}

  /usr/bin/python3 models/shapes/train/pair_eval_set.py --out /tmp/shapes-pairs --count 100 [--seed 2] [--start 2000]
  node dist/models/shapes/chefer-pointing.js --clip models/shapes/clip --images /tmp/shapes-pairs

Default seed: world.VAL_SEED (held out: the CLIP trains on world.TRAIN_SEED). Default start 2000 keeps the set apart
from the test fixtures (VAL_SEED pairs 1000..1011) and evaluate.py's CLIP images (VAL_SEED 10000..). Needs numpy and
PIL only.
"""
import argparse
import json
import os

import numpy as np
from PIL import Image

import world


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--seed", type=int, default=world.VAL_SEED)
    p.add_argument("--start", type=int, default=2000, help="first sample index")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    index = []
    for i in range(args.start, args.start + args.count):
        s = world.sample(args.seed, i, pair=True)
        name = f"pair-{i:05d}"
        Image.fromarray(s["image"]).save(os.path.join(args.out, name + ".png"))
        for k, m in enumerate(s["masks"]):
            Image.fromarray(m.astype(np.uint8) * 255).save(os.path.join(args.out, f"{name}.mask{k}.png"))
        index.append({"name": name, "caption": s["caption"],
                      "subjects": [{"colour": c, "shape": sh} for c, sh in s["subjects"]]})
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump({"generator": "models/shapes/train/world.py", "split_seed": args.seed, "palette": world.PALETTE,
                   "background": world.BACKGROUND, "images": index}, f, indent=1)
    print(f"wrote {args.count} pair images with {2 * args.count} masks to {args.out}")


if __name__ == "__main__":
    main()
