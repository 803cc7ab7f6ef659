"""Tests for vpd_lightning.data.seg_transforms (mmseg 0.x ADE20K pipeline without OpenCV/mmcv)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vpd_lightning.data.seg_transforms as st
from vpd_lightning.data.seg_transforms import (
    ADE20KTrainTransform,
    adjust_hue,
    adjust_saturation,
    convert,
    pad_to,
    photometric_distortion,
    random_crop,
    random_crop_bbox,
    random_flip,
    random_rescale,
    rescale_size,
    resize_image,
    resize_label,
    shift_hue_channel,
)
from vpd_lightning.data.transforms import rgb_to_hsv_uint8


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _coord_sample(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Image whose R/G channels encode (row, col); label = (3 * row + 5 * col) % 251."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    image = np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)
    label = ((3 * rows + 5 * cols) % 251).astype(np.uint8)
    return image, label


def _coord_label(image: np.ndarray) -> np.ndarray:
    rows = image[..., 0].astype(np.int64)
    cols = image[..., 1].astype(np.int64)
    return ((3 * rows + 5 * cols) % 251).astype(np.uint8)


def _random_sample(h: int, w: int, seed: int = 0, n_classes: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    label = rng.integers(0, n_classes, size=(h, w), dtype=np.uint8)
    return image, label


def _states_equal(a: torch.Generator, b: torch.Generator) -> bool:
    return torch.equal(a.get_state(), b.get_state())


# --------------------------------------------------------------------------- rescale_size / resize


def test_rescale_size_hand_values() -> None:
    # factor = min(2048 / 683, 512 / 512) = 1 -> unchanged.
    assert rescale_size(512, 683, (2048, 512)) == (512, 683)
    # factor = min(2048 / 300, 512 / 256) = 2 -> (512, 600).
    assert rescale_size(256, 300, (2048, 512)) == (512, 600)
    # factor = min(2048 / 1000, 512 / 100) = 2.048 -> h = int(204.8 + 0.5) = 205, w = 2048.
    assert rescale_size(100, 1000, (2048, 512)) == (205, 2048)
    # Portrait: factor = min(2048 / 800, 512 / 600) = 0.8533.. -> w = 512, h = int(682.67 + 0.5) = 683.
    assert rescale_size(800, 600, (2048, 512)) == (683, 512)
    # The scale's order does not matter (long edge <- max, short edge <- min).
    assert rescale_size(256, 300, (512, 2048)) == (512, 600)
    # A scaled training target: ratio 0.75 -> (int(1536.0), int(384.0)); factor = min(1536/683, 384/512) = 0.75
    # -> h = 384, w = int(512.25 + 0.5) = 512.
    assert rescale_size(512, 683, (1536, 384)) == (384, 512)


def test_resize_image_hand_values() -> None:
    # Upsampling 1x2 -> 1x4: source x = (dx + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (edge)
    # -> 0, 25, 75, 100.
    img = np.repeat(np.array([[0, 100]], np.uint8)[..., None], 3, axis=-1)
    np.testing.assert_array_equal(resize_image(img, (1, 4))[..., 0], [[0, 25, 75, 100]])
    # Downsampling 1x4 -> 1x2 (no antialiasing): source x = 0.5, 2.5 -> (10+20)/2 = 15, (30+41)/2 = 35.5 -> 36
    # (rounded half up, like OpenCV's fixed point).
    img = np.repeat(np.array([[10, 20, 30, 41]], np.uint8)[..., None], 3, axis=-1)
    out = resize_image(img, (1, 2))
    assert out.dtype == np.uint8 and out.shape == (1, 2, 3)
    np.testing.assert_array_equal(out[..., 0], [[15, 36]])
    # Same along the vertical axis, and channels stay independent.
    img = np.zeros((2, 1, 3), np.uint8)
    img[:, 0, 1] = [0, 100]
    out = resize_image(img, (4, 1))
    np.testing.assert_array_equal(out[:, 0, 1], [0, 25, 75, 100])
    np.testing.assert_array_equal(out[..., 0], 0)
    # Same size: an identical copy, not a view.
    image, _ = _random_sample(5, 6)
    same = resize_image(image, (5, 6))
    np.testing.assert_array_equal(same, image)
    assert not np.shares_memory(same, image)


def test_resize_label_nearest_hand_values() -> None:
    label = np.array([[1, 2, 3, 4]], np.uint8)
    # Upsampling x2: src = floor(dst / 2).
    np.testing.assert_array_equal(resize_label(label, (2, 8)), [[1, 1, 2, 2, 3, 3, 4, 4]] * 2)
    # 4 -> 3: src = floor(dst * 4 / 3) = 0, 1, 2.
    np.testing.assert_array_equal(resize_label(label, (1, 3)), [[1, 2, 3]])
    # 4 -> 2: src = floor(dst * 2) = 0, 2.
    np.testing.assert_array_equal(resize_label(label, (1, 2)), [[1, 3]])


def test_resize_label_keeps_only_existing_values() -> None:
    rng = np.random.default_rng(1)
    label = rng.choice(np.array([0, 7, 42, 255], np.uint8), size=(37, 53))
    for size in [(11, 17), (80, 100), (37, 90), (5, 5)]:
        out = resize_label(label, size)
        assert out.dtype == np.uint8 and out.shape == size
        assert set(np.unique(out).tolist()) <= {0, 7, 42, 255}


def test_random_rescale_draw_and_sizes() -> None:
    image, label = _random_sample(51, 68, n_classes=3)
    label[0, 0] = 255
    for seed in range(4):
        u = torch.rand((), generator=_gen(seed), dtype=torch.float64).item()
        ratio = 0.5 + 1.5 * u
        expected = rescale_size(51, 68, (int(2048 * ratio), int(512 * ratio)))
        g = _gen(seed)
        out_img, out_lbl = random_rescale(image, label, generator=g)
        assert out_img.shape == expected + (3,) and out_lbl.shape == expected
        assert out_img.dtype == np.uint8 and out_lbl.dtype == np.uint8
        assert set(np.unique(out_lbl).tolist()) <= {0, 1, 2, 255}
        # Exactly one draw was made.
        ref = _gen(seed)
        torch.rand((), generator=ref, dtype=torch.float64)
        assert _states_equal(g, ref)
    # A degenerate ratio range of (1, 1) is the test-time resize: 512x683 stays as is.
    image, label = _random_sample(512, 683)
    out_img, out_lbl = random_rescale(image, label, ratio_range=(1.0, 1.0), generator=_gen(0))
    np.testing.assert_array_equal(out_img, image)
    np.testing.assert_array_equal(out_lbl, label)


def test_test_resize() -> None:
    image = np.full((256, 300, 3), 9, np.uint8)
    out = st.test_resize(image)
    assert out.shape == (512, 600, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, 9)
    assert st.test_resize(np.zeros((100, 1000, 3), np.uint8)).shape == (205, 2048, 3)


# --------------------------------------------------------------------------- random crop


def test_random_crop_window_and_alignment() -> None:
    image, label = _coord_sample(40, 50)
    for seed in range(5):
        y1, y2, x1, x2 = random_crop_bbox(40, 50, (16, 20), generator=_gen(seed))
        assert 0 <= y1 <= 40 - 16 and y2 == y1 + 16 and 0 <= x1 <= 50 - 20 and x2 == x1 + 20
        out_img, out_lbl = random_crop(image, label, (16, 20), cat_max_ratio=1.0, generator=_gen(seed))
        assert out_img.shape == (16, 20, 3) and out_lbl.shape == (16, 20)
        assert out_img.flags["C_CONTIGUOUS"] and out_lbl.flags["C_CONTIGUOUS"]
        # The window is the one drawn by random_crop_bbox with the same seed.
        np.testing.assert_array_equal(out_img[:, 0, 0], np.arange(y1, y2))
        np.testing.assert_array_equal(out_img[0, :, 1], np.arange(x1, x2))
        # Label aligned with the image pixel by pixel.
        np.testing.assert_array_equal(out_lbl, _coord_label(out_img))
        assert not np.shares_memory(out_img, image)


def test_random_crop_smaller_than_crop_is_returned_whole() -> None:
    image, label = _coord_sample(10, 12)
    out_img, out_lbl = random_crop(image, label, (16, 20), generator=_gen(0))
    np.testing.assert_array_equal(out_img, image)
    np.testing.assert_array_equal(out_lbl, label)
    # Smaller along one side only: whole height, a random 20-wide window.
    image, label = _coord_sample(10, 30)
    out_img, out_lbl = random_crop(image, label, (16, 20), cat_max_ratio=1.0, generator=_gen(3))
    assert out_img.shape == (10, 20, 3)
    np.testing.assert_array_equal(out_img[:, 0, 0], np.arange(10))
    np.testing.assert_array_equal(out_lbl, _coord_label(out_img))


def test_random_crop_single_class_draws_eleven_windows() -> None:
    image, _ = _coord_sample(40, 50)
    label = np.full((40, 50), 3, np.uint8)
    for seed in range(3):
        g = _gen(seed)
        out_img, out_lbl = random_crop(image, label, (16, 20), cat_max_ratio=0.75, generator=g)
        ref = _gen(seed)
        boxes = [random_crop_bbox(40, 50, (16, 20), generator=ref) for _ in range(11)]
        # 1 initial window + 10 re-draws, and the last one is used unchecked.
        assert _states_equal(g, ref)
        y1, y2, x1, x2 = boxes[-1]
        np.testing.assert_array_equal(out_img, image[y1:y2, x1:x2])
        np.testing.assert_array_equal(out_lbl, 3)
    # cat_max_ratio >= 1 disables the check: a single window (2 draws).
    g = _gen(0)
    random_crop(image, label, (16, 20), cat_max_ratio=1.0, generator=g)
    ref = _gen(0)
    random_crop_bbox(40, 50, (16, 20), generator=ref)
    assert _states_equal(g, ref)


def _reference_cat_crop(label: np.ndarray, crop_size, ratio: float, seed: int):
    """Independent re-statement of mmseg's loop; returns (bbox, accepted)."""
    g = _gen(seed)
    h, w = label.shape
    bbox = random_crop_bbox(h, w, crop_size, generator=g)
    for _ in range(10):
        y1, y2, x1, x2 = bbox
        values, counts = np.unique(label[y1:y2, x1:x2], return_counts=True)
        counts = counts[values != 255]
        if len(counts) > 1 and counts.max() / counts.sum() < ratio:
            return bbox, True
        bbox = random_crop_bbox(h, w, crop_size, generator=g)
    return bbox, False


