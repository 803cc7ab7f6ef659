"""Synthetic RefCOCO / RefCOCO+ / RefCOCOg in the ``refer`` layout of LAVT / VPD (``root`` holds all of it)::

    <root>/images/mscoco/images/train2014/COCO_train2014_%012d.jpg   shared by the data sets
    <root>/{refcoco,refcoco+,refcocog}/instances.json   COCO style: images, annotations, categories
    <root>/refcoco/refs(unc).p  refs(google).p           pickled lists of refs (protocol 2)
    <root>/refcoco+/refs(unc).p
    <root>/refcocog/refs(umd).p refs(google).p

Each picture holds 2-4 coloured shapes (circle, ellipse, square, rectangle, triangle; distinct
colours) on a textured background; each object is one annotation (polygons, some RLE) with one
ref of 1-3 unambiguous sentences naming its colour, shape, position and / or size.

The data sets, their ``split_by`` conventions and split names are RefCOCO's own
(:data:`vpd_lightning.data.refcoco.REFER_SPLITS`, ``DEFAULT_SPLIT_BY``); ``REFCOCO_DATASETS``,
``REFCOCO_SPLIT_BYS``, ``REFCOCO_DEFAULT_SPLIT_BY`` and ``REFCOCO_SPLITS`` here are views of them.

CLI::

    python -m vpd_lightning.data.generate refcoco --root DIR [--dataset {refcoco,refcoco+,refcocog}
                                                              --split-by {unc,google,umd}
                                                              --num-images N --height H --width W
                                                              --seed S]
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from vpd_lightning.data.refcoco import DEFAULT_SPLIT_BY, REFER_SPLITS
from vpd_lightning.data.synthetic._common import JPEG_QUALITY as _JPEG_QUALITY
from vpd_lightning.data.synthetic._common import MARKER as _MARKER
from vpd_lightning.data.synthetic._common import check_int as _check_int
from vpd_lightning.data.synthetic._common import read_marker as _read_marker

__all__ = [
    "REFCOCO_DATASETS",
    "REFCOCO_SPLIT_BYS",
    "REFCOCO_DEFAULT_SPLIT_BY",
    "REFCOCO_SPLITS",
    "REFCOCO_COLOURS",
    "REFCOCO_SHAPES",
    "REFCOCO_CATEGORIES",
    "REFCOCO_SHAPE_CATEGORY",
    "REFCOCO_SHAPE_WORDS",
    "generate_refcoco",
    "render_refcoco_image",
]

REFCOCO_DATASETS: tuple[str, ...] = tuple(REFER_SPLITS)
# The split_by values of each data set (``refs(<split_by>).p``) and their split names.
REFCOCO_SPLIT_BYS: dict[str, tuple[str, ...]] = {d: tuple(by) for d, by in REFER_SPLITS.items()}
REFCOCO_DEFAULT_SPLIT_BY: dict[str, str] = dict(DEFAULT_SPLIT_BY)
REFCOCO_SPLITS: dict[tuple[str, str], tuple[str, ...]] = {
    (d, s): names for d, by in REFER_SPLITS.items() for s, names in by.items()
}
# Object colours (nominal sRGB); the colours of one image are distinct, so a colour word alone
# always singles an object out.
REFCOCO_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 50),
    "blue": (35, 80, 220),
    "yellow": (240, 215, 35),
    "purple": (150, 55, 190),
    "orange": (250, 135, 20),
}
REFCOCO_SHAPES: tuple[str, ...] = ("circle", "ellipse", "square", "rectangle", "triangle")
# COCO categories standing for the shapes (real COCO ids and names).
REFCOCO_CATEGORIES: tuple[dict, ...] = (
    {"id": 34, "name": "frisbee", "supercategory": "sports"},
    {"id": 37, "name": "sports ball", "supercategory": "sports"},
    {"id": 38, "name": "kite", "supercategory": "sports"},
    {"id": 72, "name": "tv", "supercategory": "electronic"},
    {"id": 84, "name": "book", "supercategory": "indoor"},
)
REFCOCO_SHAPE_CATEGORY: dict[str, int] = {"circle": 37, "ellipse": 34, "square": 72, "rectangle": 84, "triangle": 38}
# Words a sentence may use for each shape.
REFCOCO_SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball"),
    "ellipse": ("ellipse", "oval"),
    "square": ("square",),
    "rectangle": ("rectangle",),
    "triangle": ("triangle",),
}

_REFCOCO_FORMAT_VERSION = 1
_REFCOCO_IMAGE_DIR = ("images", "mscoco", "images", "train2014")
_REFCOCO_ID_BASE = {"refcoco": 1_000_000, "refcoco+": 2_000_000, "refcocog": 3_000_000}  # image ids: base + 1..n
_REFCOCO_MAX_IMAGES = 999_999
_REFCOCO_SIZE_JITTER = (0.85, 1.15)  # image sides are drawn in this range times the requested size
_REFCOCO_RLE_EVERY = 7  # every 7th plain annotation (counted over the data set, from the 4th) is stored as RLE
_REFCOCO_POLE_RGB = (0.28, 0.28, 0.30)  # the thin occluder that splits a "split" object in two parts


def _refcoco_fill(poly: Sequence[float], height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies inside the polygon ``[x1, y1, x2, y2, ...]`` (even-odd rule).

    An axis-aligned rectangle with integer corners ``x0 < x1``, ``y0 < y1`` fills exactly
    ``[y0:y1, x0:x1]``, like pycocotools' rasterisation of the same polygon.
    """
    pts = np.asarray(poly, np.float64).reshape(-1, 2)
    out = np.zeros((height, width), bool)
    x0, x1 = max(0, int(math.floor(pts[:, 0].min()))), min(width, int(math.ceil(pts[:, 0].max())) + 1)
    y0, y1 = max(0, int(math.floor(pts[:, 1].min()))), min(height, int(math.ceil(pts[:, 1].max())) + 1)
    if x0 >= x1 or y0 >= y1:
        return out
    ys = (np.arange(y0, y1) + 0.5)[:, None]
    xs = (np.arange(x0, x1) + 0.5)[None, :]
    inside = np.zeros((y1 - y0, x1 - x0), bool)
    for (xa, ya), (xb, yb) in zip(pts, np.roll(pts, -1, axis=0)):
        if ya == yb:
            continue
        crosses = (ya > ys) != (yb > ys)
        x_cross = xa + (ys - ya) * (xb - xa) / (yb - ya)
        inside ^= crosses & (xs < x_cross)
    out[y0:y1, x0:x1] = inside
    return out


