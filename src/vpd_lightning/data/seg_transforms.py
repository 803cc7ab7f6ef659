"""ADE20K semantic-segmentation augmentation for VPD, faithful to mmsegmentation 0.30.

VPD's ADE20K config (``segmentation/configs/_base_/datasets/ade20k.py`` style, with
``crop_size=(512, 512)``) trains with this mmseg 0.x pipeline, re-implemented here with
numpy + torch only (no OpenCV, no mmcv):

1. ``Resize(img_scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True)``:
   :func:`random_rescale` (built on :func:`rescale_size`, :func:`resize_image`,
   :func:`resize_label`).
2. ``RandomCrop(crop_size=(512, 512), cat_max_ratio=0.75)``: :func:`random_crop`.
3. ``RandomFlip(prob=0.5)`` (horizontal): :func:`random_flip`.
4. ``PhotoMetricDistortion()``: :func:`photometric_distortion`.
5. ``Normalize`` then ``Pad(size=(512, 512), pad_val=0, seg_pad_val=255)``: the dataset
   normalises, then calls :func:`pad_to` (not part of :class:`ADE20KTrainTransform`).

At test time mmseg uses ``Resize(img_scale=(2048, 512), keep_ratio=True)`` without a ratio
range: :func:`test_resize` (image only; labels stay at the original size for evaluation).

Conventions:
    * Images are uint8 ``(H, W, 3)`` RGB numpy arrays; labels are uint8 ``(H, W)`` numpy
      arrays (already ``reduce_zero_label``-ed) with ``255`` = ignore. mmseg works in BGR;
      every step here is channel-order agnostic except the HSV conversion, and using
      RGB->HSV on RGB data is equivalent to mmcv's ``bgr2hsv`` on BGR data.
    * Sizes are ``(height, width)`` everywhere in this module's API. mmcv's ``(w, h)``
      conventions are converted internally.
    * Randomness: all draws come from torch's RNG (``torch.rand`` / ``torch.randint`` with
      an optional :class:`torch.Generator`), never numpy's or Python's global RNG. Each
      mmseg ``np.random.*`` / ``random.*`` call is mirrored by exactly one torch draw, in the
      same order (see each function's docstring), so that the number of draws (e.g. the
      11 crop windows of a failed ``cat_max_ratio`` search) matches mmseg.
    * Resizing uses ``torch.nn.functional.interpolate``: bilinear with
      ``align_corners=False, antialias=False`` on float32, rounded half up back to uint8
      (OpenCV ``INTER_LINEAR`` for uint8 uses the same pixel-centre mapping and rounds its
      fixed-point result half up; results agree up to that fixed-point rounding, i.e. +-1),
      and ``"nearest"`` for labels (``src = floor(dst * in / out)``, OpenCV
      ``INTER_NEAREST``'s mapping), so labels only ever contain values already present.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vpd_lightning.data.transforms import _rand, _randint, _uniform, hsv_to_rgb_uint8, rgb_to_hsv_uint8

__all__ = [
    "ADE20KTrainTransform",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "convert",
    "crop",
    "pad_to",
    "photometric_distortion",
    "random_crop",
    "random_crop_bbox",
    "random_flip",
    "random_rescale",
    "rescale_size",
    "resize_image",
    "resize_label",
    "shift_hue_channel",
    "test_resize",
]

# --------------------------------------------------------------------------- validation helpers


def _describe(array: object) -> str:
    """Describes what was received, for error messages."""
    if isinstance(array, np.ndarray):
        return f"numpy array dtype={array.dtype} shape={tuple(array.shape)}"
    return f"{type(array).__name__}"


def _check_image(image: object, name: str = "image") -> None:
    """Raises ``ValueError`` unless ``image`` is a uint8 ``(H, W, 3)`` numpy array with H, W > 0."""
    if not (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and image.shape[0] > 0
        and image.shape[1] > 0
    ):
        raise ValueError(f"{name} must be a non-empty numpy uint8 array of shape (H, W, 3), got {_describe(image)}")


def _check_label(label: object, image_shape: tuple[int, ...] | None = None, name: str = "label") -> None:
    """Raises ``ValueError`` unless ``label`` is a uint8 ``(H, W)`` array matching ``image_shape[:2]``."""
    if not (
        isinstance(label, np.ndarray)
        and label.dtype == np.uint8
        and label.ndim == 2
        and label.shape[0] > 0
        and label.shape[1] > 0
    ):
        raise ValueError(f"{name} must be a non-empty numpy uint8 array of shape (H, W), got {_describe(label)}")
    if image_shape is not None and tuple(label.shape) != tuple(image_shape[:2]):
        raise ValueError(
            f"{name} shape {tuple(label.shape)} does not match the image's spatial shape "
            f"{tuple(image_shape[:2])}; expected a label of shape (H, W) = {tuple(image_shape[:2])}"
        )


def _check_pair(image: object, label: object) -> None:
    """Validates an (image, label) pair: uint8 ``(H, W, 3)`` and uint8 ``(H, W)``."""
    _check_image(image)
    _check_label(label, image.shape)  # type: ignore[union-attr]


def _check_size(size: object, name: str, allow_zero: bool = False) -> tuple[int, int]:
    """Returns ``size`` as a pair of ints, or raises ``ValueError`` if it is not a positive (h, w) pair."""
    low = 0 if allow_zero else 1
    if (
        not isinstance(size, Sequence)
        or isinstance(size, str)
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= low for s in size)
    ):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a pair of {kind} ints (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def _check_scale(scale: object, name: str = "img_scale") -> tuple[float, float]:
    """Returns ``scale`` as a pair of floats, or raises ``ValueError`` unless it is two positive numbers."""
    if (
        not isinstance(scale, Sequence)
        or isinstance(scale, str)
        or len(scale) != 2
        or not all(isinstance(s, (int, float, np.integer, np.floating)) and not isinstance(s, bool) for s in scale)
        or not all(s > 0 for s in scale)
    ):
        raise ValueError(f"{name} must be a pair of positive numbers (e.g. (2048, 512)), got {scale!r}")
    return float(scale[0]), float(scale[1])


def _check_range(value: object, name: str, positive: bool = False) -> tuple[float, float]:
    """Returns ``value`` as ``(low, high)`` floats with ``low <= high`` or raises ``ValueError``."""
    ok = (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value)
    )
    if ok:
        low, high = float(value[0]), float(value[1])  # type: ignore[index]
        ok = low <= high and (not positive or low > 0)
    if not ok:
        kind = "positive numbers" if positive else "numbers"
        raise ValueError(f"{name} must be a pair of {kind} (low, high) with low <= high, got {value!r}")
    return low, high


# --------------------------------------------------------------------------- resizing


def rescale_size(height: int, width: int, scale: Sequence[float]) -> tuple[int, int]:
    """mmcv's ``rescale_size`` for a tuple scale (``keep_ratio=True``), in (h, w) order.

    ``factor = min(max(scale) / max(h, w), min(scale) / min(h, w))``, i.e. the long edge
    fits in ``max(scale)`` and the short edge in ``min(scale)``; then
    ``new_w = int(w * factor + 0.5)``, ``new_h = int(h * factor + 0.5)`` (mmcv
    ``_scale_size``). Examples with ``scale=(2048, 512)``: (h, w) = (512, 683) -> factor 1
    -> (512, 683); (256, 300) -> factor 2 -> (512, 600); (100, 1000) -> factor 2.048 ->
    (205, 2048).

    Unlike mmcv (whose OpenCV resize would then fail), a side that would round to 0 for an
    extremely elongated input is clamped to 1.

    Args:
        height: Input height (> 0).
        width: Input width (> 0).
        scale: Pair of positive numbers; the order does not matter (``(2048, 512)`` and
            ``(512, 2048)`` are the same target).

    Returns:
        ``(new_height, new_width)``.

    Raises:
        ValueError: If the sizes are not positive ints or ``scale`` is not two positive numbers.
    """
    h, w = _check_size((height, width), "(height, width)")
    s0, s1 = _check_scale(scale, "scale")
    factor = min(max(s0, s1) / max(h, w), min(s0, s1) / min(h, w))
    new_w = int(w * float(factor) + 0.5)
    new_h = int(h * float(factor) + 0.5)
    return max(new_h, 1), max(new_w, 1)


def resize_image(img: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bilinear resize of a uint8 image (mmcv ``imresize(..., interpolation='bilinear')``).

    Computed with ``F.interpolate(mode="bilinear", align_corners=False, antialias=False)``
    on float32, then rounded half up (``floor(x + 0.5)``) and clipped back to uint8. This is
    OpenCV ``INTER_LINEAR``'s sampling (source coordinate ``(dst + 0.5) * in / out - 0.5``,
    edge-clamped, no antialiasing when shrinking); values can differ by 1 because of
    OpenCV's 11-bit fixed-point weights.

    Args:
        img: uint8 array of shape (H, W, 3). Not modified.
        size: Target ``(new_height, new_width)``.

    Returns:
        A new C-contiguous uint8 array of shape (new_height, new_width, 3).

    Raises:
        ValueError: If ``img`` is not uint8 (H, W, 3) or ``size`` is not two positive ints.
    """
    _check_image(img)
    new_h, new_w = _check_size(size, "size")
    if (new_h, new_w) == img.shape[:2]:
        return np.array(img, order="C", copy=True)
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].to(torch.float32)
    y = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False)
    y = y.add_(0.5).floor_().clamp_(0.0, 255.0).to(torch.uint8)
    return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())


