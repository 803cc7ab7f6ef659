"""Small synthetic data sets written in the exact on-disk layout of the real ones.

NYU Depth v2 (``generate_nyuv2``), ADE20K (``generate_ade20k``) and RefCOCO / RefCOCO+ /
RefCOCOg (``generate_refcoco``), each with its own CLI subcommand (see ``_SUBCOMMANDS`` at the
bottom).

NYU Depth v2 layout, as used by VPD / GLPDepth / BTS (``root`` is the ``nyu_depth_v2`` folder)::

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

ADE20K layout, as used by mmsegmentation / VPD (``root`` is the ``ADEChallengeData2016`` folder)::

    <root>/images/{training,validation}/ADE_{train,val}_%08d.jpg        RGB JPEG, numbered from 1
    <root>/annotations/{training,validation}/ADE_{train,val}_%08d.png   8-bit PNG (mode "L"):
                                                0 = other / ignore, 1..150 = ADE classes
    <root>/objectInfo150.txt     "Idx\tRatio\tTrain\tVal\tName" then one line per class
    <root>/sceneCategories.txt   "ADE_train_00000001 <scene>" per image

The scenes are flat 2-D drawings: a wall-like background over a floor-like band plus 2-5
rectangles / ellipses / triangles whose class follows from their colour and form, a few grey
blobs of label 0, mild shading, texture and noise; image sizes vary around the requested one.

RefCOCO layout, the ``refer`` data root of LAVT / VPD (``root`` holds all of it)::

    <root>/images/mscoco/images/train2014/COCO_train2014_%012d.jpg   shared by the data sets
    <root>/{refcoco,refcoco+,refcocog}/instances.json   COCO style: images, annotations, categories
    <root>/refcoco/refs(unc).p  refs(google).p           pickled lists of refs (protocol 2)
    <root>/refcoco+/refs(unc).p
    <root>/refcocog/refs(umd).p refs(google).p

Each picture holds 2-4 coloured shapes (circle, ellipse, square, rectangle, triangle; distinct
colours) on a textured background; each object is one annotation (polygons, some RLE) with one
ref of 1-3 unambiguous sentences naming its colour, shape, position and / or size.

CLI::

    python -m vpd_lightning.data.generate nyuv2 --root DIR [--num-train N --num-test N
                                                            --height H --width W --seed S]
    python -m vpd_lightning.data.generate ade20k --root DIR [--num-train N --num-val N
                                                             --height H --width W --seed S
                                                             --class-ids ID ...]
    python -m vpd_lightning.data.generate refcoco --root DIR [--dataset {refcoco,refcoco+,refcocog}
                                                              --split-by {unc,google,umd}
                                                              --num-images N --height H --width W
                                                              --seed S]
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import pickle
import shutil
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "NYU_SCENE_CLASSES",
    "NYU_DEFAULT_SCENES",
    "NYU_FOCAL_LENGTH",
    "NYU_MIN_DEPTH",
    "NYU_MAX_DEPTH",
    "generate_nyuv2",
    "render_room",
    "ADE20K_CLASSES",
    "ADE20K_NUM_CLASSES",
    "ADE20K_DEFAULT_CLASS_IDS",
    "generate_ade20k",
    "render_ade_scene",
    "REFCOCO_DATASETS",
    "REFCOCO_SPLIT_BYS",
    "REFCOCO_DEFAULT_SPLIT_BY",
    "REFCOCO_SPLITS",
    "REFCOCO_COLOURS",
    "REFCOCO_SHAPES",
    "REFCOCO_CATEGORIES",
    "REFCOCO_SHAPE_CATEGORY",
    "REFCOCO_SHAPE_WORDS",
    "generate_refcoco",
    "render_refcoco_image",
    "build_parser",
    "main",
]

# VPD's NYU class list (order matters: prompts are built from it; "excercise_room" is sic).
NYU_SCENE_CLASSES: tuple[str, ...] = (
    "printer_room",
    "bathroom",
    "living_room",
    "study",
    "conference_room",
    "study_room",
    "kitchen",
    "home_office",
    "bedroom",
    "dinette",
    "playroom",
    "indoor_balcony",
    "laundry_room",
    "basement",
    "excercise_room",
    "foyer",
    "home_storage",
    "cafe",
    "furniture_store",
    "office_kitchen",
    "student_lounge",
    "dining_room",
    "reception_room",
    "computer_lab",
    "classroom",
    "office",
    "bookstore",
)

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

NYU_FOCAL_LENGTH = 518.8579  # px, at 640 px width (the value BTS / AdaBins use)
NYU_MIN_DEPTH = 0.3  # m, lower clip of the rendered depth
NYU_MAX_DEPTH = 9.9  # m, upper clip (9900 mm in the PNG)

_FORMAT_VERSION = 1
_MARKER = ".generator.json"
_FRAMES_PER_TRAIN_DIR = 4  # training images per sync/<scene>_<dddd><letter> directory
_JPEG_QUALITY = 95

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


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


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


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / _MARKER).read_text())
    except (OSError, ValueError):
        return None


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
# ADE20K (ADEChallengeData2016)
# ---------------------------------------------------------------------------------------------

# mmsegmentation's ``ADE20KDataset`` class list, in order: row i is training label i after
# reduce-zero-label, i.e. ADE label i + 1.  'bed ' keeps mmseg's trailing space on purpose.
ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed ", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island",
    "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy",
    "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce",
    "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip

ADE20K_NUM_CLASSES = 150
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
# RefCOCO / RefCOCO+ / RefCOCOg (the ``refer`` data root of LAVT / VPD)
# ---------------------------------------------------------------------------------------------

REFCOCO_DATASETS: tuple[str, ...] = ("refcoco", "refcoco+", "refcocog")
# The split_by values of each data set (``refs(<split_by>).p``) and their split names.
REFCOCO_SPLIT_BYS: dict[str, tuple[str, ...]] = {
    "refcoco": ("unc", "google"),
    "refcoco+": ("unc",),
    "refcocog": ("umd", "google"),
}
REFCOCO_DEFAULT_SPLIT_BY: dict[str, str] = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
REFCOCO_SPLITS: dict[tuple[str, str], tuple[str, ...]] = {
    ("refcoco", "unc"): ("train", "val", "testA", "testB"),
    ("refcoco", "google"): ("train", "val", "test"),
    ("refcoco+", "unc"): ("train", "val", "testA", "testB"),
    ("refcocog", "umd"): ("train", "val", "test"),
    ("refcocog", "google"): ("train", "val"),
}
# Object colours (nominal sRGB); the colours of one image are distinct, so a colour word alone
# always singles an object out.
REFCOCO_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 50),
    "blue": (35, 80, 220),
    "yellow": (240, 215, 35),
    "purple": (150, 55, 190),
    "orange": (250, 135, 20),
}
REFCOCO_SHAPES: tuple[str, ...] = ("circle", "ellipse", "square", "rectangle", "triangle")
# COCO categories standing for the shapes (real COCO ids and names).
REFCOCO_CATEGORIES: tuple[dict, ...] = (
    {"id": 34, "name": "frisbee", "supercategory": "sports"},
    {"id": 37, "name": "sports ball", "supercategory": "sports"},
    {"id": 38, "name": "kite", "supercategory": "sports"},
    {"id": 72, "name": "tv", "supercategory": "electronic"},
    {"id": 84, "name": "book", "supercategory": "indoor"},
)
REFCOCO_SHAPE_CATEGORY: dict[str, int] = {"circle": 37, "ellipse": 34, "square": 72, "rectangle": 84, "triangle": 38}
# Words a sentence may use for each shape.
REFCOCO_SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball"),
    "ellipse": ("ellipse", "oval"),
    "square": ("square",),
    "rectangle": ("rectangle",),
    "triangle": ("triangle",),
}

_REFCOCO_FORMAT_VERSION = 1
_REFCOCO_IMAGE_DIR = ("images", "mscoco", "images", "train2014")
_REFCOCO_ID_BASE = {"refcoco": 1_000_000, "refcoco+": 2_000_000, "refcocog": 3_000_000}  # image ids: base + 1..n
_REFCOCO_MAX_IMAGES = 999_999
_REFCOCO_SIZE_JITTER = (0.85, 1.15)  # image sides are drawn in this range times the requested size
_REFCOCO_RLE_EVERY = 7  # every 7th plain annotation (counted over the data set, from the 4th) is stored as RLE
_REFCOCO_POLE_RGB = (0.28, 0.28, 0.30)  # the thin occluder that splits a "split" object in two parts


def _refcoco_fill(poly: Sequence[float], height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies inside the polygon ``[x1, y1, x2, y2, ...]`` (even-odd rule).

    An axis-aligned rectangle with integer corners ``x0 < x1``, ``y0 < y1`` fills exactly
    ``[y0:y1, x0:x1]``, like pycocotools' rasterisation of the same polygon.
    """
    pts = np.asarray(poly, np.float64).reshape(-1, 2)
    out = np.zeros((height, width), bool)
    x0, x1 = max(0, int(math.floor(pts[:, 0].min()))), min(width, int(math.ceil(pts[:, 0].max())) + 1)
    y0, y1 = max(0, int(math.floor(pts[:, 1].min()))), min(height, int(math.ceil(pts[:, 1].max())) + 1)
    if x0 >= x1 or y0 >= y1:
        return out
    ys = (np.arange(y0, y1) + 0.5)[:, None]
    xs = (np.arange(x0, x1) + 0.5)[None, :]
    inside = np.zeros((y1 - y0, x1 - x0), bool)
    for (xa, ya), (xb, yb) in zip(pts, np.roll(pts, -1, axis=0)):
        if ya == yb:
            continue
        crosses = (ya > ys) != (yb > ys)
        x_cross = xa + (ys - ya) * (xb - xa) / (yb - ya)
        inside ^= crosses & (xs < x_cross)
    out[y0:y1, x0:x1] = inside
    return out