def _refcoco_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a binary mask, ``counts`` as str (what ``pycocotools.mask.encode``
    gives for ``np.asfortranarray(mask.astype(np.uint8))``, with the bytes decoded)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs  # counts start with a (possibly empty) run of zeros
    chars = []
    for i, run in enumerate(runs):
        x = int(run) - (int(runs[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(chars)}


def _refcoco_box_polys(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def _refcoco_layout(
    h: int, w: int, rng: np.random.Generator, shapes: list[str]
) -> list[tuple[int, int, int, int, int]]:
    """Non-overlapping integer boxes ``(index into shapes, x0, y0, x1, y1)``, a margin apart; an
    object that does not fit (after shrinking it a few times) is left out."""
    side = min(h, w)
    gap = max(2, int(round(0.04 * side)))
    placed: list[tuple[int, int, int, int, int]] = []
    reserved: list[tuple[int, int, int, int]] = []
    for index, shape in enumerate(shapes):
        size = rng.uniform(0.24, 0.36) * side  # geometric mean of the two sides
        if shape in ("ellipse", "rectangle"):
            aspect = rng.uniform(1.7, 2.2)
        elif shape == "triangle":
            aspect = rng.uniform(0.9, 1.3)
        else:
            aspect = 1.0
        if rng.uniform() < 0.5:
            aspect = 1.0 / aspect  # tall instead of wide
        for _ in range(6):
            bw = max(4, min(w - 2 * gap, int(round(size * math.sqrt(aspect)))))
            bh = max(4, min(h - 2 * gap, int(round(size / math.sqrt(aspect)))))
            if shape in ("circle", "square"):
                bw = bh = min(bw, bh)
            ok = False
            for _ in range(60):
                x0 = int(rng.integers(gap, max(gap, w - gap - bw) + 1))
                y0 = int(rng.integers(gap, max(gap, h - gap - bh) + 1))
                box = (x0 - gap, y0 - gap, x0 + bw + gap, y0 + bh + gap)
                if all(box[0] >= r[2] or box[2] <= r[0] or box[1] >= r[3] or box[3] <= r[1] for r in reserved):
                    ok = True
                    break
            if ok:
                placed.append((index, x0, y0, x0 + bw, y0 + bh))
                reserved.append(box)
                break
            size *= 0.8
    return placed


def render_refcoco_image(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    split_object: bool = False,
    overlap_object: bool = False,
) -> tuple[np.ndarray, list[dict]]:
    """Render one RefCOCO-style picture: 2-4 coloured shapes on a textured background.

    Objects are circles, ellipses, squares, rectangles and triangles, each of a distinct colour
    of ``REFCOCO_COLOURS`` (+- small jitter and shading), and never touch each other.  The
    background is a low-saturation colour with a texture (checker, stripes, grid or blotches),
    mild shading and sensor noise.  Some squares / rectangles are

    * ``"split"``: a thin dark pole stands in front of them, so their visible part (and their
      segmentation) is two polygons;
    * ``"overlap"``: drawn whole but annotated as two overlapping rectangles (pixels covered by
      both sum to 2 after ``pycocotools.mask.decode``, the quirk VPD / LAVT turn into background).

    ``split_object`` / ``overlap_object`` force the first (second, when both are set) object
    to be such a rectangle.

    Returns ``(rgb, objects)``: uint8 (H, W, 3) and one dict per object with ``shape``,
    ``colour`` (a ``REFCOCO_COLOURS`` name), ``category_id``, ``kind`` ("plain" | "split" |
    "overlap"), ``polygons`` (COCO polygons, a list of ``[x1, y1, x2, y2, ...]``), ``mask``
    (bool (H, W), the pixels the object covers in the picture), ``area`` (pixels), ``bbox``
    (``[x, y, w, h]`` of the mask) and ``centroid`` (``(x, y)`` of the mask).  Everything is
    drawn from ``rng``, so the output is a pure function of the generator's state.
    """
    height = _check_int("height", height, 32)
    width = _check_int("width", width, 32)
    h, w = height, width
    f32 = np.float32

    # --- plan: colours (distinct), shapes (repeated shapes are common), boxes -----------------
    n_obj = int(rng.integers(2, 5))
    colour_names = list(REFCOCO_COLOURS)
    colours = [colour_names[int(i)] for i in rng.choice(len(colour_names), size=n_obj, replace=False)]
    shapes = [REFCOCO_SHAPES[int(i)] for i in rng.integers(len(REFCOCO_SHAPES), size=n_obj)]
    if n_obj >= 3 and rng.uniform() < 0.5:
        shapes[-1] = shapes[0]
    kinds = ["plain"] * n_obj
    for j, shape in enumerate(shapes):
        if shape in ("square", "rectangle"):
            u = rng.uniform()
            kinds[j] = "split" if u < 0.12 else "overlap" if u < 0.24 else "plain"
    forced = [k for k, on in (("split", split_object), ("overlap", overlap_object)) if on]
    for j, kind in enumerate(forced):
        shapes[j] = "rectangle" if rng.uniform() < 0.5 else "square"
        kinds[j] = kind
    boxes = _refcoco_layout(h, w, rng, shapes)

    # --- geometry: polygons and masks -------------------------------------------------------
    side = min(h, w)
    pad = max(2, int(round(0.04 * side)))
    objects: list[dict] = []
    poles: list[tuple[int, int, int, int]] = []
    for j, x0, y0, x1, y1 in boxes:
        shape, kind = shapes[j], kinds[j]
        if shape in ("square", "rectangle"):
            bw = x1 - x0
            gw = max(2, int(round(0.1 * bw)))
            if kind == "split" and bw >= gw + 6:
                ga = x0 + 3 + int(rng.integers(0, bw - gw - 6 + 1))
                polys = [_refcoco_box_polys(x0, y0, ga, y1), _refcoco_box_polys(ga + gw, y0, x1, y1)]
                poles.append((ga, max(0, y0 - pad + 1), ga + gw, min(h, y1 + pad - 1)))
            elif kind == "overlap" and bw >= 6:
                xa = x0 + 2 + int(rng.integers(0, (bw - 4) // 2 + 1))
                xb = min(x1 - 1, xa + max(1, int(round(rng.uniform(0.1, 0.3) * bw))))
                polys = [_refcoco_box_polys(x0, y0, xb, y1), _refcoco_box_polys(xa, y0, x1, y1)]
            else:
                kind = "plain"
                polys = [_refcoco_box_polys(x0, y0, x1, y1)]
        elif shape in ("circle", "ellipse"):
            kind = "plain"
            cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
            t = np.linspace(0.0, 2 * math.pi, 24, endpoint=False) + rng.uniform(0, 2 * math.pi / 24)
            pts = np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)
            polys = [[round(float(v), 2) for v in pts.ravel()]]
        else:  # triangle, apex up or down
            kind = "plain"
            apex = float(rng.uniform(x0 + 0.3 * (x1 - x0), x0 + 0.7 * (x1 - x0)))
            if rng.uniform() < 0.5:
                pts = [(apex, y0), (x1, y1), (x0, y1)]
            else:
                pts = [(x0, y0), (x1, y0), (apex, y1)]
            polys = [[round(float(v), 2) for p in pts for v in p]]
        mask = np.zeros((h, w), bool)
        for p in polys:
            mask |= _refcoco_fill(p, h, w)
        ys, xs = np.nonzero(mask)
        objects.append(
            dict(
                shape=shape,
                colour=colours[j],
                category_id=REFCOCO_SHAPE_CATEGORY[shape],
                kind=kind,
                polygons=polys,
                mask=mask,
                area=int(mask.sum()),
                bbox=[float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())],
                centroid=(float(xs.mean() + 0.5), float(ys.mean() + 0.5)),
            )
        )

    # --- appearance -------------------------------------------------------------------------
    hue = rng.uniform()
    base = np.asarray(colorsys.hsv_to_rgb(hue, rng.uniform(0.03, 0.15), rng.uniform(0.5, 0.8)), f32)
    yy = np.arange(h, dtype=f32)[:, None]
    xx = np.arange(w, dtype=f32)[None, :]
    texture = int(rng.integers(4))
    period = f32(rng.uniform(0.06, 0.14) * side)
    amp = f32(rng.uniform(0.05, 0.1))
    if texture == 0:  # checker
        tex = 1 + amp * (2 * ((np.floor(xx / period) + np.floor(yy / period)) % 2) - 1)
    elif texture == 1:  # diagonal stripes
        tex = 1 + amp * (2 * (np.floor((xx + yy) / period) % 2) - 1)
    elif texture == 2:  # grid lines
        grid = (np.mod(xx, period) < 1.5) | (np.mod(yy, period) < 1.5)
        tex = np.where(grid, f32(1) - 2 * amp, f32(1))
    else:  # smooth blotches
        fx, fy = rng.uniform(3.0, 8.0, size=2) * math.pi, rng.uniform(3.0, 8.0, size=2) * math.pi
        ph = rng.uniform(0, 2 * math.pi, size=2)
        wave0 = np.sin(xx / w * fx[0] + yy / h * fy[0] + ph[0])
        tex = 1 + amp * 1.5 * wave0 * np.sin(xx / w * fx[1] - yy / h * fy[1] + ph[1])
    tex = np.broadcast_to(tex, (h, w)).astype(f32)
    gx, gy = rng.uniform(-0.12, 0.12, size=2)
    shade = 1 + f32(gx) * (xx / w - 0.5) + f32(gy) * (yy / h - 0.5)
    img = base[None, None, :] * (tex * shade)[..., None]
    for o in objects:
        col = np.asarray(REFCOCO_COLOURS[o["colour"]], f32) / 255
        col = col * f32(rng.uniform(0.9, 1.06)) * rng.uniform(0.95, 1.05, size=3).astype(f32)
        ogx, ogy = rng.uniform(-0.15, 0.15, size=2)
        bx, by, bw, bh = o["bbox"]
        oshade = 1 + f32(ogx) * (xx - bx) / max(bw, 1) + f32(ogy) * (yy - by) / max(bh, 1) - f32(ogx + ogy) / 2
        obj = col[None, None, :] * np.broadcast_to(oshade, (h, w))[..., None]
        img = np.where(o["mask"][..., None], obj, img)
    pole_col = np.asarray(_REFCOCO_POLE_RGB, f32)
    for px0, py0, px1, py1 in poles:
        img[py0:py1, px0:px1] = pole_col
    img = img * f32(rng.uniform(0.95, 1.05)) * 255
    img = img + rng.standard_normal(img.shape, dtype=f32) * f32(rng.uniform(2.0, 5.0))
    rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return rgb, objects


def _refcoco_sentences(objects: list[dict], j: int, height: int, width: int, rng: np.random.Generator, style: str):
    """1-3 distinct expressions that single out ``objects[j]``.

    Every expression is unambiguous in its picture: it names the object's colour (colours are
    distinct), or a shape that no other object has, or a shape / position / size combination
    where the object is the extreme one by a clear margin (and lies in that half of the
    picture).  ``style`` "refcoco+" uses no location words (like the real RefCOCO+), "refcocog"
    writes longer sentences.
    """
    o = objects[j]
    colour, shape = o["colour"], o["shape"]
    cx, cy = o["centroid"]
    fx, fy = cx / width, cy / height
    sw = REFCOCO_SHAPE_WORDS[shape]
    s = sw[int(rng.integers(len(sw)))]
    others = [p for i, p in enumerate(objects) if i != j]
    same = [p for p in others if p["shape"] == shape]

    def extremes(group: list[dict]) -> list[str]:
        """Directions in which ``o`` is the extreme object of ``group + [o]`` by a clear margin."""
        if not group:
            return []
        out = []
        dx = [p["centroid"][0] - cx for p in group]
        dy = [p["centroid"][1] - cy for p in group]
        if fx < 0.5 and min(dx) > 0.15 * width:
            out.append("left")
        if fx > 0.5 and max(dx) < -0.15 * width:
            out.append("right")
        if fy < 0.5 and min(dy) > 0.15 * height:
            out.append("top")
        if fy > 0.5 and max(dy) < -0.15 * height:
            out.append("bottom")
        return out

    horiz = "left" if fx < 0.4 else "right" if fx > 0.6 else None
    vert = "top" if fy < 0.4 else "bottom" if fy > 0.6 else None
    cands: list[str] = []
    if style == "refcoco+":
        cands += [f"the {colour} {s}", f"{colour} {s}", f"the {colour} one", f"{colour}"]
        if not same:
            cands += [f"the {s}", f"{s}"]
        else:
            areas = [p["area"] for p in same]
            if o["area"] >= 1.6 * max(areas):
                cands += [f"big {s}", f"the large {s}"]
            if o["area"] * 1.6 <= min(areas):
                cands += [f"small {s}", f"the small {s}"]
    elif style == "refcocog":
        cands += [f"a {colour} {s}", f"the {s} that is {colour}", f"a {colour} colored {s}"]
        if horiz:
            cands.append(f"a {colour} {s} on the {horiz} side of the image")
        if vert:
            cands.append(f"the {colour} {s} near the {vert} of the picture")
        if not same:
            cands.append(f"the only {s} in the picture")
        for d in extremes(same):
            cands.append(f"the {s} closest to the {d} edge of the image")
            if len(same) == 1:
                cands.append(f"the {d} {s} of the two")
    else:  # refcoco
        cands += [f"the {colour} {s}", f"{colour} {s}", f"the {colour} one", f"{colour}"]
        if horiz:
            cands += [f"{colour} {s} on the {horiz}", f"{colour} one on the {horiz}"]
        if horiz and vert:
            cands.append(f"the {colour} one at the {vert} {horiz}")
        if not same:
            cands += [f"the {s}", f"{s}"]
            if horiz:
                cands.append(f"{s} on the {horiz}")
        for d in extremes(same):
            cands += [f"{d} {s}", f"the {s} on the {d}" if d in ("left", "right") else f"the {s} at the {d}"]
        for d in extremes(others):
            cands.append(f"the one on the {d}" if d in ("left", "right") else f"the one at the {d}")
    k = min(len(cands), int(rng.integers(1, 4)))
    return [cands[int(i)] for i in rng.choice(len(cands), size=k, replace=False)]


def _refcoco_image_name(image_id: int) -> str:
    return f"COCO_train2014_{image_id:012d}.jpg"


def _refcoco_image_paths(root: Path, dataset: str, num_images: int) -> list[Path]:
    base = _REFCOCO_ID_BASE[dataset]
    folder = root.joinpath(*_REFCOCO_IMAGE_DIR)
    return [folder / _refcoco_image_name(base + i + 1) for i in range(num_images)]


def _refcoco_split_plan(num_images: int, names: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    """A split name per image: ~10 % of the images (at least one, while possible) for each
    non-train split, the rest (at least one) for 'train'; images are picked at random."""
    n_other = len(names) - 1
    k = min(max(1, num_images // 10), (num_images - 1) // n_other) if n_other else 0
    out = ["train"] * num_images
    perm = rng.permutation(num_images)
    for s, name in enumerate(names[1:]):
        for i in perm[s * k : (s + 1) * k]:
            out[int(i)] = name
    return out


def _refcoco_build(dataset: str, num_images: int, height: int, width: int, seed: int, with_images: bool):
    """Render the data set: (image records, rgb arrays or None, annotations, refs without split)."""
    ds_idx = REFCOCO_DATASETS.index(dataset)
    base = _REFCOCO_ID_BASE[dataset]
    images, pixels, anns, refs = [], [], [], []
    n_plain = 0
    sent_id = 0
    for i in range(num_images):
        image_id = base + i + 1
        img_rng = np.random.default_rng([seed, 0x5EFC0, ds_idx, i])
        lo, hi = _REFCOCO_SIZE_JITTER
        h = max(32, int(round(height * img_rng.uniform(lo, hi))))
        w = max(32, int(round(width * img_rng.uniform(lo, hi))))
        rgb, objects = render_refcoco_image(
            h, w, img_rng, split_object=i == 0, overlap_object=i == 1 or (i == 0 and num_images == 1)
        )
        images.append(dict(id=image_id, file_name=_refcoco_image_name(image_id), height=h, width=w, license=1))
        pixels.append(rgb if with_images else None)
        lang_rng = np.random.default_rng([seed, 0x5EFC0, ds_idx, i, 1])
        for j, o in enumerate(objects):
            ann_id = image_id * 10 + j + 1
            if o["kind"] == "plain":
                n_plain += 1
                use_rle = n_plain % _REFCOCO_RLE_EVERY == 4
            else:
                use_rle = False
            anns.append(
                dict(
                    id=ann_id,
                    image_id=image_id,
                    category_id=o["category_id"],
                    segmentation=_refcoco_rle(o["mask"]) if use_rle else o["polygons"],
                    area=float(o["area"]),
                    bbox=o["bbox"],
                    iscrowd=0,
                )
            )
            sentences = []
            for sent in _refcoco_sentences(objects, j, h, w, lang_rng, dataset):
                sentences.append(dict(tokens=sent.split(), raw=sent, sent_id=sent_id, sent=sent))
                sent_id += 1
            refs.append(
                dict(
                    sent_ids=[x["sent_id"] for x in sentences],
                    file_name=f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
                    ann_id=ann_id,
                    ref_id=len(refs),
                    image_id=image_id,
                    split=None,
                    sentences=sentences,
                    category_id=o["category_id"],
                )
            )
    return images, pixels, anns, refs


def _refcoco_write_refs(ds_dir: Path, dataset: str, split_by: str, refs: list[dict], num_images: int, seed: int):
    sb_idx = REFCOCO_SPLIT_BYS[dataset].index(split_by)
    rng = np.random.default_rng([seed, 0x5EFC0, REFCOCO_DATASETS.index(dataset), 100 + sb_idx])
    plan = _refcoco_split_plan(num_images, REFCOCO_SPLITS[(dataset, split_by)], rng)
    base = _REFCOCO_ID_BASE[dataset]
    out = [dict(r, split=plan[r["image_id"] - base - 1]) for r in refs]
    with open(ds_dir / f"refs({split_by}).p", "wb") as fh:
        pickle.dump(out, fh, protocol=2)


def generate_refcoco(
    root: str | Path,
    dataset: str = "refcoco",
    split_by: str | None = None,
    num_images: int = 24,
    height: int = 160,
    width: int = 200,
    seed: int = 0,
) -> Path:
    """Write a small synthetic RefCOCO / RefCOCO+ / RefCOCOg in the ``refer`` layout of LAVT / VPD.

    ``root`` is the refer data root, holding::

        <root>/images/mscoco/images/train2014/COCO_train2014_%012d.jpg   (shared by all data sets)
        <root>/<dataset>/instances.json       COCO-style images / annotations / categories
        <root>/<dataset>/refs(<split_by>).p   pickled list of refs (protocol 2)

    ``dataset`` is "refcoco", "refcoco+" or "refcocog"; ``split_by`` (default "unc" for refcoco /
    refcoco+, "umd" for refcocog) one of ``REFCOCO_SPLIT_BYS[dataset]``.  Each picture (see
    ``render_refcoco_image``; sides drawn in [0.85, 1.15] x ``height`` / ``width``) holds 2-4
    objects, each one annotation with one ref of 1-3 unambiguous sentences.  All refs of an
    image share its split; each non-train split of ``REFCOCO_SPLITS[(dataset, split_by)]`` gets
    ~10 % of the images (at least one while there are enough images), the rest are 'train'.
    Image ids are ``base + 1 .. base + num_images`` with a base per data set (1e6, 2e6, 3e6), so
    several data sets coexist under one root; the split_bys of one data set share its
    ``instances.json`` and differ only in the splits.  Annotations are polygons, some RLE (counts
    as str); the first image has an object split in two polygons by an occluding pole, the
    second (the first, when it is the only one) one annotated as two overlapping polygons.

    Idempotent: when ``<root>/<dataset>`` already holds a complete data set made with the same
    arguments (recorded in ``<root>/<dataset>/.generator.json``, with the split_bys written so
    far) nothing is written; another ``split_by`` of the same data set only adds its refs file.
    Otherwise a data set made by this generator is replaced (its images, ``instances.json`` and
    every ``refs(*).p``); a ``<root>/<dataset>`` with ``instances.json`` or a refs file but no
    marker (e.g. the real data) is never overwritten (``FileExistsError``).  Returns ``root``.
    """
    if not isinstance(dataset, str) or dataset not in REFCOCO_DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(REFCOCO_DATASETS)}, got {dataset!r}")
    if split_by is None:
        split_by = REFCOCO_DEFAULT_SPLIT_BY[dataset]
    if not isinstance(split_by, str) or split_by not in REFCOCO_SPLIT_BYS[dataset]:
        raise ValueError(
            f"split_by must be one of {', '.join(REFCOCO_SPLIT_BYS[dataset])} for {dataset}, got {split_by!r}"
        )
    num_images = _check_int("num_images", num_images, 1)
    if num_images > _REFCOCO_MAX_IMAGES:
        raise ValueError(f"num_images must be <= {_REFCOCO_MAX_IMAGES}, got {num_images}")
    height = _check_int("height", height, 32)
    width = _check_int("width", width, 32)
    seed = _check_int("seed", seed, 0)
    root = Path(root)
    ds_dir = root / dataset
    config = dict(
        dataset=dataset,
        format_version=_REFCOCO_FORMAT_VERSION,
        num_images=num_images,
        height=height,
        width=width,
        seed=seed,
    )
    image_paths = _refcoco_image_paths(root, dataset, num_images)
    marker = _read_marker(ds_dir)
    done = list(marker.get("split_bys", [])) if marker else []
    if (
        marker
        and marker.get("complete")
        and marker.get("config") == config
        and (ds_dir / "instances.json").is_file()
        and all(p.is_file() for p in image_paths)
    ):
        if split_by in done and (ds_dir / f"refs({split_by}).p").is_file():
            return root
        _, _, _, refs = _refcoco_build(dataset, num_images, height, width, seed, with_images=False)
        _refcoco_write_refs(ds_dir, dataset, split_by, refs, num_images, seed)
        done = [s for s in done if s != split_by] + [split_by]
        (ds_dir / _MARKER).write_text(json.dumps(dict(config=config, complete=True, split_bys=done), indent=2))
        return root

    theirs = [ds_dir / "instances.json", *(ds_dir / f"refs({s}).p" for s in REFCOCO_SPLIT_BYS[dataset])]
    if marker is None and any(p.exists() for p in theirs):
        raise FileExistsError(f"{ds_dir} holds a {dataset} data set not made by this generator; refusing to overwrite")
    if marker is not None and (marker.get("config") or {}).get("dataset") != dataset:
        raise FileExistsError(f"{ds_dir} holds a data set made by another generator; refusing to overwrite")
    ds_dir.mkdir(parents=True, exist_ok=True)
    (ds_dir / _MARKER).write_text(json.dumps(dict(config=config, complete=False, split_bys=[]), indent=2))
    old_n = (marker or {}).get("config", {}).get("num_images")
    if isinstance(old_n, int) and 0 < old_n <= _REFCOCO_MAX_IMAGES:  # our own earlier images
        for p in _refcoco_image_paths(root, dataset, old_n):
            p.unlink(missing_ok=True)
    for p in theirs:
        p.unlink(missing_ok=True)

    images, pixels, anns, refs = _refcoco_build(dataset, num_images, height, width, seed, with_images=True)
    image_paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path, rgb in zip(image_paths, pixels):
        Image.fromarray(rgb).save(path, quality=_JPEG_QUALITY)
    instances = dict(
        info=dict(description=f"synthetic {dataset} (vpd_lightning.data.generate)", version="1.0", year=2014),
        images=images,
        licenses=[dict(id=1, name="synthetic", url="")],
        annotations=anns,
        categories=[dict(c) for c in REFCOCO_CATEGORIES],
    )
    (ds_dir / "instances.json").write_text(json.dumps(instances))
    _refcoco_write_refs(ds_dir, dataset, split_by, refs, num_images, seed)
    (ds_dir / _MARKER).write_text(json.dumps(dict(config=config, complete=True, split_bys=[split_by]), indent=2))
    return root


# ---------------------------------------------------------------------------------------------
# CLI subcommand (assembled in vpd_lightning.data.synthetic.cli)
# ---------------------------------------------------------------------------------------------


def _run_refcoco(args: argparse.Namespace) -> Path:
    return generate_refcoco(
        args.root,
        dataset=args.dataset_name,
        split_by=args.split_by,
        num_images=args.num_images,
        height=args.height,
        width=args.width,
        seed=args.seed,
    )


def _add_refcoco_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("refcoco", help="synthetic RefCOCO / RefCOCO+ / RefCOCOg (refer / LAVT layout)")
    p.add_argument("--root", required=True, help="the refer data root (holding images/ and <dataset>/)")
    p.add_argument("--dataset", dest="dataset_name", default="refcoco", help=f"one of {', '.join(REFCOCO_DATASETS)}")
    p.add_argument(
        "--split-by",
        default=None,
        help="unc | google (refcoco), unc (refcoco+), umd | google (refcocog); default unc / umd",
    )
    p.add_argument("--num-images", type=int, default=24)
    p.add_argument("--height", type=int, default=160)
    p.add_argument("--width", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_refcoco)
