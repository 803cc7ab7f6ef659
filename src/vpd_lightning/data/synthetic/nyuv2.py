"""Synthetic NYU Depth v2 in the layout used by VPD / GLPDepth / BTS (``root`` is the ``nyu_depth_v2`` folder)::

    <root>/sync/<scene>_<dddd><letter>/rgb_%05d.jpg           training RGB (JPEG, 8-bit RGB)
    <root>/sync/<scene>_<dddd><letter>/sync_depth_%05d.png    training depth (16-bit PNG, millimetres)
    <root>/official_splits/test/<scene>/rgb_%05d.jpg
    <root>/official_splits/test/<scene>/sync_depth_%05d.png
    <root>/train_list.txt   "/<scene_dir>/rgb_00045.jpg /<scene_dir>/sync_depth_00045.png" (relative to sync/)
    <root>/test_list.txt    "/<scene>/rgb_00045.jpg /<scene>/sync_depth_00045.png" (relative to
                            official_splits/test/, no trailing newline, like the real file)

The images are rendered (vectorised numpy ray casting) from a pinhole camera standing in a
box-shaped room with a few box-shaped pieces of furniture, so the depth map follows from what
the image shows: perspective textures on the floor / walls / ceiling (tiles, planks, stripes,
panels), Lambertian shading by surface normal, the fall-off of a lamp next to the camera plus
distance fog (far is darker), and a scene-dependent palette and floor kind.  Depth is the z-distance along the
optical axis in metres, clipped to [0.3, 9.9] m, with ~1-2 % invalid (0) pixels like Kinect data.

NYU's own constants (``NYU_SCENE_CLASSES``, ``NYU_FOCAL_LENGTH``) live in :mod:`vpd_lightning.data.nyuv2`.

CLI::

    python -m vpd_lightning.data.generate nyuv2 --root DIR [--num-train N --num-test N
                                                            --height H --width W --seed S]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from vpd_lightning.data.nyuv2 import NYU_FOCAL_LENGTH, NYU_SCENE_CLASSES
from vpd_lightning.data.synthetic._common import JPEG_QUALITY as _JPEG_QUALITY
from vpd_lightning.data.synthetic._common import MARKER as _MARKER
from vpd_lightning.data.synthetic._common import check_int as _check_int
from vpd_lightning.data.synthetic._common import read_marker as _read_marker

__all__ = [
    "NYU_SCENE_CLASSES",
    "NYU_DEFAULT_SCENES",
    "NYU_FOCAL_LENGTH",
    "NYU_MIN_DEPTH",
    "NYU_MAX_DEPTH",
    "generate_nyuv2",
    "render_room",
]

# Scenes used when ``scenes`` is not given.  ``office_kitchen`` is there on purpose: with a
# first-substring prompt rule it maps to "kitchen", which must be exercised.
NYU_DEFAULT_SCENES: tuple[str, ...] = (
    "kitchen",
    "office_kitchen",
    "study_room",
    "bedroom",
    "bathroom",
    "living_room",
    "dining_room",
    "office",
)

NYU_MIN_DEPTH = 0.3  # m, lower clip of the rendered depth
NYU_MAX_DEPTH = 9.9  # m, upper clip (9900 mm in the PNG)

_FORMAT_VERSION = 1
_FRAMES_PER_TRAIN_DIR = 4  # training images per sync/<scene>_<dddd><letter> directory

# Appearance constants, tuned so that depth is recoverable from the image: surface albedos are
# kept within a narrow luminance band and light falls off with distance (lamp next to the camera
# + fog), so brightness, together with the geometry (perspective of textures, layout), tells depth.
_SURF_LUM = (0.55, 0.75)  # luminance band of floor / wall / ceiling colours
_FURN_LUM = (0.5, 0.75)  # luminance band of furniture colours
_AMBIENT = (0.55, 0.7)
_LAMP_RANGE = (3.5, 4.5)  # m, distance at which the camera-side lamp's light has halved
_FOG_BETA = (0.25, 0.3)  # 1/m
_FOG_SCALE = 0.3  # fog colour = scene palette fog colour * this (dark: far is darker)
_GAIN = (2.4, 2.8)  # exposure

# ---------------------------------------------------------------------------------------------
# Scene appearance
# ---------------------------------------------------------------------------------------------

# Materials (surface ids in the rendered id map).
_FLOOR, _CEILING, _BACK, _LEFT, _RIGHT, _FRONT = range(6)
_N_ROOM = 6  # boxes are 6, 7, ...

# Hand-made palettes (sRGB in [0, 1]) for the default scenes; other scenes get a palette derived
# deterministically from their name.  floor kind: "tiles" | "wood" | "carpet".
_PALETTES: dict[str, dict] = {
    "kitchen": dict(
        floor=(0.82, 0.80, 0.74),
        floor_kind="tiles",
        wall=(0.93, 0.90, 0.80),
        ceiling=(0.96, 0.96, 0.94),
        furniture=((0.85, 0.85, 0.88), (0.55, 0.36, 0.22), (0.70, 0.72, 0.74)),
        fog=(0.22, 0.20, 0.17),
    ),
    "office_kitchen": dict(
        floor=(0.62, 0.64, 0.66),
        floor_kind="tiles",
        wall=(0.86, 0.88, 0.90),
        ceiling=(0.94, 0.95, 0.96),
        furniture=((0.80, 0.82, 0.85), (0.25, 0.27, 0.30), (0.72, 0.60, 0.45)),
        fog=(0.17, 0.19, 0.22),
    ),
    "study_room": dict(
        floor=(0.55, 0.38, 0.24),
        floor_kind="wood",
        wall=(0.84, 0.80, 0.68),
        ceiling=(0.93, 0.92, 0.88),
        furniture=((0.42, 0.27, 0.16), (0.30, 0.33, 0.40), (0.65, 0.50, 0.32)),
        fog=(0.20, 0.16, 0.12),
    ),
    "bedroom": dict(
        floor=(0.66, 0.58, 0.50),
        floor_kind="carpet",
        wall=(0.78, 0.72, 0.82),
        ceiling=(0.95, 0.93, 0.95),
        furniture=((0.90, 0.88, 0.84), (0.48, 0.30, 0.22), (0.40, 0.46, 0.62)),
        fog=(0.20, 0.17, 0.22),
    ),
    "bathroom": dict(
        floor=(0.80, 0.86, 0.90),
        floor_kind="tiles",
        wall=(0.72, 0.84, 0.88),
        ceiling=(0.96, 0.97, 0.98),
        furniture=((0.95, 0.95, 0.95), (0.60, 0.70, 0.75), (0.85, 0.85, 0.80)),
        fog=(0.14, 0.19, 0.22),
    ),
    "living_room": dict(
        floor=(0.62, 0.46, 0.30),
        floor_kind="wood",
        wall=(0.88, 0.84, 0.74),
        ceiling=(0.95, 0.94, 0.90),
        furniture=((0.52, 0.20, 0.18), (0.35, 0.45, 0.30), (0.30, 0.22, 0.16)),
        fog=(0.22, 0.17, 0.13),
    ),
    "dining_room": dict(
        floor=(0.48, 0.30, 0.18),
        floor_kind="wood",
        wall=(0.82, 0.74, 0.60),
        ceiling=(0.94, 0.92, 0.86),
        furniture=((0.36, 0.20, 0.12), (0.75, 0.68, 0.55), (0.55, 0.15, 0.15)),
        fog=(0.20, 0.14, 0.10),
    ),
    "office": dict(
        floor=(0.40, 0.42, 0.46),
        floor_kind="carpet",
        wall=(0.82, 0.83, 0.84),
        ceiling=(0.92, 0.92, 0.92),
        furniture=((0.28, 0.29, 0.32), (0.70, 0.66, 0.58), (0.20, 0.30, 0.45)),
        fog=(0.16, 0.17, 0.19),
    ),
}
_FLOOR_KINDS = ("tiles", "wood", "carpet")


def _palette(scene: str) -> dict:
    """The scene's palette: hand-made for the default scenes, derived from the name otherwise."""
    if scene in _PALETTES:
        return _PALETTES[scene]
    prng = np.random.default_rng(zlib.crc32(scene.encode("utf-8")))

    def col(lo: float, hi: float) -> tuple[float, float, float]:
        return tuple(float(c) for c in prng.uniform(lo, hi, size=3))

    return dict(
        floor=col(0.35, 0.85),
        floor_kind=_FLOOR_KINDS[int(prng.integers(len(_FLOOR_KINDS)))],
        wall=col(0.65, 0.95),
        ceiling=col(0.88, 0.98),
        furniture=(col(0.2, 0.9), col(0.2, 0.9), col(0.2, 0.9)),
        fog=col(0.12, 0.24),
    )