def test_random_crop_cat_max_ratio_accepts_mixed_window() -> None:
    # 60x60 label, class 0 everywhere except a 19x19 class-1 square (~10% of the image).
    label = np.zeros((60, 60), np.uint8)
    label[5:24, 30:49] = 1
    image, _ = _coord_sample(60, 60)
    n_accepted = 0
    for seed in range(20):
        bbox, accepted = _reference_cat_crop(label, (20, 20), 0.75, seed)
        out_img, out_lbl = random_crop(image, label, (20, 20), cat_max_ratio=0.75, generator=_gen(seed))
        y1, y2, x1, x2 = bbox
        np.testing.assert_array_equal(out_lbl, label[y1:y2, x1:x2])
        np.testing.assert_array_equal(out_img, image[y1:y2, x1:x2])
        if accepted:
            n_accepted += 1
            counts = np.bincount(out_lbl.ravel(), minlength=2)
            assert (counts > 0).sum() == 2 and counts.max() / counts.sum() < 0.75
    assert n_accepted > 0


def test_random_crop_ignore_pixels_are_not_counted() -> None:
    # Crop == image size, so every window is the whole 10x10 label; count windows via the RNG state.
    image, _ = _coord_sample(10, 10)
    flat = np.full(100, 255, np.uint8)
    # 70 px class 1, 5 px class 2, 25 px ignore: without ignore 70/75 = 0.93 (reject; counting the
    # ignore pixels would give 70/100 = 0.7 and accept).
    flat[:70] = 1
    flat[70:75] = 2
    label = flat.reshape(10, 10)
    g = _gen(0)
    random_crop(image, label, (10, 10), cat_max_ratio=0.75, generator=g)
    ref = _gen(0)
    for _ in range(11):
        random_crop_bbox(10, 10, (10, 10), generator=ref)
    assert _states_equal(g, ref)
    # 60 px class 1, 25 px class 2, 15 px ignore: 60/85 = 0.706 < 0.75 -> first window accepted.
    flat = np.full(100, 255, np.uint8)
    flat[:60] = 1
    flat[60:85] = 2
    label = flat.reshape(10, 10)
    g = _gen(0)
    random_crop(image, label, (10, 10), cat_max_ratio=0.75, generator=g)
    ref = _gen(0)
    random_crop_bbox(10, 10, (10, 10), generator=ref)
    assert _states_equal(g, ref)
    # One class plus ignore only: a single counted label is always rejected.
    flat = np.full(100, 255, np.uint8)
    flat[:40] = 1
    g = _gen(0)
    random_crop(image, flat.reshape(10, 10), (10, 10), cat_max_ratio=0.75, generator=g)
    ref = _gen(0)
    for _ in range(11):
        random_crop_bbox(10, 10, (10, 10), generator=ref)
    assert _states_equal(g, ref)