def _refcoco_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a binary mask, ``counts`` as str (what ``pycocotools.mask.encode``
    gives for ``np.asfortranarray(mask.astype(np.uint8))``, with the bytes decoded)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs  # counts start with a (possibly empty) run of zeros
    chars = []
    for i, run in enumerate(runs):
        x = int(run) - (int(runs[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(chars)}


def _refcoco_box_polys(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def _refcoco_layout(
    h: int, w: int, rng: np.random.Generator, shapes: list[str]
) -> list[tuple[int, int, int, int, int]]:
    """Non-overlapping integer boxes ``(index into shapes, x0, y0, x1, y1)``, a margin apart; an
    object that does not fit (after shrinking it a few times) is left out."""
    side = min(h, w)
    gap = max(2, int(round(0.04 * side)))
    placed: list[tuple[int, int, int, int, int]] = []
    reserved: list[tuple[int, int, int, int]] = []
    for index, shape in enumerate(shapes):
        size = rng.uniform(0.24, 0.36) * side  # geometric mean of the two sides
        if shape in ("ellipse", "rectangle"):
            aspect = rng.uniform(1.7, 2.2)
        elif shape == "triangle":
            aspect = rng.uniform(0.9, 1.3)
        else:
            aspect = 1.0
        if rng.uniform() < 0.5:
            aspect = 1.0 / aspect  # tall instead of wide
        for _ in range(6):
            bw = max(4, min(w - 2 * gap, int(round(size * math.sqrt(aspect)))))
            bh = max(4, min(h - 2 * gap, int(round(size / math.sqrt(aspect)))))
            if shape in ("circle", "square"):
                bw = bh = min(bw, bh)
            ok = False
            for _ in range(60):
                x0 = int(rng.integers(gap, max(gap, w - gap - bw) + 1))
                y0 = int(rng.integers(gap, max(gap, h - gap - bh) + 1))
                box = (x0 - gap, y0 - gap, x0 + bw + gap, y0 + bh + gap)
                if all(box[0] >= r[2] or box[2] <= r[0] or box[1] >= r[3] or box[3] <= r[1] for r in reserved):
                    ok = True
                    break
            if ok:
                placed.append((index, x0, y0, x0 + bw, y0 + bh))
                reserved.append(box)
                break
            size *= 0.8
    return placed


def render_refcoco_image(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    split_object: bool = False,
    overlap_object: bool = False,
) -> tuple[np.ndarray, list[dict]]:
    """Render one RefCOCO-style picture: 2-4 coloured shapes on a textured background.

    Objects are circles, ellipses, squares, rectangles and triangles, each of a distinct colour
    of ``REFCOCO_COLOURS`` (+- small jitter and shading), and never touch each other.  The
    background is a low-saturation colour with a texture (checker, stripes, grid or blotches),
    mild shading and sensor noise.  Some squares / rectangles are

    * ``"split"``: a thin dark pole stands in front of them, so their visible part (and their
      segmentation) is two polygons;
    * ``"overlap"``: drawn whole but annotated as two overlapping rectangles (pixels covered by
      both sum to 2 after ``pycocotools.mask.decode``, the quirk VPD / LAVT turn into background).

    ``split_object`` / ``overlap_object`` force the first (second, when both are set) object
    to be such a rectangle.

    Returns ``(rgb, objects)``: uint8 (H, W, 3) and one dict per object with ``shape``,
    ``colour`` (a ``REFCOCO_COLOURS`` name), ``category_id``, ``kind`` ("plain" | "split" |
    "overlap"), ``polygons`` (COCO polygons, a list of ``[x1, y1, x2, y2, ...]``), ``mask``
    (bool (H, W), the pixels the object covers in the picture), ``area`` (pixels), ``bbox``
    (``[x, y, w, h]`` of the mask) and ``centroid`` (``(x, y)`` of the mask).  Everything is
    drawn from ``rng``, so the output is a pure function of the generator's state.
    """
    height = _check_int("height", height, 32)
    width = _check_int("width", width, 32)
    h, w = height, width
    f32 = np.float32

    # --- plan: colours (distinct), shapes (repeated shapes are common), boxes -----------------
    n_obj = int(rng.integers(2, 5))
    colour_names = list(REFCOCO_COLOURS)
    colours = [colour_names[int(i)] for i in rng.choice(len(colour_names), size=n_obj, replace=False)]
    shapes = [REFCOCO_SHAPES[int(i)] for i in rng.integers(len(REFCOCO_SHAPES), size=n_obj)]
    if n_obj >= 3 and rng.uniform() < 0.5:
        shapes[-1] = shapes[0]
    kinds = ["plain"] * n_obj
    for j, shape in enumerate(shapes):
        if shape in ("square", "rectangle"):
            u = rng.uniform()
            kinds[j] = "split" if u < 0.12 else "overlap" if u < 0.24 else "plain"
    forced = [k for k, on in (("split", split_object), ("overlap", overlap_object)) if on]
    for j, kind in enumerate(forced):
        shapes[j] = "rectangle" if rng.uniform() < 0.5 else "square"
        kinds[j] = kind
    boxes = _refcoco_layout(h, w, rng, shapes)

    # --- geometry: polygons and masks -------------------------------------------------------
    side = min(h, w)
    pad = max(2, int(round(0.04 * side)))
    objects: list[dict] = []
    poles: list[tuple[int, int, int, int]] = []
    for j, x0, y0, x1, y1 in boxes:
        shape, kind = shapes[j], kinds[j]
        if shape in ("square", "rectangle"):
            bw = x1 - x0
            gw = max(2, int(round(0.1 * bw)))
            if kind == "split" and bw >= gw + 6:
                ga = x0 + 3 + int(rng.integers(0, bw - gw - 6 + 1))
                polys = [_refcoco_box_polys(x0, y0, ga, y1), _refcoco_box_polys(ga + gw, y0, x1, y1)]
                poles.append((ga, max(0, y0 - pad + 1), ga + gw, min(h, y1 + pad - 1)))
            elif kind == "overlap" and bw >= 6:
                xa = x0 + 2 + int(rng.integers(0, (bw - 4) // 2 + 1))
                xb = min(x1 - 1, xa + max(1, int(round(rng.uniform(0.1, 0.3) * bw))))
                polys = [_refcoco_box_polys(x0, y0, xb, y1), _refcoco_box_polys(xa, y0, x1, y1)]
            else:
                kind = "plain"
                polys = [_refcoco_box_polys(x0, y0, x1, y1)]
        elif shape in ("circle", "ellipse"):
            kind = "plain"
            cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
            t = np.linspace(0.0, 2 * math.pi, 24, endpoint=False) + rng.uniform(0, 2 * math.pi / 24)
            pts = np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)
            polys = [[round(float(v), 2) for v in pts.ravel()]]
        else:  # triangle, apex up or down
            kind = "plain"
            apex = float(rng.uniform(x0 + 0.3 * (x1 - x0), x0 + 0.7 * (x1 - x0)))
            if rng.uniform() < 0.5:
                pts = [(apex, y0), (x1, y1), (x0, y1)]
            else:
                pts = [(x0, y0), (x1, y0), (apex, y1)]
            polys = [[round(float(v), 2) for p in pts for v in p]]
        mask = np.zeros((h, w), bool)
        for p in polys:
            mask |= _refcoco_fill(p, h, w)
        ys, xs = np.nonzero(mask)
        objects.append(
            dict(
                shape=shape,
                colour=colours[j],
                category_id=REFCOCO_SHAPE_CATEGORY[shape],
                kind=kind,
                polygons=polys,
                mask=mask,
                area=int(mask.sum()),
                bbox=[float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())],
                centroid=(float(xs.mean() + 0.5), float(ys.mean() + 0.5)),
            )
        )

    # --- appearance -------------------------------------------------------------------------
    hue = rng.uniform()
    base = np.asarray(colorsys.hsv_to_rgb(hue, rng.uniform(0.03, 0.15), rng.uniform(0.5, 0.8)), f32)
    yy = np.arange(h, dtype=f32)[:, None]
    xx = np.arange(w, dtype=f32)[None, :]
    texture = int(rng.integers(4))
    period = f32(rng.uniform(0.06, 0.14) * side)
    amp = f32(rng.uniform(0.05, 0.1))
    if texture == 0:  # checker
        tex = 1 + amp * (2 * ((np.floor(xx / period) + np.floor(yy / period)) % 2) - 1)
    elif texture == 1:  # diagonal stripes
        tex = 1 + amp * (2 * (np.floor((xx + yy) / period) % 2) - 1)
    elif texture == 2:  # grid lines
        grid = (np.mod(xx, period) < 1.5) | (np.mod(yy, period) < 1.5)
        tex = np.where(grid, f32(1) - 2 * amp, f32(1))
    else:  # smooth blotches
        fx, fy = rng.uniform(3.0, 8.0, size=2) * math.pi, rng.uniform(3.0, 8.0, size=2) * math.pi
        ph = rng.uniform(0, 2 * math.pi, size=2)
        wave0 = np.sin(xx / w * fx[0] + yy / h * fy[0] + ph[0])
        tex = 1 + amp * 1.5 * wave0 * np.sin(xx / w * fx[1] - yy / h * fy[1] + ph[1])
    tex = np.broadcast_to(tex, (h, w)).astype(f32)
    gx, gy = rng.uniform(-0.12, 0.12, size=2)
    shade = 1 + f32(gx) * (xx / w - 0.5) + f32(gy) * (yy / h - 0.5)
    img = base[None, None, :] * (tex * shade)[..., None]
    for o in objects:
        col = np.asarray(REFCOCO_COLOURS[o["colour"]], f32) / 255
        col = col * f32(rng.uniform(0.9, 1.06)) * rng.uniform(0.95, 1.05, size=3).astype(f32)
        ogx, ogy = rng.uniform(-0.15, 0.15, size=2)
        bx, by, bw, bh = o["bbox"]
        oshade = 1 + f32(ogx) * (xx - bx) / max(bw, 1) + f32(ogy) * (yy - by) / max(bh, 1) - f32(ogx + ogy) / 2
        obj = col[None, None, :] * np.broadcast_to(oshade, (h, w))[..., None]
        img = np.where(o["mask"][..., None], obj, img)
    pole_col = np.asarray(_REFCOCO_POLE_RGB, f32)
    for px0, py0, px1, py1 in poles:
        img[py0:py1, px0:px1] = pole_col
    img = img * f32(rng.uniform(0.95, 1.05)) * 255
    img = img + rng.standard_normal(img.shape, dtype=f32) * f32(rng.uniform(2.0, 5.0))
    rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return rgb, objects


def _refcoco_sentences(objects: list[dict], j: int, height: int, width: int, rng: np.random.Generator, style: str):
    """1-3 distinct expressions that single out ``objects[j]``.

    Every expression is unambiguous in its picture: it names the object's colour (colours are
    distinct), or a shape that no other object has, or a shape / position / size combination
    where the object is the extreme one by a clear margin (and lies in that half of the
    picture).  ``style`` "refcoco+" uses no location words (like the real RefCOCO+), "refcocog"
    writes longer sentences.
    """
    o = objects[j]
    colour, shape = o["colour"], o["shape"]
    cx, cy = o["centroid"]
    fx, fy = cx / width, cy / height
    sw = REFCOCO_SHAPE_WORDS[shape]
    s = sw[int(rng.integers(len(sw)))]
    others = [p for i, p in enumerate(objects) if i != j]
    same = [p for p in others if p["shape"] == shape]

    def extremes(group: list[dict]) -> list[str]:
        """Directions in which ``o`` is the extreme object of ``group + [o]`` by a clear margin."""
        if not group:
            return []
        out = []
        dx = [p["centroid"][0] - cx for p in group]
        dy = [p["centroid"][1] - cy for p in group]
        if fx < 0.5 and min(dx) > 0.15 * width:
            out.append("left")
        if fx > 0.5 and max(dx) < -0.15 * width:
            out.append("right")
        if fy < 0.5 and min(dy) > 0.15 * height:
            out.append("top")
        if fy > 0.5 and max(dy) < -0.15 * height:
            out.append("bottom")
        return out

    horiz = "left" if fx < 0.4 else "right" if fx > 0.6 else None
    vert = "top" if fy < 0.4 else "bottom" if fy > 0.6 else None
    cands: list[str] = []
    if style == "refcoco+":
        cands += [f"the {colour} {s}", f"{colour} {s}", f"the {colour} one", f"{colour}"]
        if not same:
            cands += [f"the {s}", f"{s}"]
        else:
            areas = [p["area"] for p in same]
            if o["area"] >= 1.6 * max(areas):
                cands += [f"big {s}", f"the large {s}"]
            if o["area"] * 1.6 <= min(areas):
                cands += [f"small {s}", f"the small {s}"]
    elif style == "refcocog":
        cands += [f"a {colour} {s}", f"the {s} that is {colour}", f"a {colour} colored {s}"]
        if horiz:
            cands.append(f"a {colour} {s} on the {horiz} side of the image")
        if vert:
            cands.append(f"the {colour} {s} near the {vert} of the picture")
        if not same:
            cands.append(f"the only {s} in the picture")
        for d in extremes(same):
            cands.append(f"the {s} closest to the {d} edge of the image")
            if len(same) == 1:
                cands.append(f"the {d} {s} of the two")
    else:  # refcoco
        cands += [f"the {colour} {s}", f"{colour} {s}", f"the {colour} one", f"{colour}"]
        if horiz:
            cands += [f"{colour} {s} on the {horiz}", f"{colour} one on the {horiz}"]
        if horiz and vert:
            cands.append(f"the {colour} one at the {vert} {horiz}")
        if not same:
            cands += [f"the {s}", f"{s}"]
            if horiz:
                cands.append(f"{s} on the {horiz}")
        for d in extremes(same):
            cands += [f"{d} {s}", f"the {s} on the {d}" if d in ("left", "right") else f"the {s} at the {d}"]
        for d in extremes(others):
            cands.append(f"the one on the {d}" if d in ("left", "right") else f"the one at the {d}")
    k = min(len(cands), int(rng.integers(1, 4)))
    return [cands[int(i)] for i in rng.choice(len(cands), size=k, replace=False)]


def _refcoco_image_name(image_id: int) -> str:
    return f"COCO_train2014_{image_id:012d}.jpg"


def _refcoco_image_paths(root: Path, dataset: str, num_images: int) -> list[Path]:
    base = _REFCOCO_ID_BASE[dataset]
    folder = root.joinpath(*_REFCOCO_IMAGE_DIR)
    return [folder / _refcoco_image_name(base + i + 1) for i in range(num_images)]


def _refcoco_split_plan(num_images: int, names: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    """A split name per image: ~10 % of the images (at least one, while possible) for each
    non-train split, the rest (at least one) for 'train'; images are picked at random."""
    n_other = len(names) - 1
    k = min(max(1, num_images // 10), (num_images - 1) // n_other) if n_other else 0
    out = ["train"] * num_images
    perm = rng.permutation(num_images)
    for s, name in enumerate(names[1:]):
        for i in perm[s * k : (s + 1) * k]:
            out[int(i)] = name
    return out


def _refcoco_build(dataset: str, num_images: int, height: int, width: int, seed: int, with_images: bool):
    """Render the data set: (image records, rgb arrays or None, annotations, refs without split)."""
    ds_idx = REFCOCO_DATASETS.index(dataset)
    base = _REFCOCO_ID_BASE[dataset]
    images, pixels, anns, refs = [], [], [], []
    n_plain = 0
    sent_id = 0
    for i in range(num_images):
        image_id = base + i + 1
        img_rng = np.random.default_rng([seed, 0x5EFC0, ds_idx, i])
        lo, hi = _REFCOCO_SIZE_JITTER
        h = max(32, int(round(height * img_rng.uniform(lo, hi))))
        w = max(32, int(round(width * img_rng.uniform(lo, hi))))
        rgb, objects = render_refcoco_image(
            h, w, img_rng, split_object=i == 0, overlap_object=i == 1 or (i == 0 and num_images == 1)
        )
        images.append(dict(id=image_id, file_name=_refcoco_image_name(image_id), height=h, width=w, license=1))
        pixels.append(rgb if with_images else None)
        lang_rng = np.random.default_rng([seed, 0x5EFC0, ds_idx, i, 1])
        for j, o in enumerate(objects):
            ann_id = image_id * 10 + j + 1
            if o["kind"] == "plain":
                n_plain += 1
                use_rle = n_plain % _REFCOCO_RLE_EVERY == 4
            else:
                use_rle = False
            anns.append(
                dict(
                    id=ann_id,
                    image_id=image_id,
                    category_id=o["category_id"],
                    segmentation=_refcoco_rle(o["mask"]) if use_rle else o["polygons"],
                    area=float(o["area"]),
                    bbox=o["bbox"],
                    iscrowd=0,
                )
            )
            sentences = []
            for sent in _refcoco_sentences(objects, j, h, w, lang_rng, dataset):
                sentences.append(dict(tokens=sent.split(), raw=sent, sent_id=sent_id, sent=sent))
                sent_id += 1
            refs.append(
                dict(
                    sent_ids=[x["sent_id"] for x in sentences],
                    file_name=f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
                    ann_id=ann_id,
                    ref_id=len(refs),
                    image_id=image_id,
                    split=None,
                    sentences=sentences,
                    category_id=o["category_id"],
                )
            )
    return images, pixels, anns, refs


def _refcoco_write_refs(ds_dir: Path, dataset: str, split_by: str, refs: list[dict], num_images: int, seed: int):
    sb_idx = REFCOCO_SPLIT_BYS[dataset].index(split_by)
    rng = np.random.default_rng([seed, 0x5EFC0, REFCOCO_DATASETS.index(dataset), 100 + sb_idx])
    plan = _refcoco_split_plan(num_images, REFCOCO_SPLITS[(dataset, split_by)], rng)
    base = _REFCOCO_ID_BASE[dataset]
    out = [dict(r, split=plan[r["image_id"] - base - 1]) for r in refs]
    with open(ds_dir / f"refs({split_by}).p", "wb") as fh:
        pickle.dump(out, fh, protocol=2)


def generate_refcoco(
    root: str | Path,
    dataset: str = "refcoco",
    split_by: str | None = None,
    num_images: int = 24,
    height: int = 160,
    width: int = 200,
    seed: int = 0,
) -> Path:
    """Write a small synthetic RefCOCO / RefCOCO+ / RefCOCOg in the ``refer`` layout of LAVT / VPD.

    ``root`` is the refer data root, holding::

        <root>/images/mscoco/images/train2014/COCO_train2014_%012d.jpg   (shared by all data sets)
        <root>/<dataset>/instances.json       COCO-style images / annotations / categories
        <root>/<dataset>/refs(<split_by>).p   pickled list of refs (protocol 2)

    ``dataset`` is "refcoco", "refcoco+" or "refcocog"; ``split_by`` (default "unc" for refcoco /
    refcoco+, "umd" for refcocog) one of ``REFCOCO_SPLIT_BYS[dataset]``.  Each picture (see
    ``render_refcoco_image``; sides drawn in [0.85, 1.15] x ``height`` / ``width``) holds 2-4
    objects, each one annotation with one ref of 1-3 unambiguous sentences.  All refs of an
    image share its split; each non-train split of ``REFCOCO_SPLITS[(dataset, split_by)]`` gets
    ~10 % of the images (at least one while there are enough images), the rest are 'train'.
    Image ids are ``base + 1 .. base + num_images`` with a base per data set (1e6, 2e6, 3e6), so
    several data sets coexist under one root; the split_bys of one data set share its
    ``instances.json`` and differ only in the splits.  Annotations are polygons, some RLE (counts
    as str); the first image has an object split in two polygons by an occluding pole, the
    second (the first, when it is the only one) one annotated as two overlapping polygons.

    Idempotent: when ``<root>/<dataset>`` already holds a complete data set made with the same
    arguments (recorded in ``<root>/<dataset>/.generator.json``, with the split_bys written so
    far) nothing is written; another ``split_by`` of the same data set only adds its refs file.
    Otherwise a data set made by this generator is replaced (its images, ``instances.json`` and
    every ``refs(*).p``); a ``<root>/<dataset>`` with ``instances.json`` or a refs file but no
    marker (e.g. the real data) is never overwritten (``FileExistsError``).  Returns ``root``.
    """
    if not isinstance(dataset, str) or dataset not in REFCOCO_DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(REFCOCO_DATASETS)}, got {dataset!r}")
    if split_by is None:
        split_by = REFCOCO_DEFAULT_SPLIT_BY[dataset]
    if not isinstance(split_by, str) or split_by not in REFCOCO_SPLIT_BYS[dataset]:
        raise ValueError(
            f"split_by must be one of {', '.join(REFCOCO_SPLIT_BYS[dataset])} for {dataset}, got {split_by!r}"
        )
    num_images = _check_int("num_images", num_images, 1)
    if num_images > _REFCOCO_MAX_IMAGES:
        raise ValueError(f"num_images must be <= {_REFCOCO_MAX_IMAGES}, got {num_images}")
    height = _check_int("height", height, 32)
    width = _check_int("width", width, 32)
    seed = _check_int("seed", seed, 0)
    root = Path(root)
    ds_dir = root / dataset
    config = dict(
        dataset=dataset,
        format_version=_REFCOCO_FORMAT_VERSION,
        num_images=num_images,
        height=height,
        width=width,
        seed=seed,
    )
    image_paths = _refcoco_image_paths(root, dataset, num_images)
    marker = _read_marker(ds_dir)
    done = list(marker.get("split_bys", [])) if marker else []
    if (
        marker
        and marker.get("complete")
        and marker.get("config") == config
        and (ds_dir / "instances.json").is_file()
        and all(p.is_file() for p in image_paths)
    ):
        if split_by in done and (ds_dir / f"refs({split_by}).p").is_file():
            return root
        _, _, _, refs = _refcoco_build(dataset, num_images, height, width, seed, with_images=False)
        _refcoco_write_refs(ds_dir, dataset, split_by, refs, num_images, seed)
        done = [s for s in done if s != split_by] + [split_by]
        (ds_dir / _MARKER).write_text(json.dumps(dict(config=config, complete=True, split_bys=done), indent=2))
        return root

    theirs = [ds_dir / "instances.json", *(ds_dir / f"refs({s}).p" for s in REFCOCO_SPLIT_BYS[dataset])]
    if marker is None and any(p.exists() for p in theirs):
        raise FileExistsError(f"{ds_dir} holds a {dataset} data set not made by this generator; refusing to overwrite")
    if marker is not None and (marker.get("config") or {}).get("dataset") != dataset:
        raise FileExistsError(f"{ds_dir} holds a data set made by another generator; refusing to overwrite")
    ds_dir.mkdir(parents=True, exist_ok=True)
    (ds_dir / _MARKER).write_text(json.dumps(dict(config=config, complete=False, split_bys=[]), indent=2))
    old_n = (marker or {}).get("config", {}).get("num_images")
    if isinstance(old_n, int) and 0 < old_n <= _REFCOCO_MAX_IMAGES:  # our own earlier images
        for p in _refcoco_image_paths(root, dataset, old_n):
            p.unlink(missing_ok=True)
    for p in theirs:
        p.unlink(missing_ok=True)

    images, pixels, anns, refs = _refcoco_build(dataset, num_images, height, width, seed, with_images=True)
    image_paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path, rgb in zip(image_paths, pixels):
        Image.fromarray(rgb).save(path, quality=_JPEG_QUALITY)
    instances = dict(
        info=dict(description=f"synthetic {dataset} (vpd_lightning.data.generate)", version="1.0", year=2014),
        images=images,
        licenses=[dict(id=1, name="synthetic", url="")],
        annotations=anns,
        categories=[dict(c) for c in REFCOCO_CATEGORIES],
    )
    (ds_dir / "instances.json").write_text(json.dumps(instances))
    _refcoco_write_refs(ds_dir, dataset, split_by, refs, num_images, seed)
    (ds_dir / _MARKER).write_text(json.dumps(dict(config=config, complete=True, split_bys=[split_by]), indent=2))
    return root


# ---------------------------------------------------------------------------------------------
# CLI: one subcommand per data set.  To add one, write ``_add_<name>_parser(subparsers)`` that
# registers its subparser with ``set_defaults(func=...)`` and append it to ``_SUBCOMMANDS``.
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


def _run_refcoco(args: argparse.Namespace) -> Path:
    return generate_refcoco(
        args.root,
        dataset=args.dataset_name,
        split_by=args.split_by,
        num_images=args.num_images,
        height=args.height,
        width=args.width,
        seed=args.seed,
    )


def _add_refcoco_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("refcoco", help="synthetic RefCOCO / RefCOCO+ / RefCOCOg (refer / LAVT layout)")
    p.add_argument("--root", required=True, help="the refer data root (holding images/ and <dataset>/)")
    p.add_argument("--dataset", dest="dataset_name", default="refcoco", help=f"one of {', '.join(REFCOCO_DATASETS)}")
    p.add_argument(
        "--split-by",
        default=None,
        help="unc | google (refcoco), unc (refcoco+), umd | google (refcocog); default unc / umd",
    )
    p.add_argument("--num-images", type=int, default=24)
    p.add_argument("--height", type=int, default=160)
    p.add_argument("--width", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_refcoco)


_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_nyuv2_parser,
    _add_ade20k_parser,
    _add_refcoco_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vpd_lightning.data.generate",
        description="Generate small synthetic data sets in the on-disk layout of the real ones.",
    )
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = args.func(args)
    except (ValueError, FileExistsError) as e:
        parser.error(str(e))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
