"""Training augmentation for VPD's NYUv2 depth pipeline, re-implemented with numpy.

The original VPD / GLPDepth code (``depth/dataset/base_dataset.py``) used
albumentations (and therefore OpenCV) on uint8 RGB images, with the depth map
(float32, millimetres) as a mask target. This module reproduces that pipeline
without OpenCV or albumentations:

0. :func:`cutdepth` (applied by the *dataset* to every 4th sample it serves,
   before anything else; not part of :class:`NYUTrainAugment`).
1. Horizontal flip (p=0.5), image and depth together.
2. Random crop, same window for image and depth.
3. Random brightness/contrast (p=0.5), image only.
4. Random gamma (p=0.5), image only.
5. Hue/saturation/value shift (p=0.5), image only.

Rounding convention: every uint8 look-up table (LUT) is built in floating point,
clipped to ``[0, 255]`` and then *truncated* towards zero, exactly as
albumentations does with ``np.clip(lut, 0, 255).astype(np.uint8)``. A tolerance
of ``1e-6`` is added before truncation so that values that are integers up to
floating-point noise (e.g. ``gamma == 1``) map to themselves.

Randomness: every random draw goes through torch's RNG (``torch.rand`` /
``torch.randint`` with an optional :class:`torch.Generator`), never numpy's or
Python's global RNG, so that DataLoader worker seeding and Lightning's
``seed_everything`` make runs reproducible. Draws are made in a fixed order, one
``torch.rand((), dtype=torch.float64)`` per scalar (see each function's docstring).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "CUTDEPTH_MODES",
    "NYUTrainAugment",
    "brightness_contrast",
    "cutdepth",
    "gamma_lut",
    "hsv_to_rgb_uint8",
    "hue_saturation_value",
    "rgb_to_hsv_uint8",
    "to_tensor_depth",
    "to_tensor_image",
]

CUTDEPTH_MODES: tuple[str, ...] = ("reference", "normalized")

_LUT_EPS = 1e-6

# OpenCV HSV2RGB sector table, re-ordered to (r, g, b) indices into
# tab = [v, v*(1-s), v*(1-s*f), v*(1-s*(1-f))].
_SECTOR_R = np.array([0, 2, 1, 1, 3, 0])
_SECTOR_G = np.array([3, 0, 0, 2, 1, 1])
_SECTOR_B = np.array([1, 1, 3, 0, 0, 2])


# --------------------------------------------------------------------------- RNG helpers


def _rand(generator: torch.Generator | None) -> float:
    """Draws one float64 uniformly from ``[0, 1)`` with torch's RNG.

    Args:
        generator: Optional torch generator; ``None`` uses torch's global RNG.

    Returns:
        The draw as a Python float.
    """
    return float(torch.rand((), generator=generator, dtype=torch.float64).item())


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    """Draws one float uniformly from ``[low, high)`` with torch's RNG.

    Args:
        low: Lower bound.
        high: Upper bound.
        generator: Optional torch generator.

    Returns:
        The draw as a Python float.
    """
    return low + (high - low) * _rand(generator)


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Draws one integer uniformly from ``[low, high)`` with torch's RNG.

    Args:
        low: Inclusive lower bound.
        high: Exclusive upper bound (must be > ``low``).
        generator: Optional torch generator.

    Returns:
        The draw as a Python int.
    """
    return int(torch.randint(low, high, (), generator=generator).item())


# --------------------------------------------------------------------------- validation helpers


def _describe(array: object) -> str:
    """Describes what was received, for error messages."""
    if isinstance(array, np.ndarray):
        return f"dtype={array.dtype} shape={tuple(array.shape)}"
    return f"{type(array).__name__}"


