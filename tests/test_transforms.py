"""Tests for vpd_lightning.data.transforms (numpy re-implementation of VPD's NYUv2 augmentation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vpd_lightning.data.transforms import (
    NYUTrainAugment,
    brightness_contrast,
    cutdepth,
    gamma_lut,
    hsv_to_rgb_uint8,
    hue_saturation_value,
    rgb_to_hsv_uint8,
    to_tensor_depth,
    to_tensor_image,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand(g: torch.Generator) -> float:
    # Mirrors the module's documented draw: one float64 torch.rand(()) per scalar.
    return float(torch.rand((), generator=g, dtype=torch.float64).item())


def _coord_sample(h: int = 20, w: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Image whose R/G channels encode (row, col); depth = 1000 * row + col (mm)."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    image = np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)
    depth = (1000.0 * rows + cols).astype(np.float32)
    return image, depth


def _random_sample(h: int = 24, w: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    depth = rng.uniform(500.0, 9000.0, size=(h, w)).astype(np.float32)
    return image, depth


# --------------------------------------------------------------------------- LUT helpers


def test_brightness_contrast_hand_values() -> None:
    px = np.array([0, 100, 200, 255], dtype=np.uint8)
    # lut = v * 1.1 + 0.1 * 255, clipped then truncated:
    # 0 -> 25.5 -> 25; 100 -> 135.5 -> 135; 200 -> 245.5 -> 245; 255 -> 306 -> 255.
    np.testing.assert_array_equal(brightness_contrast(px, 1.1, 0.1), [25, 135, 245, 255])
    # 10 * 0.8 - 51 = -43 -> 0 (clipped); 255 * 0.8 - 51 = 153.
    np.testing.assert_array_equal(brightness_contrast(np.array([10, 255], np.uint8), 0.8, -0.2), [0, 153])
    # identity
    allpx = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(brightness_contrast(allpx, 1.0, 0.0), allpx)
    out = brightness_contrast(np.zeros((2, 3, 3), np.uint8), 1.0, 0.1)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)


def test_gamma_lut_hand_values() -> None:
    # (128/255)^2 * 255 = 64.25 -> 64; (64/255)^0.5 * 255 = sqrt(64 * 255) = 127.75 -> 127.
    np.testing.assert_array_equal(gamma_lut(np.array([0, 128, 255], np.uint8), 2.0), [0, 64, 255])
    np.testing.assert_array_equal(gamma_lut(np.array([64], np.uint8), 0.5), [127])
    allpx = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(gamma_lut(allpx, 1.0), allpx)


# --------------------------------------------------------------------------- HSV


@pytest.mark.parametrize(
    ("rgb", "hsv"),
    [
        ((255, 0, 0), (0, 255, 255)),  # red
        ((0, 255, 0), (60, 255, 255)),  # green
        ((0, 0, 255), (120, 255, 255)),  # blue
        ((255, 255, 0), (30, 255, 255)),  # yellow
        ((0, 255, 255), (90, 255, 255)),  # cyan
        ((255, 0, 255), (150, 255, 255)),  # magenta: 30 * -255/255 = -30 -> 150
        ((128, 128, 128), (0, 0, 128)),  # grey
        ((0, 0, 0), (0, 0, 0)),
        ((255, 255, 255), (0, 0, 255)),
        # V=200, diff=150, S=round(255*150/200=191.25)=191, H=round(30*50/150)=10
        ((200, 100, 50), (10, 191, 200)),
        # H=round(30*128/255=15.06)=15
        ((255, 128, 0), (15, 255, 255)),
    ],
)
def test_hsv_known_colours_and_back(rgb: tuple[int, int, int], hsv: tuple[int, int, int]) -> None:
    px = np.array([[rgb]], dtype=np.uint8)
    got = rgb_to_hsv_uint8(px)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got[0, 0], hsv)
    # These colours sit exactly on the hue grid, so the inverse is exact.
    np.testing.assert_array_equal(hsv_to_rgb_uint8(got)[0, 0], rgb)


def test_hsv_greys_round_trip_exactly() -> None:
    greys = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    hsv = rgb_to_hsv_uint8(greys)
    assert np.all(hsv[:, 0] == 0) and np.all(hsv[:, 1] == 0)
    np.testing.assert_array_equal(hsv[:, 2], np.arange(256))
    np.testing.assert_array_equal(hsv_to_rgb_uint8(hsv), greys)


def test_hsv_round_trip_random_images() -> None:
    rng = np.random.default_rng(123)
    img = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    hsv = rgb_to_hsv_uint8(img)
    assert hsv[..., 0].max() < 180
    back = hsv_to_rgb_uint8(hsv)
    err = np.abs(back.astype(np.int64) - img.astype(np.int64)).max(axis=-1)
    chroma = img.max(axis=-1).astype(np.int64) - img.min(axis=-1)
    # OpenCV's 8-bit HSV quantises hue to 30 steps per 60-degree sector, so the
    # round-trip error grows with chroma (max - min): at most chroma / 60 + 1,
    # i.e. <= 2 for chroma <= 60, <= 4 overall (exhaustively true over all 2^24 colours).
    assert np.all(err <= chroma / 60.0 + 1.0)
    assert err[chroma <= 120].max() <= 2
    assert err.max() <= 4
    # zero shifts through the public HSV augmentation == plain round trip
    np.testing.assert_array_equal(hue_saturation_value(img, 0.0, 0.0, 0.0), back)


def test_hsv_round_trip_low_chroma_within_two() -> None:
    rng = np.random.default_rng(7)
    base = rng.integers(40, 216, size=(32, 32, 1))
    img = np.clip(base + rng.integers(-40, 41, size=(32, 32, 3)), 0, 255).astype(np.uint8)
    err = np.abs(hsv_to_rgb_uint8(rgb_to_hsv_uint8(img)).astype(np.int64) - img)
    assert err.max() <= 2


def test_hue_saturation_value_shifts() -> None:
    red = np.array([[[255, 0, 0]]], dtype=np.uint8)
    # H 0 -> 60 (OpenCV units) = green; 0 -> 120 = blue
    np.testing.assert_array_equal(hue_saturation_value(red, 60.0, 0.0, 0.0)[0, 0], [0, 255, 0])
    np.testing.assert_array_equal(hue_saturation_value(red, 120.0, 0.0, 0.0)[0, 0], [0, 0, 255])
    # fractional shifts are truncated in the LUT (albumentations): 60.9 -> 60
    np.testing.assert_array_equal(hue_saturation_value(red, 60.9, 0.0, 0.0)[0, 0], [0, 255, 0])
    # H = (0 - 20) mod 180 = 160 -> sector 5, f = 1/3: (v, p, q) = (255, 0, 255 * 2/3 = 170)
    np.testing.assert_array_equal(hue_saturation_value(red, -20.0, 0.0, 0.0)[0, 0], [255, 0, 170])
    # saturation to 0 -> grey at V; value shift clips
    np.testing.assert_array_equal(hue_saturation_value(red, 0.0, -255.0, 0.0)[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(hue_saturation_value(red, 0.0, 0.0, -55.0)[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(hue_saturation_value(red, 0.0, 0.0, 30.0)[0, 0], [255, 0, 0])


# --------------------------------------------------------------------------- geometry


def test_flip_crop_keep_image_and_depth_aligned() -> None:
    image, depth = _coord_sample(20, 30)
    aug = NYUTrainAugment(crop_size=(8, 12), photometric=False)
    flips = set()
    for seed in range(40):
        out_img, out_depth = aug(image, depth, generator=_gen(seed))
        assert out_img.shape == (8, 12, 3) and out_img.dtype == np.uint8
        assert out_depth.shape == (8, 12) and out_depth.dtype == np.float32
        # every output pixel of image and depth comes from the same source pixel
        np.testing.assert_array_equal(out_img[..., 0] * 1000.0 + out_img[..., 1], out_depth)

        # recompute the documented draws: flip coin, crop top, crop left
        g = _gen(seed)
        flip = _rand(g) < 0.5
        top = int(torch.randint(0, 20 - 8 + 1, (), generator=g))
        left = int(torch.randint(0, 30 - 12 + 1, (), generator=g))
        flips.add(flip)
        rows = np.arange(top, top + 8)
        cols = np.arange(left, left + 12)
        if flip:
            cols = 30 - 1 - cols  # window taken in the flipped frame
        np.testing.assert_array_equal(out_img[:, 0, 0], rows)
        np.testing.assert_array_equal(out_img[0, :, 1], cols)
        np.testing.assert_array_equal(out_depth, 1000.0 * rows[:, None] + cols[None, :])
    assert flips == {True, False}


def test_crop_larger_than_image_raises() -> None:
    image, depth = _random_sample(24, 32)
    with pytest.raises(ValueError, match=r"\(24, 32\).*\(30, 20\)"):
        NYUTrainAugment(crop_size=(30, 20))(image, depth, generator=_gen(0))
    with pytest.raises(ValueError, match="smaller than the crop"):
        NYUTrainAugment(crop_size=(10, 33))(image, depth, generator=_gen(0))


def test_full_size_crop_does_not_alias_input() -> None:
    image, depth = _random_sample(16, 16)
    img_copy, depth_copy = image.copy(), depth.copy()
    for seed in range(6):
        out_img, out_depth = NYUTrainAugment(crop_size=(16, 16))(image, depth, generator=_gen(seed))
        assert not np.shares_memory(out_img, image) and not np.shares_memory(out_depth, depth)
        assert out_img.flags.c_contiguous and out_depth.flags.c_contiguous
    np.testing.assert_array_equal(image, img_copy)
    np.testing.assert_array_equal(depth, depth_copy)


def test_default_crop_on_nyu_sized_sample() -> None:
    image, depth = _random_sample(480, 640)
    out_img, out_depth = NYUTrainAugment()(image, depth, generator=_gen(3))
    assert out_img.shape == (480, 480, 3) and out_depth.shape == (480, 480)


# --------------------------------------------------------------------------- photometric


def test_photometric_leaves_depth_unchanged() -> None:
    image, depth = _random_sample(24, 32, seed=1)
    geo = NYUTrainAugment(crop_size=(16, 20), photometric=False)
    full = NYUTrainAugment(crop_size=(16, 20), photometric=True)
    changed = 0
    for seed in range(12):
        # flip and crop draws come first, so the window is the same for both
        img_a, depth_a = geo(image, depth, generator=_gen(seed))
        img_b, depth_b = full(image, depth, generator=_gen(seed))
        np.testing.assert_array_equal(depth_a, depth_b)
        changed += int(not np.array_equal(img_a, img_b))
    assert changed > 0


def test_pipeline_matches_documented_draw_order() -> None:
    image, depth = _random_sample(24, 32, seed=2)
    aug = NYUTrainAugment(crop_size=(16, 20))
    for seed in range(10):
        out_img, out_depth = aug(image, depth, generator=_gen(seed))
        g = _gen(seed)
        img, dep = image, depth
        if _rand(g) < 0.5:
            img, dep = img[:, ::-1], dep[:, ::-1]
        top = int(torch.randint(0, 24 - 16 + 1, (), generator=g))
        left = int(torch.randint(0, 32 - 20 + 1, (), generator=g))
        img, dep = img[top : top + 16, left : left + 20], dep[top : top + 16, left : left + 20]
        if _rand(g) < 0.5:
            alpha = 1.0 + (-0.2 + 0.4 * _rand(g))
            beta = -0.2 + 0.4 * _rand(g)
            img = brightness_contrast(img, alpha, beta)
        if _rand(g) < 0.5:
            img = gamma_lut(img, (80.0 + 40.0 * _rand(g)) / 100.0)
        if _rand(g) < 0.5:
            hue = -20.0 + 40.0 * _rand(g)
            sat = -30.0 + 60.0 * _rand(g)
            val = -20.0 + 40.0 * _rand(g)
            img = hue_saturation_value(img, hue, sat, val)
        np.testing.assert_array_equal(out_img, img)
        np.testing.assert_array_equal(out_depth, dep)


# --------------------------------------------------------------------------- CutDepth


def test_cutdepth_reference_mode_and_window() -> None:
    h, w = 10, 40
    image = np.full((h, w, 3), 7, dtype=np.uint8)
    depth = np.full((h, w), 1000.0, dtype=np.float32)
    for seed in range(25):
        out = cutdepth(image, depth, generator=_gen(seed))
        g = _gen(seed)
        alpha, beta = _rand(g), _rand(g)
        left = int(alpha * w)
        width = int(max((w - alpha * w) * beta * 0.75, 1))
        assert width >= 1 and left + width <= w
        changed_cols = np.flatnonzero(np.any(out != 7, axis=(0, 2)))
        np.testing.assert_array_equal(changed_cols, np.arange(left, left + width))
        # 1000 mm -> 1000 % 256 = 232 in all three channels
        assert np.all(out[:, left : left + width, :] == 232)
        assert np.all(out[:, :left] == 7) and np.all(out[:, left + width :] == 7)
    np.testing.assert_array_equal(image, 7)  # input untouched


def test_cutdepth_reference_wraps_modulo_256() -> None:
    h, w = 3, 64
    image = np.zeros((h, w, 3), dtype=np.uint8)
    values = np.array([0.0, 255.0, 256.0, 1000.7, 65535.0, 300.0], dtype=np.float32)
    expected = np.array([0, 255, 0, 232, 255, 44], dtype=np.uint8)
    depth = np.tile(np.resize(values, w), (h, 1))
    exp_cols = np.resize(expected, w)
    out = cutdepth(image, depth, mode="reference", generator=_gen(11))
    g = _gen(11)
    alpha, beta = _rand(g), _rand(g)
    left, width = int(alpha * w), int(max((w - alpha * w) * beta * 0.75, 1))
    for c in range(3):
        np.testing.assert_array_equal(out[:, left : left + width, c], np.tile(exp_cols[left : left + width], (h, 1)))


def test_cutdepth_normalized_mode_values() -> None:
    h, w = 2, 50
    image = np.zeros((h, w, 3), dtype=np.uint8)
    # 255 * 5000/10000 = 127.5 -> 128 (round half up); 2500 -> 63.75 -> 64; >= max -> 255; <= 0 -> 0
    values = np.array([5000.0, 2500.0, 10000.0, 20000.0, 0.0, -5.0], dtype=np.float32)
    expected = np.array([128, 64, 255, 255, 0, 0], dtype=np.uint8)
    depth = np.tile(np.resize(values, w), (h, 1))
    exp_cols = np.resize(expected, w)
    for seed in range(5):
        out = cutdepth(image, depth, mode="normalized", generator=_gen(seed))
        g = _gen(seed)
        alpha, beta = _rand(g), _rand(g)
        left, width = int(alpha * w), int(max((w - alpha * w) * beta * 0.75, 1))
        assert np.all(out[:, left : left + width] == exp_cols[None, left : left + width, None])
        assert np.all(out[:, :left] == 0) and np.all(out[:, left + width :] == 0)
    # custom max depth: 500 / 1000 * 255 = 127.5 -> 128
    out = cutdepth(image, np.full((h, w), 500.0, np.float32), mode="normalized", max_depth_mm=1000.0, generator=_gen(0))
    assert set(np.unique(out).tolist()) <= {0, 128} and 128 in out


def test_cutdepth_invalid_mode_raises() -> None:
    image, depth = _random_sample(4, 4)
    with pytest.raises(ValueError, match=r"mode='bogus'.*reference.*normalized"):
        cutdepth(image, depth, mode="bogus")
    with pytest.raises(ValueError, match="max_depth_mm"):
        cutdepth(image, depth, mode="normalized", max_depth_mm=0.0)


# --------------------------------------------------------------------------- reproducibility


def test_reproducible_with_seeded_generator() -> None:
    image, depth = _random_sample(24, 32, seed=5)
    aug = NYUTrainAugment(crop_size=(16, 16))
    a = aug(cutdepth(image, depth, generator=_gen(42)), depth, generator=_gen(42))
    b = aug(cutdepth(image, depth, generator=_gen(42)), depth, generator=_gen(42))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    outs = {aug(image, depth, generator=_gen(s))[0].tobytes() for s in range(8)}
    assert len(outs) > 1


def test_uses_torch_global_rng_not_numpy() -> None:
    image, depth = _random_sample(24, 32, seed=6)
    aug = NYUTrainAugment(crop_size=(16, 16))
    torch.manual_seed(1234)
    a = aug(cutdepth(image, depth), depth)
    torch.manual_seed(1234)
    np.random.seed(999)  # reseeding numpy must not matter
    b = aug(cutdepth(image, depth), depth)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.random.seed(999)
    state_before = np.random.get_state()[1].copy()
    aug(image, depth)
    cutdepth(image, depth)
    np.testing.assert_array_equal(np.random.get_state()[1], state_before)  # numpy RNG never consumed


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("image", "depth", "pattern"),
    [
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.float32), r"uint8.*\(H, W, 3\).*float32"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.float32), r"\(H, W, 3\).*shape=\(8, 8\)"),
        (np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8), np.float32), r"shape=\(8, 8, 4\)"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint16), r"float.*\(H, W\).*uint16"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 1), np.float32), r"shape=\(8, 8, 1\)"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), np.float32), r"\(8, 9\).*\(8, 8\)"),
        ([[0]], np.zeros((8, 8), np.float32), "got list"),
    ],
)
def test_bad_inputs_raise(image: np.ndarray, depth: np.ndarray, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        NYUTrainAugment(crop_size=(4, 4))(image, depth)
    with pytest.raises(ValueError, match=pattern):
        cutdepth(image, depth)


def test_bad_crop_size_raises() -> None:
    with pytest.raises(ValueError, match="crop_size"):
        NYUTrainAugment(crop_size=(0, 4))
    with pytest.raises(ValueError, match="crop_size"):
        NYUTrainAugment(crop_size=(4,))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- tensors


def test_to_tensor_image_and_depth() -> None:
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 0, 51, 255
    t = to_tensor_image(image)
    assert t.shape == (3, 2, 3) and t.dtype == torch.float32
    assert torch.all(t[0] == 0.0) and torch.allclose(t[1], torch.full((2, 3), 0.2)) and torch.all(t[2] == 1.0)

    depth = np.array([[1500.0, 0.0], [10000.0, 250.0]], dtype=np.float32)
    d = to_tensor_depth(depth)
    assert d.shape == (1, 2, 2) and d.dtype == torch.float32
    torch.testing.assert_close(d[0], torch.tensor([[1.5, 0.0], [10.0, 0.25]]))
    torch.testing.assert_close(to_tensor_depth(depth.astype(np.float64))[0], d[0])
    with pytest.raises(ValueError):
        to_tensor_image(np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError):
        to_tensor_depth(np.zeros((1, 2, 3), np.float32))
