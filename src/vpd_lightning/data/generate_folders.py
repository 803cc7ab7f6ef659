"""Small data sets in the folder layouts for your own data: depth pairs and referring JSON lines.

Depth folder (:mod:`vpd_lightning.data.depth_folder`)::

    <root>/{train,test}/images/NNNN.jpg   depth/NNNN.png (16-bit millimetres) or NNNN.npy (metres)   [masks/NNNN.png]

The pictures are the NYUv2 generator's rendered rooms.

Referring folder (:mod:`vpd_lightning.data.referring_folder`)::

    <root>/images/NNNN.jpg   <root>/masks/NNNN_0.png   <root>/{train,val}.jsonl

Each picture holds a coloured rectangle (its mask as a PNG) and a coloured triangle (its mask as a polygon) on a
noisy grey background; each object's line names its colour, shape and side ("the red box on the left").

CLI::

    python -m vpd_lightning.data.generate_folders depth --root DIR [--npy --masks --num-train N ...]
    python -m vpd_lightning.data.generate_folders referring --root DIR [--num-train N --num-val N ...]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vpd_lightning.data.generate import render_room
from vpd_lightning.data.generate_kitti import SCENES, generator_done

__all__ = ["generate_depth_folder", "generate_referring_folder"]

_MARKER = ".generator.json"
_COLOURS = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210), "yellow": (230, 210, 40)}


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vpd_lightning.data.generate_folders", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("depth", "referring"):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True, type=Path)
        p.add_argument("--num-train", type=int, default=8 if name == "depth" else 12)
        p.add_argument("--num-" + ("test" if name == "depth" else "val"), dest="num_eval", type=int, default=4)
        p.add_argument("--height", type=int, default=64)
        p.add_argument("--width", type=int, default=80 if name == "depth" else 64)
        p.add_argument("--seed", type=int, default=0)
        if name == "depth":
            p.add_argument("--npy", action="store_true", help="depth as .npy arrays of metres")
            p.add_argument("--masks", action="store_true", help="also write valid-pixel masks")
    args = parser.parse_args(argv)
    sizes = (args.root, args.num_train, args.num_eval, args.height, args.width, args.seed)
    if args.what == "depth":
        print(generate_depth_folder(*sizes, npy=args.npy, masks=args.masks))
    else:
        print(generate_referring_folder(*sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
