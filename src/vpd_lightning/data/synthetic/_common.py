"""What the synthetic-data generators share: the completion marker, argument checks, JPEG quality, noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: Every generator records its arguments here, ``{"config": ..., "complete": bool}``; a folder with a complete
#: marker for the same arguments is left as it is, and a data set without one is never overwritten.
MARKER = ".generator.json"
JPEG_QUALITY = 95
#: The rendered-room scenes of the KITTI and depth-folder look-alikes (rooms from the NYUv2 renderer).
ROOM_SCENES: tuple[str, ...] = ("living_room", "kitchen", "office", "bedroom")


def check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None


def generator_done(root: Path, config: dict) -> bool:
    """Whether ``root`` holds a complete data set made with ``config`` (its marker says so)."""
    return read_marker(root) == {"config": config, "complete": True}


def noisy(label_colours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``label_colours`` (float, 0..255) plus Gaussian noise (sigma 10), as uint8."""
    return (label_colours + rng.normal(0, 10, label_colours.shape)).clip(0, 255).astype(np.uint8)