def _hash01(i: np.ndarray, salt: float) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) for each integer of ``i``."""
    x = np.sin(i.astype(np.float32) * np.float32(12.9898) + np.float32(salt)) * np.float32(43758.5453)
    return x - np.floor(x)


def _edge_dist(a: np.ndarray, period: float) -> np.ndarray:
    """Distance (same unit as ``a``) to the nearest multiple of ``period``."""
    f = a / period
    return np.abs(f - np.round(f)) * period


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _focal(width: int) -> float:
    return NYU_FOCAL_LENGTH * width / 640.0


def render_room(
    height: int, width: int, rng: np.random.Generator, scene: str, *, holes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Render one random room of ``scene``'s style.

    Returns ``(rgb, depth)``: ``rgb`` uint8 (H, W, 3), ``depth`` float32 (H, W) in metres, the
    z-distance along the optical axis, clipped to [NYU_MIN_DEPTH, NYU_MAX_DEPTH]; when ``holes``
    ~1-2 % of the pixels are set to 0 (invalid, like the holes of Kinect depth).  Everything is
    drawn from ``rng``, so the output is a pure function of the generator's state.
    """
    if scene not in NYU_SCENE_CLASSES:
        raise ValueError(f"unknown NYU scene {scene!r}")
    if height < 1 or width < 1:
        raise ValueError(f"bad image size {height}x{width}")
    pal = _palette(scene)
    f32 = np.float32

    # --- room and camera --------------------------------------------------------------------
    room_depth = rng.uniform(3.0, 8.0)
    room_width = rng.uniform(3.0, 6.0)
    room_height = rng.uniform(2.4, 3.0)
    cam_frac = rng.uniform(0.3, 0.7)
    x_left, x_right = -cam_frac * room_width, (1.0 - cam_frac) * room_width
    z_front = -0.6
    cam_h = rng.uniform(1.0, 1.6)
    yaw = math.radians(rng.uniform(-15.0, 15.0))
    pitch = math.radians(rng.uniform(-12.0, 4.0))

    # --- rays (world: X right, Y up, Z forward; camera at (0, cam_h, 0)) ---------------------
    f = _focal(width)
    xs = ((np.arange(width, dtype=f32) - f32((width - 1) / 2)) / f32(f))[None, :]
    ys = (-(np.arange(height, dtype=f32) - f32((height - 1) / 2)) / f32(f))[:, None]
    cp, sp, cy_, sy_ = (f32(v) for v in (math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)))
    dy = ys * cp + sp  # pitch about the X axis, ray has z = 1 in camera coordinates
    dz0 = cp - ys * sp
    dx = xs * cy_ + dz0 * sy_  # then yaw about the Y axis
    dz = dz0 * cy_ - xs * sy_
    dx, dy, dz = np.broadcast_arrays(dx, dy, dz)
    eps = f32(1e-6)
    dx = np.where(np.abs(dx) < eps, eps, dx).astype(f32)
    dy = np.where(np.abs(dy) < eps, eps, dy).astype(f32)
    dz = np.where(np.abs(dz) < eps, eps, dz).astype(f32)
    # Since the camera-frame ray has unit z, the ray parameter t IS the z-depth.

    # --- room planes (camera is inside, so the nearest exit plane per axis) -----------------
    tx = np.where(dx > 0, f32(x_right), f32(x_left)) / dx
    ty = np.where(dy > 0, f32(room_height - cam_h), f32(-cam_h)) / dy
    tz = np.where(dz > 0, f32(room_depth), f32(z_front)) / dz
    t = np.minimum(np.minimum(tx, ty), tz)
    mat = np.where(
        t == ty, np.where(dy > 0, _CEILING, _FLOOR), np.where(t == tx, np.where(dx > 0, _RIGHT, _LEFT), 0)
    ).astype(np.int8)
    mat = np.where(t == tz, np.where(dz > 0, _BACK, _FRONT), mat).astype(np.int8)
    axis = np.where(t == tz, 2, np.where(t == ty, 1, 0)).astype(np.int8)
    sign = np.where(axis == 0, -np.sign(dx), np.where(axis == 1, -np.sign(dy), -np.sign(dz))).astype(f32)

    # --- furniture: axis-aligned boxes standing on the floor ---------------------------------
    n_boxes = int(rng.integers(1, 5))
    boxes = []
    for _ in range(n_boxes):
        bw = rng.uniform(0.4, 1.8)
        bd = rng.uniform(0.4, 1.2)
        bh = rng.uniform(0.4, 2.0)
        z_hi = min(6.0, room_depth - 0.02)
        z0 = rng.uniform(1.0, max(1.0, z_hi - bd))
        z1 = min(z0 + bd, room_depth - 0.01)
        place = rng.uniform()
        if place < 0.25:  # against the left wall
            x0 = x_left + 0.01
        elif place < 0.5:  # against the right wall
            x0 = x_right - 0.01 - bw
        else:
            x0 = rng.uniform(x_left + 0.01, max(x_left + 0.01, x_right - 0.01 - bw))
        x1 = min(x0 + bw, x_right - 0.01)
        boxes.append((x0, x1, 0.0, min(bh, room_height - 0.2), z0, z1))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = (f32(1) / dx, f32(1) / dy, f32(1) / dz)
    origin = (0.0, cam_h, 0.0)
    for k, b in enumerate(boxes):
        t_near = None
        t_far = None
        near_axis = None
        for ax in range(3):
            lo = (f32(b[2 * ax] - origin[ax])) * inv[ax]
            hi = (f32(b[2 * ax + 1] - origin[ax])) * inv[ax]
            tn, tf = np.minimum(lo, hi), np.maximum(lo, hi)
            if t_near is None:
                t_near, t_far, near_axis = tn, tf, np.zeros(tn.shape, np.int8)
            else:
                near_axis = np.where(tn > t_near, np.int8(ax), near_axis)
                t_near = np.maximum(t_near, tn)
                t_far = np.minimum(t_far, tf)
        hit = (t_near < t_far) & (t_near > 0) & (t_near < t)
        if not hit.any():
            continue
        t = np.where(hit, t_near, t)
        mat = np.where(hit, np.int8(_N_ROOM + k), mat)
        axis = np.where(hit, near_axis, axis)
        dsel = np.where(near_axis == 0, dx, np.where(near_axis == 1, dy, dz))
        sign = np.where(hit, -np.sign(dsel), sign).astype(f32)

    # --- hit points -------------------------------------------------------------------------
    px = t * dx
    py = f32(cam_h) + t * dy
    pz = t * dz

    # --- texture (multiplicative factor) and per-pixel base colour ---------------------------
    tex = np.ones((height, width), f32)
    base = np.empty((height, width, 3), f32)

    def jitter(c: Sequence[float], amount: float = 0.08, lum: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
        c = np.asarray(c, f32) * rng.uniform(1 - amount, 1 + amount, size=3).astype(f32)
        y = float(c @ np.array((0.299, 0.587, 0.114), f32))
        return np.clip(c * f32(min(max(y, lum[0]), lum[1]) / max(y, 1e-3)), 0, 1)

    floor_col, wall_col, ceil_col = (jitter(pal[k], lum=_SURF_LUM) for k in ("floor", "wall", "ceiling"))
    side_wall_col = np.clip(wall_col * f32(rng.uniform(0.9, 1.0)), 0, 1)
    for mid, col in ((_FLOOR, floor_col), (_CEILING, ceil_col), (_BACK, wall_col)):
        base[mat == mid] = col
    for mid in (_LEFT, _RIGHT, _FRONT):
        base[mat == mid] = side_wall_col

    # floor
    m = mat == _FLOOR
    if m.any():
        u, v = px[m], pz[m]
        kind = pal["floor_kind"]
        if kind == "tiles":
            s = rng.uniform(0.3, 0.6)
            amp = rng.uniform(0.06, 0.14)
            checker = (np.floor(u / s) + np.floor(v / s)) % 2
            val = 1 + amp * (2 * checker - 1)
            grout = np.minimum(_edge_dist(u, s), _edge_dist(v, s)) < 0.012
            tex[m] = np.where(grout, f32(0.7), val)
        elif kind == "wood":
            w = rng.uniform(0.12, 0.22)
            plank = np.floor(u / w)
            plank_len = rng.uniform(0.8, 1.6)
            shift = _hash01(plank, 1.7) * plank_len
            seg = np.floor((v + shift) / plank_len)
            val = 0.85 + 0.25 * _hash01(plank * 31 + seg, 4.2)
            seam = (_edge_dist(u, w) < 0.008) | (_edge_dist(v + shift, plank_len) < 0.008)
            tex[m] = np.where(seam, f32(0.6), val)
        else:  # carpet: faint large checker with a fine diagonal weave
            s = rng.uniform(0.4, 0.8)
            checker = (np.floor(u / s) + np.floor(v / s)) % 2
            weave = np.floor((u + v) / 0.1) % 2
            tex[m] = 1 + 0.05 * (2 * checker - 1) + 0.04 * (2 * weave - 1)

    # walls: vertical stripes (wallpaper) plus a dark baseboard; pictures / a window on walls
    stripe_p = rng.uniform(0.2, 0.5)
    stripe_amp = rng.uniform(0.03, 0.09)
    m = (mat == _BACK) | (mat == _FRONT)
    if m.any():
        tex[m] = 1 + stripe_amp * (2 * (np.floor(px[m] / stripe_p) % 2) - 1)
    m = (mat == _LEFT) | (mat == _RIGHT)
    if m.any():
        tex[m] = 1 + stripe_amp * (2 * (np.floor(pz[m] / stripe_p) % 2) - 1)
    walls = (mat >= _BACK) & (mat <= _FRONT)
    base_board = walls & (py < 0.1)
    tex[base_board] = 0.55
    n_pics = int(rng.integers(0, 3))
    for _ in range(n_pics):
        wall_id = int(rng.choice((_BACK, _LEFT, _RIGHT)))
        pw, ph = rng.uniform(0.4, 1.4), rng.uniform(0.4, 1.0)
        pyc = rng.uniform(1.2, max(1.3, room_height - 0.6))
        if wall_id == _BACK:
            pc = rng.uniform(x_left + pw, max(x_left + pw, x_right - pw))
            coord = px
        else:
            pc = rng.uniform(1.0, max(1.1, room_depth - pw))
            coord = pz
        pm = (mat == wall_id) & (np.abs(coord - f32(pc)) < pw / 2) & (np.abs(py - f32(pyc)) < ph / 2)
        if pm.any():
            window = rng.uniform() < 0.3
            base[pm] = np.array((0.92, 0.95, 1.0), f32) if window else rng.uniform(0.1, 0.9, size=3).astype(f32)
            frame = pm & (
                (np.abs(np.abs(coord - f32(pc)) - pw / 2) < 0.03) | (np.abs(np.abs(py - f32(pyc)) - ph / 2) < 0.03)
            )
            tex[pm] = 1.0
            tex[frame] = 0.35

    # ceiling: panel grid
    m = mat == _CEILING
    if m.any():
        s = rng.uniform(0.5, 0.7)
        grid = np.minimum(_edge_dist(px[m], s), _edge_dist(pz[m], s)) < 0.015
        tex[m] = np.where(grid, f32(0.8), f32(1.0))

    # boxes: palette colour, darker edges, optional shelf / drawer lines on the front face
    for k, b in enumerate(boxes):
        m = mat == _N_ROOM + k
        if not m.any():
            continue
        fcol = pal["furniture"][int(rng.integers(len(pal["furniture"])))]
        base[m] = jitter(fcol, 0.12, lum=_FURN_LUM)
        ax = axis[m]
        coords = (px[m], py[m], pz[m])
        edge = np.full(ax.shape, np.inf, f32)
        for a in range(3):
            d = np.minimum(coords[a] - f32(b[2 * a]), f32(b[2 * a + 1]) - coords[a])
            edge = np.where(ax != a, np.minimum(edge, d), edge)
        val = np.where(edge < 0.025, f32(0.6), f32(1.0))
        n_lines = int(rng.integers(0, 4))
        if n_lines:
            spacing = (b[3] - b[2]) / (n_lines + 1)
            lines = (ax == 2) & (_edge_dist(coords[1] - f32(b[2]), spacing) < 0.012) & (coords[1] > spacing / 2)
            val = np.where(lines, f32(0.5), val)
        tex[m] = val

    # --- lighting: directional key light (Lambert by normal) + ambient, times the falloff of a
    # lamp next to the camera; then fog.  Both distance terms make far surfaces darker.
    lx, ly, lz = rng.uniform(-0.5, 0.5), 1.0, -rng.uniform(0.2, 0.8)
    ln = math.sqrt(lx * lx + ly * ly + lz * lz)
    ndotl = np.where(axis == 0, f32(lx / ln), np.where(axis == 1, f32(ly / ln), f32(lz / ln))) * sign
    shade = f32(rng.uniform(*_AMBIENT)) + f32(rng.uniform(0.3, 0.45)) * np.maximum(ndotl, 0)
    dist2 = t * t * (dx * dx + dy * dy + dz * dz)
    light = shade / (f32(1.0) + dist2 / f32(rng.uniform(*_LAMP_RANGE) ** 2))

    depth = np.clip(t, NYU_MIN_DEPTH, NYU_MAX_DEPTH).astype(f32)
    beta = f32(rng.uniform(*_FOG_BETA))
    fog_w = np.exp(-beta * depth)[..., None]
    img = base * (tex * light)[..., None]
    img = img * fog_w + jitter(pal["fog"], 0.1) * f32(_FOG_SCALE) * (1 - fog_w)

    # camera: exposure, vignetting, sensor noise
    img *= f32(rng.uniform(*_GAIN))
    r2 = (xs * f32(f / max(width, 1) * 2)) ** 2 + (ys * f32(f / max(width, 1) * 2)) ** 2
    img *= (1 - f32(0.2) * r2)[..., None]
    img = img * 255 + rng.standard_normal(img.shape, dtype=f32) * f32(rng.uniform(1.5, 4.0))
    rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    if holes:
        depth = _punch_holes(depth, rng)
    return rgb, depth


def _punch_holes(depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Set ~1-2 % of ``depth`` to 0 in small elliptical blobs (Kinect-like invalid pixels)."""
    h, w = depth.shape
    target = int(round(rng.uniform(0.01, 0.02) * h * w))
    hole = np.zeros((h, w), bool)
    count = 0
    r_lo, r_hi = max(1.0, 0.008 * min(h, w)), max(1.5, 0.04 * min(h, w))
    for _ in range(10_000):
        if count >= target:
            break
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(r_lo, r_hi), rng.uniform(r_lo, r_hi)
        y0, y1 = max(0, int(cy - ry)), min(h, int(cy + ry) + 1)
        x0, x1 = max(0, int(cx - rx)), min(w, int(cx + rx) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = (np.arange(y0, y1) + 0.5 - cy)[:, None] / ry
        xx = (np.arange(x0, x1) + 0.5 - cx)[None, :] / rx
        blob = yy * yy + xx * xx <= 1.0
        win = hole[y0:y1, x0:x1]
        count += int(np.count_nonzero(blob & ~win))
        win |= blob
    out = depth.copy()
    out[hole] = 0
    return out


# ---------------------------------------------------------------------------------------------
# NYU Depth v2 writer
# ---------------------------------------------------------------------------------------------


def _check_scenes(scenes: Sequence[str] | None) -> tuple[str, ...]:
    if scenes is None:
        return NYU_DEFAULT_SCENES
    if isinstance(scenes, str):
        scenes = (scenes,)
    out: list[str] = []
    for s in scenes:
        if s not in NYU_SCENE_CLASSES:
            raise ValueError(f"unknown NYU scene {s!r}; must be one of NYU_SCENE_CLASSES")
        if s not in out:
            out.append(s)
    if not out:
        raise ValueError("scenes must not be empty")
    return tuple(out)


def _plan_nyuv2(num_train: int, num_test: int, scenes: tuple[str, ...], seed: int):
    """Decide every file: returns (train, test), lists of (scene, directory, frame index)."""
    rng = np.random.default_rng([seed, 0x4E5955])  # layout stream, independent of the images
    per_scene = [num_train // len(scenes) + (i < num_train % len(scenes)) for i in range(len(scenes))]
    train: list[tuple[str, str, int]] = []
    used_dirs: set[str] = set()
    for scene, n in zip(scenes, per_scene):
        per_dir = max(_FRAMES_PER_TRAIN_DIR, -(-n // 2000))  # at most 2000 of the 3996 names per scene
        while n > 0:
            k = min(n, per_dir)
            while True:
                name = f"{scene}_{int(rng.integers(1, 1000)):04d}{'abcd'[int(rng.integers(4))]}"
                if name not in used_dirs:
                    used_dirs.add(name)
                    break
            frames = np.sort(rng.choice(max(1000, 2 * k), size=k, replace=False))
            train.extend((scene, name, int(i)) for i in frames)
            n -= k
    train_scenes = [s for s, n in zip(scenes, per_scene) if n > 0]  # test scenes ⊆ train scenes
    indices = np.sort(rng.choice(np.arange(1, 1450), size=num_test, replace=num_test > 1449))
    test = [
        (train_scenes[j % len(train_scenes)], train_scenes[j % len(train_scenes)], int(i))
        for j, i in enumerate(indices)
    ]
    if num_test > 1449:  # more test images than NYU has: keep indices unique anyway
        test = [(s, d, j + 1) for j, (s, d, _) in enumerate(test)]
    return train, test


def _list_lines(entries: list[tuple[str, str, int]]) -> list[str]:
    return [f"/{d}/rgb_{i:05d}.jpg /{d}/sync_depth_{i:05d}.png" for _, d, i in entries]


def _is_complete(root: Path, config: dict) -> bool:
    marker = _read_marker(root)
    if not marker or not marker.get("complete") or marker.get("config") != config:
        return False
    for list_name, sub in (("train_list.txt", "sync"), ("test_list.txt", "official_splits/test")):
        try:
            lines = (root / list_name).read_text().splitlines()
        except OSError:
            return False
        for line in lines:
            parts = line.split()
            if len(parts) < 2 or not all((root / sub / p.lstrip("/")).is_file() for p in parts[:2]):
                return False
    return True


def _write_pair(path_dir: Path, index: int, rgb: np.ndarray, depth_m: np.ndarray) -> None:
    path_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path_dir / f"rgb_{index:05d}.jpg", quality=_JPEG_QUALITY)
    depth_mm = np.rint(depth_m * 1000.0).astype(np.uint16)  # 0 stays 0 (invalid)
    Image.fromarray(depth_mm).save(path_dir / f"sync_depth_{index:05d}.png", compress_level=3)


def generate_nyuv2(
    root: str | Path,
    num_train: int = 64,
    num_test: int = 16,
    height: int = 480,
    width: int = 640,
    seed: int = 0,
    scenes: Sequence[str] | None = None,
) -> Path:
    """Write a small synthetic NYU Depth v2 in the VPD / GLPDepth / BTS layout under ``root``.

    ``root`` is the ``nyu_depth_v2`` folder itself.  Train images go to
    ``sync/<scene>_<dddd><letter>/``, test images to ``official_splits/test/<scene>/``, with
    ``train_list.txt`` / ``test_list.txt`` next to them.  ``scenes`` (default
    ``NYU_DEFAULT_SCENES``) must be names from ``NYU_SCENE_CLASSES``; train images are spread
    over them round-robin and the test scenes are a subset of the train scenes.

    Idempotent: when ``root`` already holds a complete data set made with the same arguments
    (recorded in ``<root>/.generator.json``) nothing is written.  Otherwise a data set made by
    this generator is replaced; a folder with ``sync/`` or ``official_splits/`` but no marker
    (e.g. the real NYU) is never overwritten (``FileExistsError``).
    """
    num_train = _check_int("num_train", num_train, 1)
    num_test = _check_int("num_test", num_test, 1)
    height = _check_int("height", height, 32)
    width = _check_int("width", width, 32)
    seed = _check_int("seed", seed, 0)
    scene_list = _check_scenes(scenes)
    root = Path(root)
    config = dict(
        dataset="nyuv2",
        format_version=_FORMAT_VERSION,
        num_train=num_train,
        num_test=num_test,
        height=height,
        width=width,
        seed=seed,
        scenes=list(scene_list),
    )
    if _is_complete(root, config):
        return root

    if _read_marker(root) is None and ((root / "sync").exists() or (root / "official_splits").exists()):
        raise FileExistsError(f"{root} holds an NYU data set not made by this generator; refusing to overwrite")
    root.mkdir(parents=True, exist_ok=True)
    (root / _MARKER).write_text(json.dumps(dict(config=config, complete=False), indent=2))
    for sub in ("sync", "official_splits"):
        if (root / sub).exists():
            shutil.rmtree(root / sub)

    train, test = _plan_nyuv2(num_train, num_test, scene_list, seed)
    for split_id, (entries, base) in enumerate(((train, root / "sync"), (test, root / "official_splits" / "test"))):
        for j, (scene, d, index) in enumerate(entries):
            img_rng = np.random.default_rng([seed, split_id + 1, j])
            rgb, depth = render_room(height, width, img_rng, scene)
            _write_pair(base / d, index, rgb, depth)

    (root / "train_list.txt").write_text("\n".join(_list_lines(train)) + "\n")
    (root / "test_list.txt").write_text("\n".join(_list_lines(test)))  # no trailing newline, like NYU's
    (root / _MARKER).write_text(json.dumps(dict(config=config, complete=True), indent=2))
    return root


# ---------------------------------------------------------------------------------------------
# CLI subcommand (assembled in vpd_lightning.data.synthetic.cli)
# ---------------------------------------------------------------------------------------------


def _run_nyuv2(args: argparse.Namespace) -> Path:
    return generate_nyuv2(
        args.root,
        num_train=args.num_train,
        num_test=args.num_test,
        height=args.height,
        width=args.width,
        seed=args.seed,
        scenes=args.scenes,
    )


def _add_nyuv2_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("nyuv2", help="synthetic NYU Depth v2 (VPD / GLPDepth / BTS layout)")
    p.add_argument("--root", required=True, help="the nyu_depth_v2 folder to write")
    p.add_argument("--num-train", type=int, default=64)
    p.add_argument("--num-test", type=int, default=16)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scenes",
        nargs="+",
        default=None,
        metavar="SCENE",
        help=f"scenes from NYU's class list (default: {' '.join(NYU_DEFAULT_SCENES)})",
    )
    p.set_defaults(func=_run_nyuv2)