def _check_image(image: np.ndarray, name: str = "image") -> None:
    """Raises ``ValueError`` unless ``image`` is a uint8 HxWx3 numpy array."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"{name} must be a numpy uint8 array of shape (H, W, 3), got {_describe(image)}")


def _check_depth(depth_mm: np.ndarray, image_shape: tuple[int, ...] | None = None) -> None:
    """Raises ``ValueError`` unless ``depth_mm`` is a float HxW array matching ``image_shape[:2]``."""
    if not (isinstance(depth_mm, np.ndarray) and np.issubdtype(depth_mm.dtype, np.floating) and depth_mm.ndim == 2):
        raise ValueError(
            f"depth_mm must be a numpy float array of shape (H, W) in millimetres, got {_describe(depth_mm)}"
        )
    if image_shape is not None and tuple(depth_mm.shape) != tuple(image_shape[:2]):
        raise ValueError(
            f"depth_mm spatial shape {tuple(depth_mm.shape)} does not match image spatial shape "
            f"{tuple(image_shape[:2])}; expected depth of shape (H, W) = {tuple(image_shape[:2])}"
        )


def _float_to_uint8_lut(values: np.ndarray) -> np.ndarray:
    """Clips float LUT values to ``[0, 255]`` and truncates them to uint8 (albumentations semantics)."""
    return np.floor(np.clip(values, 0.0, 255.0) + _LUT_EPS).astype(np.uint8)


# --------------------------------------------------------------------------- CutDepth


def cutdepth(
    image: np.ndarray,
    depth_mm: np.ndarray,
    mode: str = "reference",
    max_depth_mm: float = 10000.0,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Applies GLPDepth's CutDepth: pastes a vertical strip of depth into the image.

    Two draws are made, in this order: ``alpha = torch.rand(())`` then
    ``beta = torch.rand(())`` (float64, uniform in ``[0, 1)``). With ``W`` the image
    width, ``l = int(alpha * W)`` and ``w = int(max((W - alpha * W) * beta * 0.75, 1))``;
    image columns ``[l, l + w)`` of all three channels are overwritten with depth values.

    Modes:
        ``"reference"``: the raw depth in millimetres cast to uint8 the way the
        reference's numpy float->uint8 cast behaves on x86, i.e. wrapping modulo 256,
        computed deterministically as ``(depth_mm.astype(np.int64) % 256).astype(np.uint8)``
        (e.g. 1000 mm -> 232). Non-finite depths are treated as 0.
        ``"normalized"``: ``floor(255 * clip(depth_mm / max_depth_mm, 0, 1) + 0.5)``, i.e.
        rounding half up (e.g. 5000 mm with ``max_depth_mm=10000`` -> 127.5 -> 128).
        Non-finite depths are treated as 0.

    Args:
        image: uint8 RGB image of shape (H, W, 3). Not modified.
        depth_mm: Float depth map of shape (H, W), in millimetres.
        mode: ``"reference"`` (default) or ``"normalized"``.
        max_depth_mm: Depth mapped to 255 in ``"normalized"`` mode; must be > 0.
        generator: Optional torch generator for the two draws.

    Returns:
        A new uint8 image of shape (H, W, 3).

    Raises:
        ValueError: If ``mode`` is unknown, ``max_depth_mm`` is not positive, or the
            inputs do not have the expected dtypes/shapes.
    """
    if mode not in CUTDEPTH_MODES:
        raise ValueError(f"cutdepth mode={mode!r} is invalid; valid choices are {list(CUTDEPTH_MODES)}")
    if not max_depth_mm > 0:
        raise ValueError(f"cutdepth max_depth_mm must be > 0, got {max_depth_mm}")
    _check_image(image)
    _check_depth(depth_mm, image.shape)

    width = image.shape[1]
    alpha = _rand(generator)
    beta = _rand(generator)
    left = int(alpha * width)
    strip = int(max((width - alpha * width) * beta * 0.75, 1))

    cols = np.nan_to_num(depth_mm[:, left : left + strip].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if mode == "reference":
        values = (cols.astype(np.int64) % 256).astype(np.uint8)
    else:
        values = np.floor(255.0 * np.clip(cols / float(max_depth_mm), 0.0, 1.0) + 0.5).astype(np.uint8)

    out = image.copy()
    out[:, left : left + strip, :] = values[:, :, None]
    return out


# --------------------------------------------------------------------------- photometric helpers


def brightness_contrast(img: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """Albumentations' uint8 brightness/contrast adjustment (``brightness_by_max=True``).

    ``lut = arange(256) * alpha + beta * 255``, clipped to ``[0, 255]`` and truncated to
    uint8 (e.g. pixel 100 with ``alpha=1.1, beta=0.1``: 135.5 -> 135).

    Args:
        img: uint8 array of any shape.
        alpha: Contrast multiplier (``1 + U(-0.2, 0.2)`` in training).
        beta: Brightness offset as a fraction of 255 (``U(-0.2, 0.2)`` in training).

    Returns:
        A new uint8 array with the same shape.
    """
    lut = _float_to_uint8_lut(np.arange(256, dtype=np.float64) * alpha + beta * 255.0)
    return lut[np.asarray(img, dtype=np.uint8)]


def gamma_lut(img: np.ndarray, gamma: float) -> np.ndarray:
    """Albumentations' uint8 gamma transform.

    ``lut = (arange(256) / 255) ** gamma * 255``, clipped and truncated to uint8
    (e.g. pixel 128 with ``gamma=2``: 64.25 -> 64).

    Args:
        img: uint8 array of any shape.
        gamma: Gamma exponent (``U(80, 120) / 100`` in training).

    Returns:
        A new uint8 array with the same shape.
    """
    lut = _float_to_uint8_lut((np.arange(256, dtype=np.float64) / 255.0) ** gamma * 255.0)
    return lut[np.asarray(img, dtype=np.uint8)]


def rgb_to_hsv_uint8(img: np.ndarray) -> np.ndarray:
    """Converts uint8 RGB to HSV with OpenCV's 8-bit convention (``cv2.COLOR_RGB2HSV``).

    ``V = max(R, G, B)``; ``S = round(255 * (V - min) / V)`` (0 when ``V == 0``);
    ``H = round(30 * h' / (V - min))`` in 2-degree units with ``h' = G - B`` if ``V == R``,
    ``B - R + 2 (V - min)`` if ``V == G``, else ``R - G + 4 (V - min)``; negative ``H`` gets
    +180, so ``H`` is in ``[0, 180)``; ``H = 0`` for greys. Rounding is half up, like
    OpenCV's fixed-point arithmetic. Red, green and blue map to H = 0, 60, 120.

    Args:
        img: uint8 array of shape (..., 3) in RGB order.

    Returns:
        A uint8 array of shape (..., 3) holding (H, S, V).
    """
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim < 1 or img.shape[-1] != 3:
        raise ValueError(f"rgb_to_hsv_uint8 expects a uint8 array of shape (..., 3), got {img.dtype} {img.shape}")
    rgb = img.astype(np.int64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    diff = v - rgb.min(axis=-1)

    safe_v = np.maximum(v, 1)
    s = np.where(v > 0, (2 * 255 * diff + safe_v) // (2 * safe_v), 0)

    numer = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    safe_diff = np.maximum(diff, 1)
    # round-half-up of 30 * numer / diff; numpy's // floors for negatives too.
    h = np.where(diff > 0, (60 * numer + safe_diff) // (2 * safe_diff), 0)
    h = np.where(h < 0, h + 180, h)
    return np.stack([h, s, v], axis=-1).astype(np.uint8)


def hsv_to_rgb_uint8(hsv: np.ndarray) -> np.ndarray:
    """Converts OpenCV-convention uint8 HSV back to uint8 RGB (``cv2.COLOR_HSV2RGB``).

    Follows OpenCV's 8-bit path: ``h = H / 30`` (sectors, wrapped modulo 6),
    ``s = S / 255``, ``v = V / 255``, the standard sector formula with
    ``p = v(1-s)``, ``q = v(1-s f)``, ``t = v(1-s(1-f))``, then ``round(255 * x)``
    (round half to even, like ``cvRound``).

    Args:
        hsv: uint8 array of shape (..., 3) holding (H, S, V), H in 2-degree units.

    Returns:
        A uint8 RGB array of shape (..., 3).
    """
    hsv = np.asarray(hsv)
    if hsv.dtype != np.uint8 or hsv.ndim < 1 or hsv.shape[-1] != 3:
        raise ValueError(f"hsv_to_rgb_uint8 expects a uint8 array of shape (..., 3), got {hsv.dtype} {hsv.shape}")
    h = np.mod(hsv[..., 0].astype(np.float64) / 30.0, 6.0)
    s = hsv[..., 1].astype(np.float64) / 255.0
    v = hsv[..., 2].astype(np.float64) / 255.0

    sector = np.floor(h).astype(np.int64)
    sector = np.where((sector < 0) | (sector > 5), 0, sector)
    f = h - sector
    tab = np.stack([v, v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))], axis=-1)

    def pick(idx: np.ndarray) -> np.ndarray:
        return np.take_along_axis(tab, idx[sector][..., None], axis=-1)[..., 0]

    rgb = np.stack([pick(_SECTOR_R), pick(_SECTOR_G), pick(_SECTOR_B)], axis=-1)
    rgb = np.where((s == 0)[..., None], v[..., None], rgb)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def hue_saturation_value(img: np.ndarray, hue_shift: float, sat_shift: float, val_shift: float) -> np.ndarray:
    """Albumentations' uint8 ``HueSaturationValue`` shift.

    RGB -> HSV (OpenCV 8-bit convention), then per-channel LUTs:
    ``H' = trunc((H + hue_shift) mod 180)``, ``S' = trunc(clip(S + sat_shift, 0, 255))``,
    ``V' = trunc(clip(V + val_shift, 0, 255))``, then HSV -> RGB. Shifts are in the
    channel's own units (hue in 2-degree OpenCV units).

    Args:
        img: uint8 RGB array of shape (..., 3).
        hue_shift: Hue shift (``U(-20, 20)`` in training).
        sat_shift: Saturation shift (``U(-30, 30)`` in training).
        val_shift: Value shift (``U(-20, 20)`` in training).

    Returns:
        A new uint8 RGB array with the same shape.
    """
    hsv = rgb_to_hsv_uint8(img)
    x = np.arange(256, dtype=np.float64)
    lut_h = np.floor(np.mod(x + hue_shift, 180.0) + _LUT_EPS).astype(np.int64) % 180
    lut_s = _float_to_uint8_lut(x + sat_shift)
    lut_v = _float_to_uint8_lut(x + val_shift)
    out = np.stack(
        [lut_h.astype(np.uint8)[hsv[..., 0]], lut_s[hsv[..., 1]], lut_v[hsv[..., 2]]],
        axis=-1,
    )
    return hsv_to_rgb_uint8(out)


# --------------------------------------------------------------------------- pipeline


class NYUTrainAugment:
    """VPD/GLPDepth NYUv2 training augmentation (steps 1-5; CutDepth is separate).

    Per call, draws are made in this order, each p=0.5 coin being one
    ``torch.rand(()) < 0.5`` draw:

    1. flip coin;
    2. crop top (``randint(0, H - crop_h + 1)``), crop left (``randint(0, W - crop_w + 1)``);
    3. (if ``photometric``) brightness/contrast coin, then ``alpha = 1 + U(-0.2, 0.2)``,
       ``beta = U(-0.2, 0.2)`` only if the coin fires;
    4. gamma coin, then ``gamma = U(80, 120) / 100`` if it fires;
    5. HSV coin, then hue ``U(-20, 20)``, sat ``U(-30, 30)``, val ``U(-20, 20)`` if it fires.

    Depth is only flipped and cropped, never changed in value.

    Args:
        crop_size: ``(crop_h, crop_w)`` of the random crop.
        photometric: If False, skip steps 3-5.
    """

    def __init__(self, crop_size: tuple[int, int] = (480, 480), photometric: bool = True) -> None:
        if len(crop_size) != 2 or any(int(c) != c or int(c) <= 0 for c in crop_size):
            raise ValueError(f"crop_size must be a pair of positive ints (crop_h, crop_w), got {crop_size!r}")
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.photometric = bool(photometric)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(crop_size={self.crop_size}, photometric={self.photometric})"

    def __call__(
        self,
        image: np.ndarray,
        depth_mm: np.ndarray,
        generator: torch.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augments one training sample.

        Args:
            image: uint8 RGB image of shape (H, W, 3). Not modified.
            depth_mm: Float depth of shape (H, W), millimetres. Not modified.
            generator: Optional torch generator; ``None`` uses torch's global RNG.

        Returns:
            ``(image, depth_mm)``: new C-contiguous arrays of shapes (crop_h, crop_w, 3)
            uint8 and (crop_h, crop_w) with the input depth dtype.

        Raises:
            ValueError: If the inputs have wrong dtypes/shapes, or the image is smaller
                than the crop.
        """
        _check_image(image)
        _check_depth(depth_mm, image.shape)
        height, width = image.shape[:2]
        crop_h, crop_w = self.crop_size
        if height < crop_h or width < crop_w:
            raise ValueError(
                f"image of size (H, W) = ({height}, {width}) is smaller than the crop size "
                f"(crop_h, crop_w) = ({crop_h}, {crop_w})"
            )

        # 1. horizontal flip
        if _rand(generator) < 0.5:
            image = image[:, ::-1]
            depth_mm = depth_mm[:, ::-1]

        # 2. random crop
        top = _randint(0, height - crop_h + 1, generator)
        left = _randint(0, width - crop_w + 1, generator)
        image = np.array(image[top : top + crop_h, left : left + crop_w], order="C", copy=True)
        depth_mm = np.array(depth_mm[top : top + crop_h, left : left + crop_w], order="C", copy=True)

        if self.photometric:
            # 3. brightness / contrast
            if _rand(generator) < 0.5:
                alpha = 1.0 + _uniform(-0.2, 0.2, generator)
                beta = _uniform(-0.2, 0.2, generator)
                image = brightness_contrast(image, alpha, beta)
            # 4. gamma
            if _rand(generator) < 0.5:
                gamma = _uniform(80.0, 120.0, generator) / 100.0
                image = gamma_lut(image, gamma)
            # 5. hue / saturation / value
            if _rand(generator) < 0.5:
                hue = _uniform(-20.0, 20.0, generator)
                sat = _uniform(-30.0, 30.0, generator)
                val = _uniform(-20.0, 20.0, generator)
                image = hue_saturation_value(image, hue, sat, val)

        # The crop above always copies, so the outputs never alias the inputs.
        return image, depth_mm


# --------------------------------------------------------------------------- tensors


def to_tensor_image(image: np.ndarray) -> torch.Tensor:
    """Converts a uint8 HxWx3 image to a float32 ``[3, H, W]`` tensor in ``[0, 1]``.

    Args:
        image: uint8 array of shape (H, W, 3).

    Returns:
        float32 tensor of shape (3, H, W), values ``image / 255``.
    """
    _check_image(image)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(torch.float32).div_(255.0)


def to_tensor_depth(depth_mm: np.ndarray) -> torch.Tensor:
    """Converts an HxW depth map in millimetres to a float32 ``[1, H, W]`` tensor in metres.

    Args:
        depth_mm: Float array of shape (H, W), millimetres.

    Returns:
        float32 tensor of shape (1, H, W), values ``depth_mm / 1000``.
    """
    _check_depth(depth_mm)
    return torch.from_numpy(np.ascontiguousarray(depth_mm, dtype=np.float32) / np.float32(1000.0))[None]
