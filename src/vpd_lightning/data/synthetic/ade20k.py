"""Synthetic ADE20K in the layout used by mmsegmentation / VPD (``root`` is the ``ADEChallengeData2016`` folder)::

    <root>/images/{training,validation}/ADE_{train,val}_%08d.jpg        RGB JPEG, numbered from 1
    <root>/annotations/{training,validation}/ADE_{train,val}_%08d.png   8-bit PNG (mode "L"):
                                                0 = other / ignore, 1..150 = ADE classes
    <root>/objectInfo150.txt     "Idx\tRatio\tTrain\tVal\tName" then one line per class
    <root>/sceneCategories.txt   "ADE_train_00000001 <scene>" per image

The scenes are flat 2-D drawings: a wall-like background over a floor-like band plus 2-5
rectangles / ellipses / triangles whose class follows from their colour and form, a few grey
blobs of label 0, mild shading, texture and noise; image sizes vary around the requested one.

ADE20K's own constants (``ADE20K_CLASSES``, ``ADE20K_NUM_CLASSES``) live in :mod:`vpd_lightning.data.ade20k`.

CLI::

    python -m vpd_lightning.data.generate ade20k --root DIR [--num-train N --num-val N
                                                             --height H --width W --seed S
                                                             --class-ids ID ...]
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vpd_lightning.data.ade20k import ADE20K_CLASSES, ADE20K_NUM_CLASSES
from vpd_lightning.data.synthetic._common import JPEG_QUALITY as _JPEG_QUALITY
from vpd_lightning.data.synthetic._common import MARKER as _MARKER
from vpd_lightning.data.synthetic._common import check_int as _check_int
from vpd_lightning.data.synthetic._common import read_marker as _read_marker

__all__ = ["ADE20K_CLASSES", "ADE20K_NUM_CLASSES", "ADE20K_DEFAULT_CLASS_IDS", "generate_ade20k", "render_ade_scene"]

# ADE labels drawn when ``class_ids`` is not given: wall (1) and floor (4) as background, then
# tree, bed, door, chair, painting and flag (150: the highest id is always exercised).
ADE20K_DEFAULT_CLASS_IDS: tuple[int, ...] = (1, 4, 5, 8, 15, 20, 23, 150)

_ADE_FORMAT_VERSION = 1
_ADE_SIZE_JITTER = (0.75, 1.25)  # image sides are drawn in this range times the requested size
_ADE_SHAPE_KINDS = ("rectangle", "ellipse", "triangle")
_ADE_WALL_RGB = (0.86, 0.82, 0.72)
_ADE_FLOOR_RGB = (0.50, 0.37, 0.26)
_ADE_UNLABELLED_RGB = (0.46, 0.46, 0.46)  # label 0 ("other" / ignore): small grey blobs and borders
_ADE_SCENES = ("bedroom", "living_room", "kitchen", "bathroom", "office", "dining_room", "hallway")
_ADE_UNLABELLED = 255  # instance id of unlabelled pixels in the instance map


def _check_class_ids(class_ids: Sequence[int] | None) -> tuple[int, ...]:
    """Sorted, de-duplicated ADE labels (1..150); at least 3 (background, floor, one shape)."""
    if class_ids is None:
        return ADE20K_DEFAULT_CLASS_IDS
    if isinstance(class_ids, (int, np.integer)) or isinstance(class_ids, str):
        raise ValueError(f"class_ids must be a sequence of integers, got {class_ids!r}")
    out: set[int] = set()
    for c in class_ids:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise ValueError(f"class_ids must hold integers, got {c!r}")
        if not 1 <= int(c) <= ADE20K_NUM_CLASSES:
            raise ValueError(f"class_ids must be in 1..{ADE20K_NUM_CLASSES}, got {int(c)}")
        out.add(int(c))
    if len(out) < 3:
        raise ValueError(f"class_ids must hold at least 3 distinct ids (background, floor, objects), got {class_ids!r}")
    return tuple(sorted(out))


def _ade_roles(ids: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
    """(wall id, floor id, object ids): wall = 1 and floor = 4 when present, else the smallest ids."""
    wall = 1 if 1 in ids else ids[0]
    rest = [i for i in ids if i != wall]
    floor = 4 if 4 in rest else rest[0]
    return wall, floor, tuple(i for i in rest if i != floor)


def _ade_styles(objects: tuple[int, ...]) -> dict[int, tuple[np.ndarray, str, float]]:
    """Per object class: (base colour in [0, 1], shape kind, aspect ratio width / height).

    Colours are spread around the hue circle with alternating brightness, the shape kind cycles
    through rectangle / ellipse / triangle and the aspect alternates wide / tall every three
    classes, so a class follows from both its colour and its form.
    """
    n = len(objects)
    out = {}
    for i, k in enumerate(objects):
        rgb = colorsys.hsv_to_rgb((i / n) % 1.0, 0.8, 0.9 if i % 2 == 0 else 0.62)
        out[k] = (np.asarray(rgb, np.float32), _ADE_SHAPE_KINDS[i % 3], (1.6, 0.65)[(i // 3) % 2])
    return out


def render_ade_scene(
    height: int,
    width: int,
    rng: np.random.Generator,
    class_ids: Sequence[int] | None = None,
    *,
    include: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one ADE20K-style scene of exactly ``height`` x ``width`` pixels.

    A wall-like background (the wall class, ADE 1 by default) above a floor-like lower band
    (ADE 4), 2-5 objects (rectangles, ellipses, triangles) whose class follows from a fixed base
    colour (+- small jitter) and a fixed form, and a few small grey blobs (sometimes also a thin
    border) of label 0 ("other", ignored with reduce-zero-label).  Mild shading gradients, wall /
    floor textures and sensor noise on the RGB.  ``include`` (an object class) forces that class
    to be the top-most object.

    Returns ``(rgb, label)``: uint8 (H, W, 3) and uint8 (H, W) with values in {0} ∪ class ids.
    Everything is drawn from ``rng``, so the output is a pure function of the generator's state.
    """
    height = _check_int("height", height, 8)
    width = _check_int("width", width, 8)
    ids = _check_class_ids(class_ids)
    wall, floor, objects = _ade_roles(ids)
    styles = _ade_styles(objects)
    if include is not None and include not in styles:
        raise ValueError(f"include must be one of the object class ids {objects}, got {include!r}")
    h, w = height, width
    f32 = np.float32
    side = min(h, w)

    # --- geometry: an instance map (0 wall, 1 floor, 2.. objects, 255 unlabelled) -------------
    inst = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(inst)
    y_left = rng.uniform(0.55, 0.8) * h
    y_right = y_left + rng.uniform(-0.1, 0.1) * h
    draw.polygon([(0, y_left), (w, y_right), (w, h + 1), (0, h + 1)], fill=1)

    n_obj = int(rng.integers(2, 6))
    classes = [int(c) for c in rng.choice(np.asarray(objects), size=n_obj)]
    if include is not None:
        classes[-1] = int(include)
    for j, k in enumerate(classes):
        _, kind, aspect = styles[k]
        size = rng.uniform(0.2, 0.42) * side  # geometric mean of the two sides
        a = aspect * rng.uniform(0.85, 1.15)
        bw, bh = size * math.sqrt(a), size / math.sqrt(a)
        cx, cy = rng.uniform(0.12, 0.88) * w, rng.uniform(0.2, 0.85) * h
        box = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
        if kind == "rectangle":
            draw.rectangle(box, fill=2 + j)
        elif kind == "ellipse":
            draw.ellipse(box, fill=2 + j)
        else:
            draw.polygon([(cx, box[1]), (box[0], box[3]), (box[2], box[3])], fill=2 + j)

    # label 0: 1-3 small blobs, plus a thin border on some sides in half of the images
    r_lo = max(1.5, 0.03 * side)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(r_lo, 2 * r_lo), rng.uniform(r_lo, 2 * r_lo)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=_ADE_UNLABELLED)
    if rng.uniform() < 0.5:
        bt = int(rng.integers(1, 3))
        sides = rng.uniform(size=4) < 0.5
        for on, rect in zip(
            sides, ((0, 0, w - 1, bt - 1), (0, h - bt, w - 1, h - 1), (0, 0, bt - 1, h - 1), (w - bt, 0, w - 1, h - 1))
        ):
            if on:
                draw.rectangle(rect, fill=_ADE_UNLABELLED)
    inst_arr = np.asarray(inst)

    lut = np.zeros(256, np.uint8)
    lut[0], lut[1] = wall, floor
    lut[2 : 2 + n_obj] = classes
    label = lut[inst_arr]

    # --- appearance: per-instance base colour and linear shading, textures, noise ------------
    colours = np.zeros((256, 3), f32)
    colours[0] = np.asarray(_ADE_WALL_RGB, f32) * rng.uniform(0.93, 1.07, size=3).astype(f32)
    colours[1] = np.asarray(_ADE_FLOOR_RGB, f32) * rng.uniform(0.92, 1.08, size=3).astype(f32)
    for j, k in enumerate(classes):
        colours[2 + j] = styles[k][0] * rng.uniform(0.93, 1.07, size=3).astype(f32)
    colours[_ADE_UNLABELLED] = np.asarray(_ADE_UNLABELLED_RGB, f32) * f32(rng.uniform(0.9, 1.1))
    grad = rng.uniform(-0.12, 0.12, size=(256, 2)).astype(f32)

    ys = (np.arange(h, dtype=f32) / f32(h) - f32(0.5))[:, None]
    xs = (np.arange(w, dtype=f32) / f32(w) - f32(0.5))[None, :]
    g = grad[inst_arr]
    shade = f32(1) + g[..., 0] * xs + g[..., 1] * ys

    # wall: faint vertical wallpaper stripes; floor: darker plank seams (horizontal lines)
    period = max(2, int(round(rng.uniform(0.05, 0.12) * w)))
    stripes = f32(1) + f32(rng.uniform(0.02, 0.05)) * (2 * ((np.arange(w) // period) % 2) - 1).astype(f32)
    shade = np.where(inst_arr == 0, shade * stripes[None, :], shade)
    plank = max(3, int(round(rng.uniform(0.04, 0.08) * h)))
    seams = (np.arange(h) % plank == 0)[:, None]
    shade = np.where((inst_arr == 1) & seams, shade * f32(0.85), shade)

    img = colours[inst_arr] * shade[..., None] * f32(rng.uniform(0.92, 1.08))
    img = img * 255 + rng.standard_normal(img.shape, dtype=f32) * f32(rng.uniform(2.0, 5.0))
    rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return rgb, label


def _ade_name(split: str, index: int) -> str:
    return f"ADE_{'train' if split == 'training' else 'val'}_{index:08d}"


def _ade_files(root: Path, num_train: int, num_val: int) -> list[Path]:
    out = [root / "objectInfo150.txt", root / "sceneCategories.txt"]
    for split, n in (("training", num_train), ("validation", num_val)):
        for i in range(1, n + 1):
            stem = _ade_name(split, i)
            out += [root / "images" / split / f"{stem}.jpg", root / "annotations" / split / f"{stem}.png"]
    return out


def generate_ade20k(
    root: str | Path,
    num_train: int = 64,
    num_val: int = 16,
    height: int = 128,
    width: int = 128,
    seed: int = 0,
    class_ids: Sequence[int] | None = None,
) -> Path:
    """Write a small synthetic ADE20K in the ``ADEChallengeData2016`` layout under ``root``.

    ``root`` is the ``ADEChallengeData2016`` folder itself::

        <root>/images/{training,validation}/ADE_{train,val}_%08d.jpg       RGB JPEG
        <root>/annotations/{training,validation}/ADE_{train,val}_%08d.png  8-bit PNG (mode "L"),
                                                   0 = other / ignore, 1..150 = ADE classes
        <root>/objectInfo150.txt    "Idx\\tRatio\\tTrain\\tVal\\tName" + one line per class
        <root>/sceneCategories.txt  "ADE_train_00000001 <scene>" per image

    Numbering starts at 1.  Image sides are drawn in [0.75, 1.25] x ``height`` / ``width``
    (varying size and aspect); an image and its annotation have the same size.  ``class_ids``
    (default ``ADE20K_DEFAULT_CLASS_IDS``) are the ADE labels used: 1 (else the smallest) is the
    wall-like background, 4 (else the next smallest) the floor, the others are objects.  Object
    classes are forced round-robin, highest id first, so with enough images every class occurs in
    each split, and the highest id always occurs in the first training image.

    Idempotent: when ``root`` already holds a complete data set made with the same arguments
    (recorded in ``<root>/.generator.json``) nothing is written.  Otherwise a data set made by
    this generator is replaced; a folder with ``images/`` or ``annotations/`` but no marker
    (e.g. the real ADE20K), or with another generator's marker, is never overwritten
    (``FileExistsError``).
    """
    num_train = _check_int("num_train", num_train, 1)
    num_val = _check_int("num_val", num_val, 1)
    height = _check_int("height", height, 32)
    width = _check_int("width", width, 32)
    seed = _check_int("seed", seed, 0)
    ids = _check_class_ids(class_ids)
    root = Path(root)
    config = dict(
        dataset="ade20k",
        format_version=_ADE_FORMAT_VERSION,
        num_train=num_train,
        num_val=num_val,
        height=height,
        width=width,
        seed=seed,
        class_ids=list(ids),
    )
    marker = _read_marker(root)
    if (
        marker
        and marker.get("complete")
        and marker.get("config") == config
        and all(p.is_file() for p in _ade_files(root, num_train, num_val))
    ):
        return root

    if marker is None and ((root / "images").exists() or (root / "annotations").exists()):
        raise FileExistsError(f"{root} holds an ADE20K data set not made by this generator; refusing to overwrite")
    if marker is not None and (marker.get("config") or {}).get("dataset") != "ade20k":
        raise FileExistsError(f"{root} holds a data set made by another generator; refusing to overwrite")
    root.mkdir(parents=True, exist_ok=True)
    (root / _MARKER).write_text(json.dumps(dict(config=config, complete=False), indent=2))
    for sub in ("images", "annotations"):
        if (root / sub).exists():
            shutil.rmtree(root / sub)

    _, _, objects = _ade_roles(ids)
    order = sorted(objects, reverse=True)  # highest id first: it is in the first training image
    layout_rng = np.random.default_rng([seed, 0xADE])  # scene names, independent of the images
    scene_lines = []
    for split_id, (split, n) in enumerate((("training", num_train), ("validation", num_val))):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for j in range(n):
            img_rng = np.random.default_rng([seed, 0xADE, split_id + 1, j])
            lo, hi = _ADE_SIZE_JITTER
            h = max(8, int(round(height * img_rng.uniform(lo, hi))))
            w = max(8, int(round(width * img_rng.uniform(lo, hi))))
            rgb, label = render_ade_scene(h, w, img_rng, ids, include=order[j % len(order)])
            stem = _ade_name(split, j + 1)
            Image.fromarray(rgb).save(root / "images" / split / f"{stem}.jpg", quality=_JPEG_QUALITY)
            Image.fromarray(label, mode="L").save(root / "annotations" / split / f"{stem}.png", compress_level=3)
            scene_lines.append(f"{stem} {_ADE_SCENES[int(layout_rng.integers(len(_ADE_SCENES)))]}")

    info = ["Idx\tRatio\tTrain\tVal\tName"]
    info += [f"{i}\t0.0\t0\t0\t{name.strip()}" for i, name in enumerate(ADE20K_CLASSES, start=1)]
    (root / "objectInfo150.txt").write_text("\n".join(info) + "\n")
    (root / "sceneCategories.txt").write_text("\n".join(scene_lines) + "\n")
    (root / _MARKER).write_text(json.dumps(dict(config=config, complete=True), indent=2))
    return root


# ---------------------------------------------------------------------------------------------
# CLI subcommand (assembled in vpd_lightning.data.synthetic.cli)
# ---------------------------------------------------------------------------------------------


def _run_ade20k(args: argparse.Namespace) -> Path:
    return generate_ade20k(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        height=args.height,
        width=args.width,
        seed=args.seed,
        class_ids=args.class_ids,
    )


def _add_ade20k_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ade20k", help="synthetic ADE20K (ADEChallengeData2016 layout)")
    p.add_argument("--root", required=True, help="the ADEChallengeData2016 folder to write")
    p.add_argument("--num-train", type=int, default=64)
    p.add_argument("--num-val", type=int, default=16)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--class-ids",
        type=int,
        nargs="+",
        default=None,
        metavar="ID",
        help=f"ADE labels in 1..150 (default: {' '.join(map(str, ADE20K_DEFAULT_CLASS_IDS))})",
    )
    p.set_defaults(func=_run_ade20k)
