"""Small synthetic Cityscapes and Pascal VOC 2012 (+ SBD aug) in their mmsegmentation layouts.

Cityscapes (``root`` is the ``cityscapes`` folder; cities ``aachen``, ``bochum`` in train, ``frankfurt`` in val)::

    <root>/leftImg8bit/{train,val}/<city>/<city>_000000_%06d_leftImg8bit.png      8-bit RGB PNG
    <root>/gtFine/{train,val}/<city>/<city>_000000_%06d_gtFine_labelIds.png       official ids 0..33
    <root>/gtFine/{train,val}/<city>/<city>_000000_%06d_gtFine_labelTrainIds.png  0..18, 255 (``train_ids``)

Street-like pictures: sky, buildings, road and a sidewalk strip, cars and people as boxes, an "ego vehicle" band
(id 1, ignored) at the bottom; each class drawn in its Cityscapes palette colour with noise.

VOC 2012 (``root`` is ``VOCdevkit/VOC2012``)::

    <root>/JPEGImages/2007_%06d.jpg
    <root>/SegmentationClass/2007_%06d.png      palette PNG (mode "P", VOC colour map), 255 = object border
    <root>/SegmentationClassAug/2008_%06d.png   8-bit PNG (mode "L"), for the aug images (and the train ones)
    <root>/ImageSets/Segmentation/{train,val,trainval,aug}.txt

Pictures: a background with 1-3 objects (class 1..20 boxes or ellipses in the class's colour map colour), each
outlined by a 2-pixel border of 255 in ``SegmentationClass`` as VOC's annotations are.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from vpd_lightning.data.cityscapes import CITYSCAPES_TRAIN_IDS
from vpd_lightning.data.generate_kitti import generator_done

__all__ = ["generate_cityscapes", "generate_voc", "voc_colormap"]

_MARKER = ".generator.json"
# labelId -> colour of cityscapesScripts' labels.py (the ones drawn here)
_CS_COLOURS = {
    1: (0, 0, 0), 7: (128, 64, 128), 8: (244, 35, 232), 11: (70, 70, 70), 21: (107, 142, 35), 23: (70, 130, 180),
    24: (220, 20, 60), 26: (0, 0, 142), 17: (153, 153, 153),
}  # fmt: skip
CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}


def _noisy(label_colours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (label_colours + rng.normal(0, 10, label_colours.shape)).clip(0, 255).astype(np.uint8)


def render_street(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb uint8 [H, W, 3], Cityscapes labelIds uint8 [H, W])`` of a street-like picture."""
    ids = np.full((height, width), 23, np.uint8)  # sky
    horizon = int(height * rng.uniform(0.35, 0.5))
    skyline = int(height * rng.uniform(0.1, 0.25))
    ids[skyline:horizon] = 11  # building
    tree = int(rng.integers(0, width // 2))
    ids[skyline + 2 : horizon, tree : tree + width // 6] = 21  # vegetation
    ids[horizon:] = 7  # road
    ids[horizon : horizon + max(2, height // 12)] = 8  # sidewalk
    pole = int(rng.integers(0, width - 2))
    ids[skyline:horizon, pole : pole + max(1, width // 64)] = 17  # pole
    for _ in range(int(rng.integers(1, 3))):  # cars
        w, h = int(width * rng.uniform(0.12, 0.25)), int(height * rng.uniform(0.1, 0.18))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(horizon, max(horizon + 1, height - h - height // 10)))
        ids[y : y + h, x : x + w] = 26
    w, h = max(2, width // 30), int(height * 0.2)  # a person
    x = int(rng.integers(0, width - w))
    ids[horizon - h // 2 : horizon + h // 2, x : x + w] = 24
    ids[height - max(1, height // 12) :] = 1  # ego vehicle
    palette = np.zeros((256, 3), np.float64)
    for label, colour in _CS_COLOURS.items():
        palette[label] = colour
    return _noisy(palette[ids], rng), ids


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes labelIds -> trainIds (255 for every id without one)."""
    table = np.full(256, 255, np.uint8)
    for label, train_id in CITYSCAPES_TRAIN_IDS.items():
        table[label] = train_id
    return table[label_ids]


def generate_cityscapes(
    root: str | Path,
    num_train: int = 4,
    num_val: int = 2,
    height: int = 1024,
    width: int = 2048,
    seed: int = 0,
    train_ids: bool = True,
) -> Path:
    """Write a small Cityscapes look-alike under ``root`` (module docstring); ``train_ids=False`` leaves out the
    ``*_labelTrainIds.png`` (as the official ``gtFine`` archive, before conversion). Returns ``root``."""
    root = Path(root)
    config = dict(dataset="cityscapes", n=[num_train, num_val], size=[height, width], seed=seed, train_ids=train_ids)
    if generator_done(root, config):
        return root
    root.mkdir(parents=True, exist_ok=True)
    (root / _MARKER).write_text(json.dumps({"config": config, "complete": False}))
    for split_id, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        for j in range(count):
            city = CITIES[split][j % len(CITIES[split])]
            stem = f"{city}_000000_{19 * j + 19:06d}"
            rgb, ids = render_street(height, width, np.random.default_rng([seed, split_id, j]))
            for sub in ("leftImg8bit", "gtFine"):
                (root / sub / split / city).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            Image.fromarray(ids).save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
            if train_ids:
                train = to_train_ids(ids)
                Image.fromarray(train).save(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png")
    (root / _MARKER).write_text(json.dumps({"config": config, "complete": True}))
    return root


def voc_colormap() -> np.ndarray:
    """The 256 x 3 PASCAL VOC colour map (bit-interleaved class index), as in the devkit's ``VOClabelcolormap``."""
    cmap = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def render_voc(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rgb, label, label_with_border)``: 1-3 objects of classes 1..20 on background; the border version has
    a 2-pixel ring of 255 around each object (VOC's ``SegmentationClass``), the other none (SBD)."""
    label = np.zeros((height, width), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, 21))
        h, w = int(height * rng.uniform(0.25, 0.5)), int(width * rng.uniform(0.25, 0.5))
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        if rng.random() < 0.5:
            label[y : y + h, x : x + w] = cls
        else:
            inside = ((yy - y - h / 2) / (h / 2)) ** 2 + ((xx - x - w / 2) / (w / 2)) ** 2 <= 1
            label[inside] = cls
    edge = np.zeros_like(label, bool)
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0), (0, 2), (2, 0), (0, -2), (-2, 0)):
        shifted = np.roll(label, (dy, dx), axis=(0, 1))
        edge |= shifted != label
    border = label.copy()
    border[edge] = 255
    colours = voc_colormap().astype(np.float64)
    colours[0] = (120, 120, 110)
    return _noisy(colours[label], rng), label, border


def _save_palette(label: np.ndarray, path: Path) -> None:
    img = Image.frombytes("P", (label.shape[1], label.shape[0]), np.ascontiguousarray(label).tobytes())
    img.putpalette(voc_colormap().flatten().tolist())
    img.save(path)


def generate_voc(
    root: str | Path,
    num_train: int = 4,
    num_val: int = 2,
    num_aug: int = 4,
    height: int = 375,
    width: int = 500,
    seed: int = 0,
    aug: bool = True,
) -> Path:
    """Write a small VOC 2012 look-alike under ``root`` (module docstring): ``num_train`` / ``num_val`` images with
    ``SegmentationClass`` labels; with ``aug`` also ``num_aug`` SBD-only images and ``SegmentationClassAug`` for
    them and the train images, and ``aug.txt`` (train + SBD-only names, as mmseg's). Returns ``root``."""
    root = Path(root)
    config = dict(dataset="voc", n=[num_train, num_val, num_aug], size=[height, width], seed=seed, aug=aug)
    if generator_done(root, config):
        return root
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation") + (
        ("SegmentationClassAug",) if aug else ()
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / _MARKER).write_text(json.dumps({"config": config, "complete": False}))
    lists: dict[str, list[str]] = {"train": [], "val": [], "aug": []}
    plan = [("train", 2007, j) for j in range(num_train)] + [("val", 2007, 1000 + j) for j in range(num_val)]
    plan += [("aug", 2008, j) for j in range(num_aug if aug else 0)]
    for k, (split, year, j) in enumerate(plan):
        name = f"{year}_{j:06d}"
        rgb, label, border = render_voc(height, width, np.random.default_rng([seed, k]))
        Image.fromarray(rgb).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        if split != "aug":
            _save_palette(border, root / "SegmentationClass" / f"{name}.png")
        if aug and split != "val":
            Image.fromarray(label).save(root / "SegmentationClassAug" / f"{name}.png")
            lists["aug"].append(name)
        if split != "aug":
            lists[split].append(name)
    segmentation = root / "ImageSets" / "Segmentation"
    for name in ("train", "val") + (("aug",) if aug else ()):
        (segmentation / f"{name}.txt").write_text("".join(f"{n}\n" for n in lists[name]))
    (segmentation / "trainval.txt").write_text("".join(f"{n}\n" for n in lists["train"] + lists["val"]))
    (root / _MARKER).write_text(json.dumps({"config": config, "complete": True}))
    return root


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vpd_lightning.data.generate_segmentation")
    sub = parser.add_subparsers(dest="what", required=True)
    for name, h, w in (("cityscapes", 1024, 2048), ("voc", 375, 500)):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True, type=Path)
        p.add_argument("--num-train", type=int, default=4)
        p.add_argument("--num-val", type=int, default=2)
        p.add_argument("--height", type=int, default=h)
        p.add_argument("--width", type=int, default=w)
        p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = dict(num_train=args.num_train, num_val=args.num_val, height=args.height, width=args.width, seed=args.seed)
    print((generate_cityscapes if args.what == "cityscapes" else generate_voc)(args.root, **sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