def resize_label(label: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a uint8 label map (mmcv ``imresize(..., interpolation='nearest')``).

    Computed with ``F.interpolate(mode="nearest")``: ``src = min(floor(dst * in / out), in - 1)``,
    which is OpenCV ``INTER_NEAREST``'s mapping. Only label values present in the input can
    appear in the output (no blending across classes or with the ignore index).

    Args:
        label: uint8 array of shape (H, W). Not modified.
        size: Target ``(new_height, new_width)``.

    Returns:
        A new C-contiguous uint8 array of shape (new_height, new_width).

    Raises:
        ValueError: If ``label`` is not uint8 (H, W) or ``size`` is not two positive ints.
    """
    _check_label(label)
    new_h, new_w = _check_size(size, "size")
    if (new_h, new_w) == label.shape:
        return np.array(label, order="C", copy=True)
    # float32 represents 0..255 exactly, so this is an exact gather.
    x = torch.from_numpy(np.ascontiguousarray(label))[None, None].to(torch.float32)
    y = F.interpolate(x, size=(new_h, new_w), mode="nearest")
    return np.ascontiguousarray(y[0, 0].to(torch.uint8).numpy())


def random_rescale(
    image: np.ndarray,
    label: np.ndarray,
    img_scale: Sequence[float] = (2048, 512),
    ratio_range: Sequence[float] = (0.5, 2.0),
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg ``Resize(img_scale, ratio_range, keep_ratio=True)`` for one image/label pair.

    One draw: ``ratio = low + (high - low) * torch.rand(())`` (float64; mmseg's
    ``np.random.random_sample() * (max_ratio - min_ratio) + min_ratio``). The target scale
    is ``(int(img_scale[0] * ratio), int(img_scale[1] * ratio))`` and the new size is
    :func:`rescale_size` of it; the image is resized bilinearly, the label with nearest.

    Args:
        image: uint8 RGB image of shape (H, W, 3). Not modified.
        label: uint8 label of shape (H, W). Not modified.
        img_scale: Base scale, e.g. ``(2048, 512)``.
        ratio_range: ``(min_ratio, max_ratio)`` with ``0 < min_ratio <= max_ratio``.
        generator: Optional torch generator; ``None`` uses torch's global RNG.

    Returns:
        ``(image, label)`` resized to the same new (H', W').

    Raises:
        ValueError: On bad dtypes/shapes, scale or ratio range (or if a scaled target side
            truncates to 0).
    """
    _check_pair(image, label)
    s0, s1 = _check_scale(img_scale)
    low, high = _check_range(ratio_range, "ratio_range", positive=True)
    ratio = _uniform(low, high, generator)
    scale = (int(s0 * ratio), int(s1 * ratio))
    if min(scale) <= 0:
        raise ValueError(f"img_scale={tuple(img_scale)!r} times ratio {ratio} gives an empty target scale {scale}")
    new_size = rescale_size(image.shape[0], image.shape[1], scale)
    return resize_image(image, new_size), resize_label(label, new_size)


def test_resize(image: np.ndarray, img_scale: Sequence[float] = (2048, 512)) -> np.ndarray:
    """mmseg test-time ``Resize(img_scale=(2048, 512), keep_ratio=True)`` (no ratio range).

    The image is resized bilinearly to :func:`rescale_size` ``(H, W, img_scale)``; labels are
    not resized (mmseg evaluates at the original resolution).

    Args:
        image: uint8 RGB image of shape (H, W, 3). Not modified.
        img_scale: Target scale, e.g. ``(2048, 512)``.

    Returns:
        The resized uint8 image.

    Raises:
        ValueError: On bad dtype/shape or scale.
    """
    _check_image(image)
    _check_scale(img_scale)
    return resize_image(image, rescale_size(image.shape[0], image.shape[1], img_scale))


# Not a pytest test, even when a test module imports it by name.
test_resize.__test__ = False  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- cropping


def random_crop_bbox(
    height: int,
    width: int,
    crop_size: Sequence[int] = (512, 512),
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """mmseg ``RandomCrop.get_crop_bbox``: one random crop window.

    Two draws, in this order: ``offset_h = randint(0, margin_h + 1)`` then
    ``offset_w = randint(0, margin_w + 1)`` with ``margin = max(size - crop, 0)``. Both are
    drawn even when a margin is 0 (like mmseg's ``np.random.randint(0, 1)``).

    Args:
        height: Image height.
        width: Image width.
        crop_size: ``(crop_h, crop_w)``.
        generator: Optional torch generator.

    Returns:
        ``(y1, y2, x1, x2)`` with ``y2 = y1 + crop_h``, ``x2 = x1 + crop_w``; these may exceed
        the image when it is smaller than the crop (slicing then clips, see :func:`crop`).

    Raises:
        ValueError: If the sizes are not positive ints.
    """
    h, w = _check_size((height, width), "(height, width)")
    crop_h, crop_w = _check_size(crop_size, "crop_size")
    margin_h = max(h - crop_h, 0)
    margin_w = max(w - crop_w, 0)
    offset_h = _randint(0, margin_h + 1, generator)
    offset_w = _randint(0, margin_w + 1, generator)
    return offset_h, offset_h + crop_h, offset_w, offset_w + crop_w


def crop(array: np.ndarray, bbox: Sequence[int]) -> np.ndarray:
    """mmseg ``RandomCrop.crop``: ``array[y1:y2, x1:x2, ...]`` (a view; slicing clips to the array).

    Args:
        array: Array of shape (H, W, ...).
        bbox: ``(y1, y2, x1, x2)``.

    Returns:
        The cropped view.
    """
    y1, y2, x1, x2 = (int(v) for v in bbox)
    return array[y1:y2, x1:x2, ...]


def random_crop(
    image: np.ndarray,
    label: np.ndarray,
    crop_size: Sequence[int] = (512, 512),
    cat_max_ratio: float = 0.75,
    ignore_index: int = 255,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg 0.x ``RandomCrop(crop_size, cat_max_ratio, ignore_index)``.

    Reproduces mmseg's loop exactly (same number and order of draws)::

        bbox = get_crop_bbox()
        if cat_max_ratio < 1:
            for _ in range(10):
                labels, cnt = unique(crop(label, bbox), return_counts=True)
                cnt = cnt[labels != ignore_index]
                if len(cnt) > 1 and max(cnt) / sum(cnt) < cat_max_ratio:
                    break
                bbox = get_crop_bbox()

    So at most 11 windows are drawn (2 draws each, see :func:`random_crop_bbox`), and after
    10 failed checks the 11th window is used unchecked. Ignore pixels are not counted. An
    image smaller than the crop along a side is kept whole along that side (no padding
    here; see :func:`pad_to`).

    Args:
        image: uint8 RGB image of shape (H, W, 3). Not modified.
        label: uint8 label of shape (H, W). Not modified.
        crop_size: ``(crop_h, crop_w)``.
        cat_max_ratio: Maximum fraction of the (non-ignored) crop a single class may take;
            ``>= 1`` disables the check (a single window is drawn).
        ignore_index: Label value excluded from the class counts.
        generator: Optional torch generator.

    Returns:
        ``(image, label)``: new C-contiguous arrays of shape
        ``(min(H, crop_h), min(W, crop_w), 3)`` and ``(min(H, crop_h), min(W, crop_w))``.

    Raises:
        ValueError: On bad dtypes/shapes or crop size.
    """
    _check_pair(image, label)
    crop_hw = _check_size(crop_size, "crop_size")
    height, width = label.shape
    bbox = random_crop_bbox(height, width, crop_hw, generator)
    if cat_max_ratio < 1.0:
        for _ in range(10):
            values, counts = np.unique(crop(label, bbox), return_counts=True)
            counts = counts[values != ignore_index]
            if len(counts) > 1 and np.max(counts) / np.sum(counts) < cat_max_ratio:
                break
            bbox = random_crop_bbox(height, width, crop_hw, generator)
    return (
        np.array(crop(image, bbox), order="C", copy=True),
        np.array(crop(label, bbox), order="C", copy=True),
    )


# --------------------------------------------------------------------------- flipping


def random_flip(
    image: np.ndarray,
    label: np.ndarray,
    prob: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg ``RandomFlip(prob, direction='horizontal')`` for an image/label pair.

    One draw: flip iff ``torch.rand(()) < prob`` (mmseg: ``np.random.rand() < prob``).

    Args:
        image: uint8 RGB image of shape (H, W, 3). Not modified.
        label: uint8 label of shape (H, W). Not modified.
        prob: Flip probability in ``[0, 1]``.
        generator: Optional torch generator.

    Returns:
        ``(image, label)`` as new C-contiguous arrays, both flipped left-right or neither.

    Raises:
        ValueError: On bad dtypes/shapes or ``prob`` outside ``[0, 1]``.
    """
    _check_pair(image, label)
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"flip prob must be in [0, 1], got {prob!r}")
    if _rand(generator) < prob:
        image, label = image[:, ::-1], label[:, ::-1]
    return np.array(image, order="C", copy=True), np.array(label, order="C", copy=True)


# --------------------------------------------------------------------------- photometric distortion


def convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion.convert``: ``clip(img.astype(float32) * alpha + beta, 0, 255).astype(uint8)``.

    Computed in float32 (as numpy does for a float32 array times a Python float), then
    clipped and *truncated* towards zero, e.g. ``100 * 1.5 + 0.7 = 150.7 -> 150``.

    Args:
        img: uint8 array of any shape.
        alpha: Multiplier (contrast / saturation factor).
        beta: Offset (brightness delta).

    Returns:
        A new uint8 array with the same shape.
    """
    out = np.asarray(img).astype(np.float32) * np.float32(alpha) + np.float32(beta)
    return np.clip(out, 0, 255).astype(np.uint8)


def adjust_brightness(img: np.ndarray, beta: float) -> np.ndarray:
    """Brightness step of mmseg's ``PhotoMetricDistortion``: ``convert(img, beta=beta)``."""
    return convert(img, beta=beta)


def adjust_contrast(img: np.ndarray, alpha: float) -> np.ndarray:
    """Contrast step of mmseg's ``PhotoMetricDistortion``: ``convert(img, alpha=alpha)``."""
    return convert(img, alpha=alpha)


def adjust_saturation(img: np.ndarray, alpha: float) -> np.ndarray:
    """Saturation step of mmseg's ``PhotoMetricDistortion``.

    RGB -> HSV (OpenCV 8-bit convention), ``S = convert(S, alpha=alpha)``, HSV -> RGB.

    Args:
        img: uint8 RGB array of shape (..., 3).
        alpha: Saturation factor.

    Returns:
        A new uint8 RGB array with the same shape.
    """
    hsv = rgb_to_hsv_uint8(img)
    hsv[..., 1] = convert(hsv[..., 1], alpha=alpha)
    return hsv_to_rgb_uint8(hsv)


def shift_hue_channel(hue: np.ndarray, delta: int) -> np.ndarray:
    """mmseg's hue update on an OpenCV 8-bit hue channel: ``(H.astype(int) + delta) % 180``.

    E.g. ``170 + 17 -> 7`` and ``0 - 60 -> 120`` (Python/numpy modulo is non-negative).

    Args:
        hue: uint8 hue values in ``[0, 180)`` (2-degree units).
        delta: Integer shift.

    Returns:
        The shifted hue as uint8, same shape.
    """
    return ((np.asarray(hue).astype(np.int64) + int(delta)) % 180).astype(np.uint8)


def adjust_hue(img: np.ndarray, delta: int) -> np.ndarray:
    """Hue step of mmseg's ``PhotoMetricDistortion``: RGB -> HSV, shift H by ``delta`` modulo 180, -> RGB.

    Args:
        img: uint8 RGB array of shape (..., 3).
        delta: Integer hue shift in OpenCV 2-degree units.

    Returns:
        A new uint8 RGB array with the same shape.
    """
    hsv = rgb_to_hsv_uint8(img)
    hsv[..., 0] = shift_hue_channel(hsv[..., 0], delta)
    return hsv_to_rgb_uint8(hsv)


def photometric_distortion(
    image: np.ndarray,
    brightness_delta: int = 32,
    contrast_range: Sequence[float] = (0.5, 1.5),
    saturation_range: Sequence[float] = (0.5, 1.5),
    hue_delta: int = 18,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """mmseg 0.x ``PhotoMetricDistortion`` on a uint8 RGB image.

    Draw order (each "coin" is ``randint(0, 2)``, mmseg's ``random.randint(2)``; each value
    is drawn only when its coin is 1):

    1. brightness coin; ``beta = U(-brightness_delta, brightness_delta)`` ->
       ``convert(img, beta=beta)``;
    2. ``mode = randint(0, 2)``;
    3. if ``mode == 1``: contrast coin; ``alpha = U(*contrast_range)`` -> ``convert(img, alpha=alpha)``;
    4. saturation coin; ``alpha = U(*saturation_range)`` -> :func:`adjust_saturation`;
    5. hue coin; ``delta = randint(-hue_delta, hue_delta)`` (upper bound exclusive, i.e.
       ``-18..17`` by default, like ``np.random.randint``) -> :func:`adjust_hue`;
    6. if ``mode == 0``: contrast as in 3.

    Uniform draws are one float64 ``torch.rand(())`` each, mapped to ``low + (high - low) * u``.

    Args:
        image: uint8 RGB image of shape (H, W, 3). Not modified.
        brightness_delta: Maximum absolute brightness offset.
        contrast_range: ``(lower, upper)`` contrast factors.
        saturation_range: ``(lower, upper)`` saturation factors.
        hue_delta: Maximum absolute hue shift (OpenCV 2-degree units); must be > 0.
        generator: Optional torch generator.

    Returns:
        A new uint8 image with the same shape.

    Raises:
        ValueError: On bad image dtype/shape or parameters.
    """
    _check_image(image)
    c_low, c_high = _check_range(contrast_range, "contrast_range")
    s_low, s_high = _check_range(saturation_range, "saturation_range")
    if not brightness_delta >= 0:
        raise ValueError(f"brightness_delta must be >= 0, got {brightness_delta!r}")
    if not (isinstance(hue_delta, (int, np.integer)) and hue_delta > 0):
        raise ValueError(f"hue_delta must be a positive int, got {hue_delta!r}")

    img = np.array(image, order="C", copy=True)

    def contrast(x: np.ndarray) -> np.ndarray:
        if _randint(0, 2, generator):
            return adjust_contrast(x, _uniform(c_low, c_high, generator))
        return x

    if _randint(0, 2, generator):
        img = adjust_brightness(img, _uniform(-float(brightness_delta), float(brightness_delta), generator))
    mode = _randint(0, 2, generator)
    if mode == 1:
        img = contrast(img)
    if _randint(0, 2, generator):
        img = adjust_saturation(img, _uniform(s_low, s_high, generator))
    if _randint(0, 2, generator):
        img = adjust_hue(img, _randint(-int(hue_delta), int(hue_delta), generator))
    if mode == 0:
        img = contrast(img)
    return img


# --------------------------------------------------------------------------- padding


def pad_to(
    img: np.ndarray,
    label: np.ndarray | None,
    size: Sequence[int],
    img_value: float | Sequence[float],
    label_value: int = 255,
) -> tuple[np.ndarray, np.ndarray | None]:
    """mmseg ``Pad(size=..., pad_val=img_value, seg_pad_val=label_value)``: pad bottom/right.

    Like mmcv ``impad(shape=size)``, each side is padded to ``max(size, current)``: a side
    already at least as large as ``size`` is left unchanged (never cropped). The image may
    be of any dtype (the dataset pads after normalisation, i.e. on float32).

    Args:
        img: Array of shape (H, W) or (H, W, C), any dtype. Not modified.
        label: Integer array of shape (H, W) matching ``img``, or ``None``.
        size: Target ``(height, width)``.
        img_value: Fill value for the image: a scalar, or one value per channel.
        label_value: Fill value for the label (255 = ignore).

    Returns:
        ``(img, label)`` as new arrays of shape ``(max(H, size_h), max(W, size_w), ...)`` with
        the input dtypes; ``label`` is ``None`` if it was ``None``. The original content sits
        at the top-left.

    Raises:
        ValueError: On bad shapes, a label/image size mismatch, a per-channel ``img_value``
            of the wrong length, or a ``label_value`` outside the label dtype's range.
    """
    if not (isinstance(img, np.ndarray) and img.ndim in (2, 3) and img.shape[0] > 0 and img.shape[1] > 0):
        raise ValueError(f"img must be a non-empty numpy array of shape (H, W) or (H, W, C), got {_describe(img)}")
    target_h, target_w = _check_size(size, "size")
    height, width = img.shape[:2]
    out_h, out_w = max(height, target_h), max(width, target_w)

    fill = np.asarray(img_value, dtype=np.float64)
    if fill.ndim > 1 or (fill.ndim == 1 and (img.ndim != 3 or fill.shape[0] != img.shape[2])):
        channels = img.shape[2] if img.ndim == 3 else None
        raise ValueError(
            f"img_value must be a scalar or a sequence of one value per channel ({channels}), got {img_value!r}"
        )
    out_img = np.empty((out_h, out_w) + img.shape[2:], dtype=img.dtype)
    out_img[...] = fill.astype(img.dtype)
    out_img[:height, :width] = img

    out_label = None
    if label is not None:
        is_int_map = isinstance(label, np.ndarray) and label.ndim == 2 and np.issubdtype(label.dtype, np.integer)
        if not is_int_map or tuple(label.shape) != (height, width):
            raise ValueError(
                f"label must be an integer numpy array of shape (H, W) = {(height, width)}, got {_describe(label)}"
            )
        info = np.iinfo(label.dtype)
        if not info.min <= label_value <= info.max:
            raise ValueError(f"label_value={label_value!r} does not fit label dtype {label.dtype}")
        out_label = np.full((out_h, out_w), label_value, dtype=label.dtype)
        out_label[:height, :width] = label
    return out_img, out_label


# --------------------------------------------------------------------------- pipeline


class ADE20KTrainTransform:
    """VPD's mmseg 0.x ADE20K training augmentation, steps 1-4 (no normalisation, no padding).

    Per call, in order: :func:`random_rescale` (1 draw), :func:`random_crop` (2 to 22
    draws), :func:`random_flip` (1 draw), then, if ``photometric``,
    :func:`photometric_distortion` (5 to 10 draws). All draws come from ``generator``.

    Args:
        crop_size: ``(crop_h, crop_w)`` of ``RandomCrop``.
        img_scale: Base scale of ``Resize``.
        ratio_range: ``Resize`` ratio range.
        cat_max_ratio: ``RandomCrop``'s maximum single-class fraction (``>= 1`` disables).
        flip_prob: Horizontal flip probability.
        photometric: Whether to apply ``PhotoMetricDistortion``.
        ignore_index: Label value ignored by the ``cat_max_ratio`` check.

    Raises:
        ValueError: On invalid parameters.
    """

    def __init__(
        self,
        crop_size: tuple[int, int] = (512, 512),
        img_scale: tuple[int, int] = (2048, 512),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        flip_prob: float = 0.5,
        photometric: bool = True,
        ignore_index: int = 255,
    ) -> None:
        self.crop_size = _check_size(crop_size, "crop_size")
        self.img_scale = _check_scale(img_scale)
        self.ratio_range = _check_range(ratio_range, "ratio_range", positive=True)
        if not cat_max_ratio > 0:
            raise ValueError(f"cat_max_ratio must be > 0, got {cat_max_ratio!r}")
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob!r}")
        self.cat_max_ratio = float(cat_max_ratio)
        self.flip_prob = float(flip_prob)
        self.photometric = bool(photometric)
        self.ignore_index = int(ignore_index)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(crop_size={self.crop_size}, img_scale={self.img_scale}, "
            f"ratio_range={self.ratio_range}, cat_max_ratio={self.cat_max_ratio}, flip_prob={self.flip_prob}, "
            f"photometric={self.photometric}, ignore_index={self.ignore_index})"
        )

    def __call__(
        self,
        image: np.ndarray,
        label: np.ndarray,
        generator: torch.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augments one training sample.

        Args:
            image: uint8 RGB image of shape (H, W, 3). Not modified.
            label: uint8 label of shape (H, W), 255 = ignore. Not modified.
            generator: Optional torch generator; ``None`` uses torch's global RNG.

        Returns:
            ``(image, label)``: new C-contiguous uint8 arrays of shapes (h, w, 3) and (h, w)
            with ``h <= crop_h``, ``w <= crop_w`` (smaller when the rescaled image is smaller
            than the crop; pad with :func:`pad_to` after normalisation).

        Raises:
            ValueError: On bad dtypes/shapes.
        """
        _check_pair(image, label)
        image, label = random_rescale(image, label, self.img_scale, self.ratio_range, generator)
        image, label = random_crop(image, label, self.crop_size, self.cat_max_ratio, self.ignore_index, generator)
        image, label = random_flip(image, label, self.flip_prob, generator)
        if self.photometric:
            image = photometric_distortion(image, generator=generator)
        return image, label
