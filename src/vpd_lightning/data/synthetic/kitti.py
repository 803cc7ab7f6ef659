"""Small synthetic KITTI depth (Eigen split) in the BTS / GLPDepth layout.

KITTI layout (``root`` is the ``kitti`` folder; see :mod:`vpd_lightning.data.kitti`)::

    <root>/input/2011_09_26/2011_09_26_drive_%04d_sync/image_02/data/%010d.png       8-bit RGB PNG
    <root>/gt_depth/2011_09_26_drive_%04d_sync/proj_depth/groundtruth/image_02/%010d.png
                                                          16-bit PNG, value / 256 = metres, 0 = none
    <root>/train_list.txt, test_list.txt    "<image> <depth> 721.5377" per line; the test list has one
                                            "<image> None 721.5377" line (an image without ground truth)

The pictures are the NYUv2 generator's rendered rooms with their depth scaled x8 (up to ~79 m) and made sparse as
KITTI's projected LiDAR: no measurement in the top third and on ~60 % of the rest.

KITTI's own constants (``KITTI_FOCAL``, the list files' focal column) live in :mod:`vpd_lightning.data.kitti`.

CLI::

    python -m vpd_lightning.data.generate_kitti --root DIR [--num-train N --num-test N --height H --width W]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from vpd_lightning.data.kitti import KITTI_FOCAL
from vpd_lightning.data.synthetic._common import MARKER as _MARKER
from vpd_lightning.data.synthetic._common import ROOM_SCENES as SCENES
from vpd_lightning.data.synthetic._common import generator_done
from vpd_lightning.data.synthetic.nyuv2 import render_room

__all__ = ["KITTI_FOCAL", "generate_kitti"]

_DEPTH_FACTOR = 8.0  # rendered rooms reach 9.9 m: x8 brings them near KITTI's 80 m


def _sparse(depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = depth.copy()
    out[: depth.shape[0] // 3] = 0
    out[rng.random(depth.shape) < 0.6] = 0
    return out


def generate_kitti(
    root: str | Path, num_train: int = 8, num_test: int = 4, height: int = 375, width: int = 1242, seed: int = 0
) -> Path:
    """Write a small KITTI Eigen-split look-alike under ``root`` (the ``kitti`` folder); returns ``root``.

    Images are spread over two drives per split; the test list gets one extra line without ground truth.
    Idempotent: a complete data set made with the same arguments is left as it is.
    """
    root = Path(root)
    config = dict(dataset="kitti", num_train=num_train, num_test=num_test, height=height, width=width, seed=seed)
    if generator_done(root, config):
        return root
    if num_train < 1 or num_test < 1 or height < 32 or width < 32:
        raise ValueError("generate_kitti: num_train, num_test >= 1 and height, width >= 32 expected")
    root.mkdir(parents=True, exist_ok=True)
    (root / _MARKER).write_text(json.dumps({"config": config, "complete": False}))
    date = "2011_09_26"
    for split_id, (split, count) in enumerate((("train", num_train), ("test", num_test))):
        lines = []
        for j in range(count + (split == "test")):
            drive = f"{date}_drive_{1 + 2 * split_id + j % 2:04d}_sync"
            frame = f"{5 * j + 5:010d}.png"
            image_rel = f"{date}/{drive}/image_02/data/{frame}"
            depth_rel = f"{drive}/proj_depth/groundtruth/image_02/{frame}"
            rng = np.random.default_rng([seed, split_id, j])
            rgb, depth = render_room(height, width, rng, SCENES[j % len(SCENES)], holes=False)
            (root / "input" / image_rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / "input" / image_rel)
            if split == "test" and j == count:  # an image of the list without annotated depth
                lines.append(f"{image_rel} None {KITTI_FOCAL}")
                continue
            depth_png = np.rint(_sparse(depth * _DEPTH_FACTOR, rng) * 256.0).astype(np.uint16)
            (root / "gt_depth" / depth_rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(depth_png).save(root / "gt_depth" / depth_rel)
            lines.append(f"{image_rel} {depth_rel} {KITTI_FOCAL}")
        (root / f"{split}_list.txt").write_text("\n".join(lines) + "\n")
    (root / _MARKER).write_text(json.dumps({"config": config, "complete": True}))
    return root
