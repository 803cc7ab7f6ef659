"""Small synthetic Pascal VOC 2012 (+ SBD aug) in its mmsegmentation layout.

VOC 2012 (``root`` is ``VOCdevkit/VOC2012``)::

    <root>/JPEGImages/2007_%06d.jpg
    <root>/SegmentationClass/2007_%06d.png      palette PNG (mode "P", VOC colour map), 255 = object border
    <root>/SegmentationClassAug/2008_%06d.png   8-bit PNG (mode "L"), for the aug images (and the train ones)
    <root>/ImageSets/Segmentation/{train,val,trainval,aug}.txt

Pictures: a background with 1-3 objects (class 1..20 boxes or ellipses in the class's colour map colour), each
outlined by a 2-pixel border of 255 in ``SegmentationClass`` as VOC's annotations are.

VOC's own colour map (``voc_colormap``) lives in :mod:`vpd_lightning.data.voc`.

CLI::

    python -m vpd_lightning.data.generate_segmentation voc --root DIR [--num-train N --num-val N ...]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from vpd_lightning.data.synthetic._common import MARKER as _MARKER
from vpd_lightning.data.synthetic._common import generator_done
from vpd_lightning.data.synthetic._common import noisy as _noisy
from vpd_lightning.data.voc import voc_colormap

__all__ = ["generate_voc", "render_voc", "voc_colormap"]


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