# --------------------------------------------------------------------------- flip


def test_random_flip_alignment_and_draw() -> None:
    image, label = _coord_sample(6, 9)
    out_img, out_lbl = random_flip(image, label, prob=1.0, generator=_gen(0))
    np.testing.assert_array_equal(out_img, image[:, ::-1])
    np.testing.assert_array_equal(out_lbl, label[:, ::-1])
    np.testing.assert_array_equal(out_lbl, _coord_label(out_img))
    out_img, out_lbl = random_flip(image, label, prob=0.0, generator=_gen(0))
    np.testing.assert_array_equal(out_img, image)
    np.testing.assert_array_equal(out_lbl, label)
    flips = []
    for seed in range(8):
        flip = torch.rand((), generator=_gen(seed), dtype=torch.float64).item() < 0.5
        out_img, out_lbl = random_flip(image, label, prob=0.5, generator=_gen(seed))
        assert out_img[0, 0, 1] == (8 if flip else 0)
        np.testing.assert_array_equal(out_lbl, _coord_label(out_img))
        flips.append(flip)
    assert any(flips) and not all(flips)


# --------------------------------------------------------------------------- photometric distortion


def test_convert_truncates_and_clips() -> None:
    px = np.array([100, 200, 10, 100, 0], np.uint8)
    # 100*1.5+0.7 = 150.7 -> 150; 200*1.5+0.7 = 300.7 -> 255; 10*1.5+0.7 = 15.7 -> 15.
    np.testing.assert_array_equal(convert(px, alpha=1.5, beta=0.7), [150, 255, 15, 150, 0])
    # Brightness: 10 - 32 -> 0 (clipped); 100 + 0.99 -> 100 (truncated).
    np.testing.assert_array_equal(convert(np.array([10, 100], np.uint8), beta=-32.0), [0, 68])
    np.testing.assert_array_equal(convert(np.array([10, 100], np.uint8), beta=0.99), [10, 100])
    assert convert(np.zeros((2, 3, 3), np.uint8), alpha=0.5).dtype == np.uint8


