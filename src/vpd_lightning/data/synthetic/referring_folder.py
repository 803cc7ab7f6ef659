"""A small data set in the referring folder layout (JSON lines; the layout for your own referring data).

Referring folder (:mod:`vpd_lightning.data.referring_folder`)::

    <root>/images/NNNN.jpg   <root>/masks/NNNN_0.png   <root>/{train,val}.jsonl

Each picture holds a coloured rectangle (its mask as a PNG) and a coloured triangle (its mask as a polygon) on a
noisy grey background; each object's line names its colour, shape and side ("the red box on the left").

CLI::

    python -m vpd_lightning.data.generate_folders referring --root DIR [--num-train N --num-val N ...]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vpd_lightning.data.synthetic._common import MARKER as _MARKER
from vpd_lightning.data.synthetic._common import generator_done

__all__ = ["generate_referring_folder"]

_COLOURS = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210), "yellow": (230, 210, 40)}


def generate_referring_folder(
    root: str | Path, num_train: int = 12, num_val: int = 4, height: int = 64, width: int = 64, seed: int = 0
) -> Path:
    """Write a referring folder data set (module docstring) under ``root``; returns ``root``."""
    root = Path(root)
    config = dict(dataset="referring_folder", n=[num_train, num_val], size=[height, width], seed=seed)
    if generator_done(root, config):
        return root
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / _MARKER).write_text(json.dumps({"config": config, "complete": False}))
    names = list(_COLOURS)
    number = 0
    for split, count in (("train", num_train), ("val", num_val)):
        lines = []
        for _ in range(count):
            rng = np.random.default_rng([seed, number])
            image = Image.fromarray((120 + rng.normal(0, 12, (height, width, 3))).clip(0, 255).astype(np.uint8))
            draw = ImageDraw.Draw(image)
            box_colour, tri_colour = rng.choice(len(names), 2, replace=False)
            box_left = bool(rng.random() < 0.5)
            half = width // 2
            bx0 = int(rng.integers(2, half // 3)) + (0 if box_left else half)
            by0 = int(rng.integers(2, height // 3))
            box = (bx0, by0, bx0 + half // 2, by0 + height // 2)
            draw.rectangle(box, fill=_COLOURS[names[box_colour]])
            tx0 = (half if box_left else 0) + int(rng.integers(2, half // 4))
            ty0 = int(rng.integers(height // 3, height // 2))
            triangle = [tx0, ty0 + height // 3, tx0 + half // 2, ty0 + height // 3, tx0 + half // 4, ty0]
            draw.polygon(triangle, fill=_COLOURS[names[tri_colour]])
            name = f"{number:04d}"
            image.save(root / "images" / f"{name}.jpg", quality=95)
            mask = Image.new("L", (width, height), 0)
            ImageDraw.Draw(mask).rectangle(box, fill=255)
            mask.save(root / "masks" / f"{name}_0.png")
            side_box, side_tri = ("left", "right") if box_left else ("right", "left")
            lines.append(
                {
                    "image": f"images/{name}.jpg",
                    "sentences": [f"the {names[box_colour]} box on the {side_box}", f"{names[box_colour]} box"],
                    "mask": f"masks/{name}_0.png",
                }
            )
            lines.append(
                {
                    "image": f"images/{name}.jpg",
                    "sentence": f"the {names[tri_colour]} triangle on the {side_tri}",
                    "polygon": [[float(v) for v in triangle]],
                }
            )
            number += 1
        (root / f"{split}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (root / _MARKER).write_text(json.dumps({"config": config, "complete": True}))
    return root
