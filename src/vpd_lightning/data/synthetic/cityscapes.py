"""Small synthetic Cityscapes in its mmsegmentation layout.

Cityscapes (``root`` is the ``cityscapes`` folder; cities ``aachen``, ``bochum`` in train, ``frankfurt`` in val)::

    <root>/leftImg8bit/{train,val}/<city>/<city>_000000_%06d_leftImg8bit.png      8-bit RGB PNG
    <root>/gtFine/{train,val}/<city>/<city>_000000_%06d_gtFine_labelIds.png       official ids 0..33
    <root>/gtFine/{train,val}/<city>/<city>_000000_%06d_gtFine_labelTrainIds.png  0..18, 255 (``train_ids``)

Street-like pictures: sky, buildings, road and a sidewalk strip, cars and people as boxes, an "ego vehicle" band
(id 1, ignored) at the bottom; each class drawn in its Cityscapes palette colour with noise.

Cityscapes' own label tables (``CITYSCAPES_TRAIN_IDS``) live in :mod:`vpd_lightning.data.cityscapes`.

CLI::

    python -m vpd_lightning.data.generate_segmentation cityscapes --root DIR [--num-train N --num-val N ...]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from vpd_lightning.data.cityscapes import CITYSCAPES_TRAIN_IDS
from vpd_lightning.data.synthetic._common import MARKER as _MARKER
from vpd_lightning.data.synthetic._common import generator_done
from vpd_lightning.data.synthetic._common import noisy as _noisy

__all__ = ["generate_cityscapes", "render_street", "to_train_ids"]

# labelId -> colour of cityscapesScripts' labels.py (the ones drawn here)
_CS_COLOURS = {
    1: (0, 0, 0), 7: (128, 64, 128), 8: (244, 35, 232), 11: (70, 70, 70), 21: (107, 142, 35), 23: (70, 130, 180),
    24: (220, 20, 60), 26: (0, 0, 142), 17: (153, 153, 153),
}  # fmt: skip
CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}


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
