"""A small data set in the depth folder layout (the layout for your own depth data).

Depth folder (:mod:`vpd_lightning.data.depth_folder`)::

    <root>/{train,test}/images/NNNN.jpg   depth/NNNN.png (16-bit millimetres) or NNNN.npy (metres)   [masks/NNNN.png]

The pictures are the NYUv2 generator's rendered rooms.

CLI::

    python -m vpd_lightning.data.generate_folders depth --root DIR [--npy --masks --num-train N ...]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from vpd_lightning.data.synthetic._common import MARKER as _MARKER
from vpd_lightning.data.synthetic._common import ROOM_SCENES as SCENES
from vpd_lightning.data.synthetic._common import generator_done
from vpd_lightning.data.synthetic.nyuv2 import render_room

__all__ = ["generate_depth_folder"]


def generate_depth_folder(
    root: str | Path,
    num_train: int = 8,
    num_test: int = 4,
    height: int = 64,
    width: int = 80,
    seed: int = 0,
    npy: bool = False,
    masks: bool = False,
) -> Path:
    """Write a depth folder data set: ``{train,test}/images/NNNN.jpg`` + ``depth/NNNN.png`` (16-bit mm) or
    ``.npy`` (metres); with ``masks`` also ``masks/NNNN.png`` (255 = valid, the left tenth 0)."""
    root = Path(root)
    config = dict(dataset="depth_folder", n=[num_train, num_test], size=[height, width], seed=seed, npy=npy, m=masks)
    if generator_done(root, config):
        return root
    root.mkdir(parents=True, exist_ok=True)
    (root / _MARKER).write_text(json.dumps({"config": config, "complete": False}))
    for split_id, (split, count) in enumerate((("train", num_train), ("test", num_test))):
        for sub in ("images", "depth") + (("masks",) if masks else ()):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            rgb, depth = render_room(height, width, np.random.default_rng([seed, 7, split_id, j]), SCENES[j % 4])
            name = f"{j:04d}"
            Image.fromarray(rgb).save(root / split / "images" / f"{name}.jpg", quality=95)
            if npy:
                np.save(root / split / "depth" / f"{name}.npy", depth.astype(np.float32))
            else:
                Image.fromarray(np.rint(depth * 1000).astype(np.uint16)).save(root / split / "depth" / f"{name}.png")
            if masks:
                mask = np.full((height, width), 255, np.uint8)
                mask[:, : width // 10] = 0
                Image.fromarray(mask).save(root / split / "masks" / f"{name}.png")
    (root / _MARKER).write_text(json.dumps({"config": config, "complete": True}))
    return root
