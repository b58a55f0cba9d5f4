"""The Shapes world: a deterministic, seeded generator of images, captions and one mask per shape.

Images are 128x128 RGB, background (240, 240, 240), one or two non-overlapping shapes (bounding boxes at least
MARGIN pixels apart) from {circle, square, triangle}, each filled with one palette colour, no anti-aliasing and no
noise, so that every pixel is either background or exactly one palette colour: images can be checked by colour.
Shape sizes (bounding-box side) are 25-45 % of the image side. Captions: `a <colour> <shape>` and, for two shapes,
`a <colour> <shape> and a <colour> <shape>` (two different colours and two different shapes, either order).
Two-shape scenes are rarer (PAIR_FRACTION) so that a small model binds them weakly and neglects subjects, as
Stable Diffusion does.

Sample i of split `seed` is a pure function of (seed, i): numpy's default_rng([seed, i]).
"""
import numpy as np

SIZE = 128
BACKGROUND = (240, 240, 240)
PALETTE = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 40),
}
COLOURS = list(PALETTE)
SHAPES = ["circle", "square", "triangle"]
MIN_FRAC, MAX_FRAC = 0.25, 0.45
MARGIN = 4
PAIR_FRACTION = 0.25
# Seeds of the splits used by the training scripts; evaluation uses other seeds (held out).
TRAIN_SEED = 1
VAL_SEED = 2


def shape_mask(shape, x0, y0, s, size=SIZE):
    """Boolean [size, size] mask of a shape whose bounding box is (x0, y0, s, s), tested at pixel centres."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    if shape == "square":
        return (xx >= x0) & (xx < x0 + s) & (yy >= y0) & (yy < y0 + s)
    if shape == "circle":
        r = s / 2
        return (xx - (x0 + r)) ** 2 + (yy - (y0 + r)) ** 2 <= r * r
    if shape == "triangle":
        # Apex at the top centre, base along the bottom edge of the box.
        inside_y = (yy >= y0) & (yy < y0 + s)
        half_width = (yy - y0) / s * (s / 2)
        return inside_y & (np.abs(xx - (x0 + s / 2)) <= half_width)
    raise ValueError(f"unknown shape {shape!r}")


def caption_of(subjects):
    return " and ".join(f"a {c} {s}" for c, s in subjects)


def _boxes_apart(a, b):
    ax, ay, asz = a
    bx, by, bsz = b
    return ax + asz + MARGIN <= bx or bx + bsz + MARGIN <= ax or ay + asz + MARGIN <= by or by + bsz + MARGIN <= ay


def sample(seed, index, pair=None):
    """Sample `index` of split `seed`. pair=None draws one or two shapes (PAIR_FRACTION); True/False forces it.

    Returns dict(image uint8 [128,128,3], caption str, subjects [(colour, shape)] in caption order,
    masks bool [n,128,128] in caption order, boxes [(x0, y0, s)]).
    """
    rng = np.random.default_rng([seed, index])
    n = (2 if rng.random() < PAIR_FRACTION else 1) if pair is None else (2 if pair else 1)
    shapes = list(rng.choice(SHAPES, size=n, replace=False))
    colours = list(rng.choice(COLOURS, size=n, replace=False))
    boxes = []
    while len(boxes) < n:
        # A large first shape near the centre can leave no room for the second: redraw both after a few tries.
        for _ in range(50):
            s = int(rng.integers(round(MIN_FRAC * SIZE), round(MAX_FRAC * SIZE) + 1))
            x0 = int(rng.integers(2, SIZE - s - 2 + 1))
            y0 = int(rng.integers(2, SIZE - s - 2 + 1))
            if all(_boxes_apart((x0, y0, s), b) for b in boxes):
                boxes.append((x0, y0, s))
                break
        else:
            boxes = []
    image = np.empty((SIZE, SIZE, 3), np.uint8)
    image[:] = BACKGROUND
    masks = []
    for shape, colour, (x0, y0, s) in zip(shapes, colours, boxes):
        m = shape_mask(shape, x0, y0, s)
        image[m] = PALETTE[colour]
        masks.append(m)
    subjects = [(str(c), str(s)) for c, s in zip(colours, shapes)]
    return {"image": image, "caption": caption_of(subjects), "subjects": subjects, "masks": np.stack(masks),
            "boxes": boxes}


def grammar_captions():
    """Every caption of the grammar: 12 single-shape and 72 ordered two-shape captions."""
    singles = [[(c, s)] for s in SHAPES for c in COLOURS]
    pairs = [[(c1, s1), (c2, s2)] for s1 in SHAPES for c1 in COLOURS for s2 in SHAPES for c2 in COLOURS
             if s1 != s2 and c1 != c2]
    return [caption_of(x) for x in singles + pairs]


def colour_fraction(image, colour, tol=40):
    """Share of pixels within `tol` (max abs channel difference) of a palette colour: how Heed's outputs are scored."""
    diff = np.abs(image.astype(np.int32) - np.array(PALETTE[colour])).max(-1)
    return float((diff <= tol).mean())


if __name__ == "__main__":
    import sys
    from PIL import Image
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/shapes-world"
    import os
    os.makedirs(out, exist_ok=True)
    for i in range(8):
        d = sample(TRAIN_SEED, i)
        Image.fromarray(d["image"]).save(f"{out}/{i}.png")
        print(i, d["caption"], d["boxes"])