def test_hue_shift_wraps() -> None:
    hue = np.array([170, 0, 5, 179], np.uint8)
    # 170 + 17 = 187 -> 7; 0 + 17 = 17; 5 + 17 = 22; 179 + 17 = 196 -> 16.
    np.testing.assert_array_equal(shift_hue_channel(hue, 17), [7, 17, 22, 16])
    # 0 - 18 -> 162; 5 - 18 -> 167.
    np.testing.assert_array_equal(shift_hue_channel(hue, -18), [152, 162, 167, 161])
    # On RGB: (255, 0, 85) has H = round(30 * (0 - 85) / 255) + 180 = 170; +17 -> H = 7:
    # sector 0, f = 7/30, G = 255 * 7/30 = 59.5 -> 60.
    pixel = np.array([[255, 0, 85]], np.uint8)
    assert rgb_to_hsv_uint8(pixel)[0, 0] == 170
    np.testing.assert_array_equal(adjust_hue(pixel, 17), [[255, 60, 0]])
    assert rgb_to_hsv_uint8(adjust_hue(pixel, 17))[0, 0] == 7
    # Red (H=0) - 60 wraps to 120 = blue; + 60 = green.
    red = np.array([[255, 0, 0]], np.uint8)
    np.testing.assert_array_equal(adjust_hue(red, -60), [[0, 0, 255]])
    np.testing.assert_array_equal(adjust_hue(red, 60), [[0, 255, 0]])


