"""Checks the exported SD folder through Heed itself (the built CLI), scoring Heed's PNGs and maps by colour.

  python3 heed_check.py [--model models/shapes/sd] [--singles 12] [--seeds 0,1] [--pairs 6] [--pair-seeds 0,1]
                        [--steps 20] [--guidance 5] [--ae-res 8] [--out /tmp/shapes-heed-check]

Singles: `heed generate --maps`; colour present (>= 1 % of pixels within 40 of the palette colour); pointing game for
the shape word (the 16x16 map's maximum cell has the subject's colour at its centre) and IoU of the map thresholded at
0.4 of its range (DAAM's tau) with the subject's colour mask. Pairs: `heed generate --excite <shape1>,<shape2>
--compare`: per subject, colour present in the plain run and in the A&E run (same seed).
Needs `npm run build` first. No python onnxruntime involved: every number comes from Heed's outputs.
"""
import argparse
import json
import os
import subprocess

import numpy as np
from PIL import Image

import world

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))
CLI = os.path.join(REPO, "dist/engine/cli/main.js")


def heed(args):
    r = subprocess.run(["node", CLI] + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"heed {' '.join(args)} failed: {r.stderr}")
    return r.stdout


def colour_mask(image, colour, tol=40):
    return np.abs(image.astype(np.int32) - np.array(world.PALETTE[colour])).max(-1) <= tol


def map_scores(map16, mask):
    cell = mask.shape[0] // map16.shape[0]
    i, j = np.unravel_index(int(np.argmax(map16)), map16.shape)
    point = bool(mask[i * cell + cell // 2, j * cell + cell // 2])
    norm = (map16 - map16.min()) / max(1e-12, float(map16.max() - map16.min()))
    pred = np.kron(norm >= 0.4, np.ones((cell, cell), bool))
    inter, union = float((pred & mask).sum()), float((pred | mask).sum())
    return point, inter / union if union else 0.0


def word_map(run_dir, word):
    for f in sorted(os.listdir(os.path.join(run_dir, "maps"))):
        if f.endswith(f"-{word}.npy"):
            return np.load(os.path.join(run_dir, "maps", f))
    raise FileNotFoundError(f"no map for {word} in {run_dir}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=os.path.join(REPO, "models/shapes/sd"))
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--pair-seeds", default="0,1")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--ae-res", type=int, default=8)
    p.add_argument("--out", default="/tmp/shapes-heed-check")
    a = p.parse_args()
    common = ["--model", a.model, "--size", "128x128", "--steps", str(a.steps), "--guidance", str(a.guidance), "--quiet"]
    singles = [f"a {c} {s}" for s in world.SHAPES for c in world.COLOURS]
    res = {"singles": [], "pairs": []}
    for prompt in singles:
        _, colour, shape = prompt.split()
        for seed in map(int, a.seeds.split(",")):
            d = os.path.join(a.out, "single", f"{colour}-{shape}-{seed}")
            heed(["generate", "--prompt", prompt, "--seed", str(seed), "--maps", "--out", d] + common)
            img = np.asarray(Image.open(os.path.join(d, "image.png")).convert("RGB"))
            mask = colour_mask(img, colour)
            point, iou = map_scores(word_map(d, shape), mask) if mask.any() else (False, 0.0)
            res["singles"].append({"prompt": prompt, "seed": seed, "colour_fraction": float(mask.mean()),
                                   "pointing": point, "iou": iou})
            print(res["singles"][-1], flush=True)
    pair_caps = [c for c in world.grammar_captions() if " and " in c]
    rng = np.random.default_rng(0)
    for prompt in [pair_caps[i] for i in rng.choice(len(pair_caps), size=a.pairs, replace=False)]:
        words = prompt.split()
        colours, shapes = [words[1], words[5]], [words[2], words[6]]
        for seed in map(int, a.pair_seeds.split(",")):
            d = os.path.join(a.out, "pair", f"{'-'.join(words[1:3] + words[5:7])}-{seed}")
            heed(["generate", "--prompt", prompt, "--seed", str(seed), "--excite", ",".join(shapes), "--compare",
                  "--ae-res", str(a.ae_res), "--out", d] + common)
            row = {"prompt": prompt, "seed": seed}
            for tag, f in [("plain", os.path.join(d, "plain", "image.png")), ("ae", os.path.join(d, "image.png"))]:
                img = np.asarray(Image.open(f).convert("RGB"))
                row[tag] = [bool(colour_mask(img, c).mean() >= 0.01) for c in colours]
            res["pairs"].append(row)
            print(row, flush=True)
    s = res["singles"]
    pr = res["pairs"]
    summary = {
        "single_runs": len(s),
        "colour_present": float(np.mean([x["colour_fraction"] >= 0.01 for x in s])),
        "pointing_shape_word": float(np.mean([x["pointing"] for x in s])),
        "mean_iou_shape_word": float(np.mean([x["iou"] for x in s])),
        "pair_runs": len(pr),
        "plain_missing_a_subject": float(np.mean([not all(x["plain"]) for x in pr])) if pr else None,
        "ae_missing_a_subject": float(np.mean([not all(x["ae"]) for x in pr])) if pr else None,
        "settings": {"steps": a.steps, "guidance": a.guidance, "ae_res": a.ae_res, "scheduler": "the folder's (PNDM)"},
    }
    res["summary"] = summary
    print(json.dumps(summary, indent=1))
    with open(os.path.join(a.out, "heed_check.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