def test_adjust_saturation_hand_values() -> None:
    # Red: S = 255 -> 255 * 0.5 = 127.5 -> 127; back to RGB: p = 255 * (1 - 127/255) = 128.
    np.testing.assert_array_equal(adjust_saturation(np.array([[255, 0, 0]], np.uint8), 0.5), [[255, 128, 128]])
    # Greys have S = 0 and are unchanged by any factor.
    grey = np.array([[90, 90, 90]], np.uint8)
    np.testing.assert_array_equal(adjust_saturation(grey, 1.5), grey)


def _reference_photometric(image: np.ndarray, seed: int) -> np.ndarray:
    """mmseg's draw order re-stated with torch draws."""
    g = _gen(seed)

    def rint(low: int, high: int) -> int:
        return int(torch.randint(low, high, (), generator=g).item())

    def unif(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64).item())

    img = image
    if rint(0, 2):
        img = convert(img, beta=unif(-32.0, 32.0))
    mode = rint(0, 2)
    if mode == 1 and rint(0, 2):
        img = convert(img, alpha=unif(0.5, 1.5))
    if rint(0, 2):
        img = adjust_saturation(img, unif(0.5, 1.5))
    if rint(0, 2):
        img = adjust_hue(img, rint(-18, 18))
    if mode == 0 and rint(0, 2):
        img = convert(img, alpha=unif(0.5, 1.5))
    return img


def test_photometric_distortion_draw_order_and_dtype() -> None:
    image, _ = _random_sample(12, 14, seed=3)
    before = image.copy()
    outputs = []
    for seed in range(12):
        out = photometric_distortion(image, generator=_gen(seed))
        assert out.dtype == np.uint8 and out.shape == image.shape
        np.testing.assert_array_equal(out, _reference_photometric(image, seed))
        outputs.append(out)
    np.testing.assert_array_equal(image, before)  # input untouched
    assert any(not np.array_equal(o, image) for o in outputs)
    np.testing.assert_array_equal(
        photometric_distortion(image, generator=_gen(5)), photometric_distortion(image, generator=_gen(5))
    )


# --------------------------------------------------------------------------- padding


def test_pad_to_values_and_sizes() -> None:
    img = np.arange(3 * 4 * 3, dtype=np.float32).reshape(3, 4, 3)
    label = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out_img, out_lbl = pad_to(img, label, (5, 6), img_value=(0.5, -1.0, 2.0))
    assert out_img.shape == (5, 6, 3) and out_img.dtype == np.float32
    assert out_lbl.shape == (5, 6) and out_lbl.dtype == np.uint8
    np.testing.assert_array_equal(out_img[:3, :4], img)
    np.testing.assert_array_equal(out_lbl[:3, :4], label)
    np.testing.assert_array_equal(out_img[3:, :, 0], 0.5)
    np.testing.assert_array_equal(out_img[:, 4:, 1], -1.0)
    np.testing.assert_array_equal(out_img[3:, 4:, 2], 2.0)
    np.testing.assert_array_equal(out_lbl[3:], 255)
    np.testing.assert_array_equal(out_lbl[:, 4:], 255)
    # Scalar fill, a side already larger than the target is kept (never cropped), no label.
    img = np.ones((7, 4, 3), np.uint8)
    out_img, out_lbl = pad_to(img, None, (5, 6), img_value=0)
    assert out_img.shape == (7, 6, 3) and out_lbl is None
    assert out_img[:, :4].min() == 1 and out_img[:, 4:].max() == 0
    # Already big enough: an equal copy.
    out_img, out_lbl = pad_to(img, np.zeros((7, 4), np.uint8), (2, 2), img_value=0, label_value=0)
    np.testing.assert_array_equal(out_img, img)
    assert out_lbl.shape == (7, 4)


# --------------------------------------------------------------------------- full pipeline


def test_train_transform_matches_composition_and_is_reproducible() -> None:
    image, label = _random_sample(60, 80, seed=7, n_classes=4)
    label[:5] = 255
    transform = ADE20KTrainTransform(crop_size=(32, 32), img_scale=(128, 32))
    out1 = transform(image, label, generator=_gen(11))
    out2 = transform(image, label, generator=_gen(11))
    np.testing.assert_array_equal(out1[0], out2[0])
    np.testing.assert_array_equal(out1[1], out2[1])
    assert out1[0].dtype == np.uint8 and out1[1].dtype == np.uint8
    assert out1[0].shape[:2] == out1[1].shape and out1[0].shape[0] <= 32 and out1[0].shape[1] <= 32
    assert set(np.unique(out1[1]).tolist()) <= {0, 1, 2, 3, 255}

    g = _gen(11)
    img, lbl = random_rescale(image, label, (128, 32), (0.5, 2.0), generator=g)
    img, lbl = random_crop(img, lbl, (32, 32), 0.75, 255, generator=g)
    img, lbl = random_flip(img, lbl, 0.5, generator=g)
    img = photometric_distortion(img, generator=g)
    np.testing.assert_array_equal(out1[0], img)
    np.testing.assert_array_equal(out1[1], lbl)

    # Without photometric distortion, a constant image stays constant and uint8.
    flat = np.full((60, 80, 3), 77, np.uint8)
    out_img, _ = ADE20KTrainTransform(crop_size=(32, 32), img_scale=(128, 32), photometric=False)(
        flat, label, generator=_gen(0)
    )
    np.testing.assert_array_equal(out_img, 77)


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "call",
    [
        lambda: resize_image(np.zeros((4, 4, 3), np.float32), (2, 2)),
        lambda: resize_image(np.zeros((4, 4), np.uint8), (2, 2)),
        lambda: resize_image(np.zeros((4, 4, 3), np.uint8), (0, 2)),
        lambda: resize_label(np.zeros((4, 4), np.int32), (2, 2)),
        lambda: rescale_size(4, 4, (2048,)),
        lambda: rescale_size(0, 4, (2048, 512)),
        lambda: random_crop(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint8), (2, 2)),
        lambda: random_crop(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), (0, 2)),
        lambda: random_flip(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 1), np.uint8)),
        lambda: random_rescale(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), ratio_range=(2.0, 1.0)),
        lambda: photometric_distortion(np.zeros((4, 4, 4), np.uint8)),
        lambda: pad_to(np.zeros((4, 4, 3), np.float32), np.zeros((3, 4), np.uint8), (5, 5), 0.0),
        lambda: pad_to(np.zeros((4, 4, 3), np.float32), None, (5, 5), (0.0, 1.0)),
        lambda: ADE20KTrainTransform(crop_size=(512,)),
        lambda: ADE20KTrainTransform()(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32)),
        lambda: st.test_resize(np.zeros((4, 4, 3), np.uint16)),
    ],
)
def test_bad_inputs_raise_value_error(call) -> None:
    with pytest.raises(ValueError):
        call()


def test_error_messages_say_what_was_received() -> None:
    with pytest.raises(ValueError, match=r"uint8.*\(H, W, 3\).*float32.*\(4, 4, 3\)"):
        resize_image(np.zeros((4, 4, 3), np.float32), (2, 2))
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 4\)"):
        random_crop(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint8), (2, 2))
