"""Tests for :class:`vpd_lightning.metrics.DepthMetrics` against hand-computed values."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from vpd_lightning.metrics import DepthMetrics
from vpd_lightning.metrics.depth import eigen_crop_mask

NAMES = ("d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")


def _img(rows, dtype=torch.float64):
    """[1, 1, H, W] tensor from a nested list."""
    return torch.tensor(rows, dtype=dtype)[None, None]


def _assert_results(result, expected, rel=1e-12, abs_=1e-12):
    assert set(result) == set(NAMES)
    for name, value in expected.items():
        assert result[name].ndim == 0, name
        assert result[name].item() == pytest.approx(value, rel=rel, abs=abs_), name


# ----------------------------------------------------------------------------------------------
# API basics
# ----------------------------------------------------------------------------------------------


def test_metric_names_and_flags():
    assert DepthMetrics.METRIC_NAMES == NAMES
    assert DepthMetrics.is_differentiable is False
    assert DepthMetrics.higher_is_better is None
    assert DepthMetrics.full_state_update is False


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"min_depth": 0.0}, "min_depth"),
        ({"min_depth": -1.0}, "min_depth"),
        ({"min_depth": 1.0, "max_depth": 1.0}, "max_depth"),
        ({"min_depth": 1.0, "max_depth": 0.5}, "max_depth"),
    ],
)
def test_invalid_options(kwargs, option):
    with pytest.raises(ValueError, match=option):
        DepthMetrics(**kwargs)


# ----------------------------------------------------------------------------------------------
# Hand-computed values
# ----------------------------------------------------------------------------------------------


def test_hand_computed_single_image():
    # 2x3 image; per-pixel ratio max(g/p, p/g):
    #   (g=1,    p=1.25) -> 1.25 exactly (NOT < 1.25)   d1 0, d2 1, d3 1
    #   (g=2,    p=2.48) -> 1.24                         d1 1, d2 1, d3 1
    #   (g=4,    p=2.5)  -> 1.6  (1.5625 < 1.6 < 1.953)  d1 0, d2 0, d3 1
    #   (g=5,    p=5)    -> 1.0                          d1 1, d2 1, d3 1
    #   (g=1,    p=3)    -> 3.0                          d1 0, d2 0, d3 0
    #   (g=1.25, p=1)    -> 1.25 exactly via g/p         d1 0, d2 1, d3 1
    target = _img([[1.0, 2.0, 4.0], [5.0, 1.0, 1.25]])
    pred = _img([[1.25, 2.48, 2.5], [5.0, 3.0, 1.0]])
    metric = DepthMetrics()
    metric.update(pred, target)
    result = metric.compute()

    g = [1.0, 2.0, 4.0, 5.0, 1.0, 1.25]
    p = [1.25, 2.48, 2.5, 5.0, 3.0, 1.0]
    # |p - g|      = 0.25, 0.48, 1.5, 0, 2, 0.25
    # (p - g)^2    = 0.0625, 0.2304, 2.25, 0, 4, 0.0625
    abs_rel = (0.25 / 1 + 0.48 / 2 + 1.5 / 4 + 0 / 5 + 2 / 1 + 0.25 / 1.25) / 6
    sq_rel = (0.0625 / 1 + 0.2304 / 2 + 2.25 / 4 + 0 / 5 + 4 / 1 + 0.0625 / 1.25) / 6
    rmse = math.sqrt((0.0625 + 0.2304 + 2.25 + 0 + 4 + 0.0625) / 6)
    d = [
        math.log(1.25),
        math.log(1.24),
        math.log(2.5 / 4),
        0.0,
        math.log(3.0),
        -math.log(1.25),
    ]
    rmse_log = math.sqrt(sum(x * x for x in d) / 6)
    log10 = (math.log10(1.25) + math.log10(1.24) + math.log10(4 / 2.5) + 0.0 + math.log10(3.0) + math.log10(1.25)) / 6
    silog = math.sqrt(sum(x * x for x in d) / 6 - 0.5 * (sum(d) / 6) ** 2)
    assert len(g) == len(p) == len(d)
    expected = {
        "d1": 2 / 6,
        "d2": 4 / 6,
        "d3": 5 / 6,
        "abs_rel": abs_rel,
        "sq_rel": sq_rel,
        "rmse": rmse,
        "rmse_log": rmse_log,
        "log10": log10,
        "silog": silog,
    }
    _assert_results(result, expected, rel=1e-12)
    # Sanity-check a couple of numbers written out directly.
    assert result["abs_rel"].item() == pytest.approx((0.25 + 0.24 + 0.375 + 0 + 2 + 0.2) / 6, rel=1e-12)
    assert result["rmse"].item() == pytest.approx(math.sqrt(6.6054 / 6), rel=1e-12)
    assert all(v.dtype == torch.float64 for v in result.values())


def test_d1_threshold_boundary():
    # Ratios just below / exactly / just above 1.25 (float64 inputs, so exact).
    below = math.nextafter(1.25, 0.0)
    above = math.nextafter(1.25, 2.0)
    metric = DepthMetrics()
    metric.update(_img([[below, 1.25, above, 1.0]]), _img([[1.0, 1.0, 1.0, 1.0]]))
    result = metric.compute()
    assert result["d1"].item() == pytest.approx(2 / 4)  # below and the perfect pixel
    assert result["d2"].item() == pytest.approx(1.0)
    assert result["d3"].item() == pytest.approx(1.0)


def test_d2_d3_threshold_boundary():
    # 1.25**2 = 1.5625 and 1.25**3 = 1.953125 are exact in binary floating point.
    metric = DepthMetrics()
    metric.update(_img([[1.5625, 1.953125]]), _img([[1.0, 1.0]]))
    result = metric.compute()
    assert result["d1"].item() == 0.0
    assert result["d2"].item() == 0.0  # 1.5625 is not < 1.5625
    assert result["d3"].item() == pytest.approx(0.5)  # 1.5625 < 1.953125, 1.953125 is not


def test_constant_scale_error():
    # p = 2 g everywhere: ln-diff is ln 2 for every pixel.
    target = _img([[1.0, 2.0], [3.0, 4.0]])
    metric = DepthMetrics()
    metric.update(2 * target, target)
    result = metric.compute()
    expected = {
        "d1": 0.0,
        "d2": 0.0,
        "d3": 0.0,
        "abs_rel": 1.0,
        "sq_rel": (1 + 2 + 3 + 4) / 4,  # (p-g)^2/g = g
        "rmse": math.sqrt((1 + 4 + 9 + 16) / 4),
        "rmse_log": math.log(2),
        "log10": math.log10(2),
        "silog": math.sqrt(0.5) * math.log(2),  # sqrt(ln2^2 - 0.5 ln2^2)
    }
    _assert_results(result, expected)


def test_perfect_prediction():
    target = _img([[1.0, 2.0], [3.0, 4.0]])
    metric = DepthMetrics()
    metric.update(target.clone(), target)
    _assert_results(
        metric.compute(),
        {"d1": 1, "d2": 1, "d3": 1, "abs_rel": 0, "sq_rel": 0, "rmse": 0, "rmse_log": 0, "log10": 0, "silog": 0},
    )


def test_float32_inputs_are_accepted():
    target = _img([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float32)
    metric = DepthMetrics()
    metric.update(2 * target, target)
    result = metric.compute()
    assert result["rmse"].dtype == torch.float64
    assert result["rmse"].item() == pytest.approx(math.sqrt(7.5), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# Per-image averaging
# ----------------------------------------------------------------------------------------------


def test_per_image_averaging_not_pooled():
    # Image A: 4 valid pixels, every error 1 -> RMSE 1, AbsRel 0.5.
    # Image B: 1 valid pixel (others have target 0), error 3 -> RMSE 3, AbsRel 1.5.
    target = torch.tensor([[[2.0, 2.0], [2.0, 2.0]], [[2.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    pred = torch.tensor([[[3.0, 1.0], [3.0, 1.0]], [[5.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    metric = DepthMetrics()
    metric.update(pred, target)
    result = metric.compute()

    per_image_mean_rmse = (1.0 + 3.0) / 2  # 2.0
    pooled_rmse = math.sqrt((4 * 1.0 + 9.0) / 5)  # sqrt(13/5) ~ 1.612
    assert result["rmse"].item() == pytest.approx(per_image_mean_rmse, rel=1e-12)
    assert result["rmse"].item() != pytest.approx(pooled_rmse, rel=1e-3)
    assert result["abs_rel"].item() == pytest.approx((0.5 + 1.5) / 2, rel=1e-12)
    assert result["abs_rel"].item() != pytest.approx((4 * 0.5 + 1.5) / 5, rel=1e-3)
    assert int(metric.num_images) == 2


def test_batched_equals_mean_of_single_image_updates():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(3, 1, 8, 10, generator=gen, dtype=torch.float64) * 12.0  # some > max_depth
    target[1, 0, :4] = 0.0  # missing depth
    pred = target * (0.7 + 0.6 * torch.rand(3, 1, 8, 10, generator=gen, dtype=torch.float64)) + 0.05

    batched = DepthMetrics()
    batched.update(pred, target)
    batched_result = batched.compute()

    singles = []
    for i in range(3):
        m = DepthMetrics()
        m.update(pred[i : i + 1], target[i : i + 1])
        singles.append(m.compute())
    for name in NAMES:
        mean_single = sum(s[name].item() for s in singles) / 3
        assert batched_result[name].item() == pytest.approx(mean_single, rel=1e-12, abs=1e-15), name

    # Accumulating over several update() calls equals one batched update.
    streamed = DepthMetrics()
    streamed.update(pred[:1], target[:1])
    streamed.update(pred[1:], target[1:])
    for name, value in streamed.compute().items():
        assert value.item() == pytest.approx(batched_result[name].item(), rel=1e-12, abs=1e-15), name


# ----------------------------------------------------------------------------------------------
# Valid range and inf / NaN handling
# ----------------------------------------------------------------------------------------------


def test_valid_range_strict_both_sides():
    metric = DepthMetrics(min_depth=0.5, max_depth=10.0)
    # Invalid targets: 0 (missing), == max_depth, > max_depth, == min_depth, < min_depth.
    # Valid targets: 2 (perfect) and 9.5 (error +1). Wild predictions on the invalid pixels.
    target = _img([[0.0, 10.0, 12.0, 0.5], [0.3, 2.0, 9.5, 0.0]])
    pred = _img([[7.0, 1.0, 0.1, 9.0], [8.0, 2.0, 10.5, 3.0]])
    metric.update(pred, target)
    result = metric.compute()
    assert result["rmse"].item() == pytest.approx(math.sqrt((0.0 + 1.0) / 2), rel=1e-12)
    assert result["abs_rel"].item() == pytest.approx((0.0 + 1.0 / 9.5) / 2, rel=1e-12)
    assert result["d1"].item() == pytest.approx(1.0)


def test_nan_target_is_invalid():
    metric = DepthMetrics()
    metric.update(_img([[5.0, 2.0]]), _img([[float("nan"), 2.0]]))
    result = metric.compute()
    assert result["rmse"].item() == 0.0
    assert result["d1"].item() == 1.0


def test_inf_and_nan_predictions_replaced():
    # inf -> max_depth (10), NaN -> min_depth (1e-3), as in the VPD reference (-inf is inf too).
    target = _img([[2.0, 2.0], [2.0, 2.0]])
    pred = _img([[float("inf"), float("nan")], [float("-inf"), 2.0]])
    metric = DepthMetrics(min_depth=1e-3, max_depth=10.0)
    metric.update(pred, target)
    result = metric.compute()
    # Effective prediction: [10, 0.001, 10, 2]
    sq = [8.0**2, 1.999**2, 8.0**2, 0.0]
    assert result["rmse"].item() == pytest.approx(math.sqrt(sum(sq) / 4), rel=1e-12)
    assert result["abs_rel"].item() == pytest.approx((4.0 + 0.9995 + 4.0 + 0.0) / 4, rel=1e-12)
    d = [math.log(5.0), math.log(0.0005), math.log(5.0), 0.0]
    assert result["rmse_log"].item() == pytest.approx(math.sqrt(sum(x * x for x in d) / 4), rel=1e-12)
    assert result["d1"].item() == pytest.approx(0.25)
    assert all(math.isfinite(v.item()) for v in result.values())


# ----------------------------------------------------------------------------------------------
# Eigen crop
# ----------------------------------------------------------------------------------------------


def test_eigen_crop_mask_extents_480x640():
    mask = eigen_crop_mask(480, 640)
    assert mask.shape == (480, 640)
    assert mask.dtype == torch.bool
    rows = mask.any(dim=1).nonzero().flatten()
    cols = mask.any(dim=0).nonzero().flatten()
    assert (rows.min().item(), rows.max().item()) == (45, 470)
    assert (cols.min().item(), cols.max().item()) == (41, 600)
    assert mask.sum().item() == (471 - 45) * (601 - 41)  # a full rectangle
    assert mask[45:471, 41:601].all()


def test_eigen_crop_mask_scales_with_size():
    mask = eigen_crop_mask(960, 1280)  # exactly 2x -> 90:942, 82:1202
    rows = mask.any(dim=1).nonzero().flatten()
    cols = mask.any(dim=0).nonzero().flatten()
    assert (rows.min().item(), rows.max().item()) == (90, 941)
    assert (cols.min().item(), cols.max().item()) == (82, 1201)
    assert mask.sum().item() == (942 - 90) * (1202 - 82)
    with pytest.raises(ValueError):
        eigen_crop_mask(0, 10)


def test_eigen_crop_ignores_errors_outside_crop():
    target = torch.full((1, 1, 480, 640), 3.0, dtype=torch.float64)
    pred = target.clone()
    outside = ~eigen_crop_mask(480, 640)
    pred[0, 0][outside] = 6.0  # wrong only outside the crop

    cropped = DepthMetrics(eigen_crop=True)
    cropped.update(pred, target)
    res_crop = cropped.compute()
    assert res_crop["rmse"].item() == 0.0
    assert res_crop["abs_rel"].item() == 0.0
    assert res_crop["d1"].item() == 1.0

    full = DepthMetrics(eigen_crop=False)
    full.update(pred, target)
    res_full = full.compute()
    frac_outside = 1.0 - (426 * 560) / (480 * 640)
    assert res_full["rmse"].item() == pytest.approx(math.sqrt(9.0 * frac_outside), rel=1e-12)
    assert res_full["d1"].item() == pytest.approx(1.0 - frac_outside, rel=1e-12)


def test_eigen_crop_with_no_valid_pixel_inside_crop_is_skipped():
    target = torch.zeros(1, 1, 480, 640, dtype=torch.float64)
    target[0, 0, :10, :] = 2.0  # valid depth only above the crop
    metric = DepthMetrics(eigen_crop=True)
    metric.update(torch.full_like(target, 2.0), target)
    with pytest.raises(RuntimeError, match="Eigen crop"):
        metric.compute()


# ----------------------------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------------------------


def test_channel_dim_and_no_channel_dim_agree():
    gen = torch.Generator().manual_seed(1)
    target = 1.0 + 5.0 * torch.rand(2, 1, 6, 7, generator=gen)
    pred = target * (0.8 + 0.4 * torch.rand(2, 1, 6, 7, generator=gen))
    results = []
    for p, g in [(pred, target), (pred[:, 0], target[:, 0]), (pred, target[:, 0]), (pred[:, 0], target)]:
        m = DepthMetrics()
        m.update(p, g)
        results.append(m.compute())
    for other in results[1:]:
        for name in NAMES:
            assert other[name].item() == results[0][name].item(), name


@pytest.mark.parametrize(
    ("pred_shape", "target_shape"),
    [
        ((2, 4, 4), (2, 4, 5)),
        ((2, 1, 4, 4), (1, 1, 4, 4)),
        ((2, 3, 4, 4), (2, 3, 4, 4)),
        ((4, 4), (4, 4)),
        ((1, 1, 1, 4, 4), (1, 1, 1, 4, 4)),
    ],
)
def test_bad_shapes_raise(pred_shape, target_shape):
    metric = DepthMetrics()
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]|\[B, H, W\]") as info:
        metric.update(torch.ones(pred_shape), torch.ones(target_shape))
    assert str(tuple(pred_shape)) in str(info.value)
    assert str(tuple(target_shape)) in str(info.value)


# ----------------------------------------------------------------------------------------------
# Empty images / empty metric / reset
# ----------------------------------------------------------------------------------------------


def test_image_without_valid_pixels_is_skipped():
    target = torch.tensor([[[2.0, 4.0]], [[0.0, 0.0]]], dtype=torch.float64)  # image 2: no valid pixel
    pred = torch.tensor([[[3.0, 4.0]], [[1.0, 1.0]]], dtype=torch.float64)
    metric = DepthMetrics()
    metric.update(pred, target)
    assert int(metric.num_images) == 1
    result = metric.compute()
    assert result["rmse"].item() == pytest.approx(math.sqrt(0.5), rel=1e-12)  # not halved by a 2nd image
    assert result["abs_rel"].item() == pytest.approx(0.25, rel=1e-12)
    assert result["d1"].item() == pytest.approx(0.5)


@pytest.mark.filterwarnings("ignore:The ``compute`` method.*:UserWarning")
def test_compute_without_data_raises():
    metric = DepthMetrics()
    with pytest.raises(RuntimeError, match="no valid image"):
        metric.compute()
    metric.update(torch.ones(1, 2, 2), torch.zeros(1, 2, 2))  # only invalid pixels
    with pytest.raises(RuntimeError, match="no valid image"):
        metric.compute()


@pytest.mark.filterwarnings("ignore:The ``compute`` method.*:UserWarning")
def test_reset_clears_state():
    metric = DepthMetrics()
    metric.update(_img([[4.0]]), _img([[2.0]]))
    assert metric.compute()["rmse"].item() == pytest.approx(2.0)
    metric.reset()
    assert int(metric.num_images) == 0
    assert all(getattr(metric, f"{n}_sum").item() == 0.0 for n in NAMES)
    with pytest.raises(RuntimeError):
        metric.compute()
    metric.update(_img([[2.5]]), _img([[2.0]]))
    assert metric.compute()["rmse"].item() == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------
# Distributed reduction (simulated via state merging)
# ----------------------------------------------------------------------------------------------


def test_merged_states_equal_single_process_result():
    gen = torch.Generator().manual_seed(2)
    target = 0.5 + 9.0 * torch.rand(6, 1, 6, 6, generator=gen, dtype=torch.float64)
    target[1] = 0.0  # an image without valid pixels on "rank 0"
    pred = target * (0.6 + 0.8 * torch.rand(6, 1, 6, 6, generator=gen, dtype=torch.float64))

    reference = DepthMetrics()
    reference.update(pred, target)
    expected = reference.compute()
    assert int(reference.num_images) == 5

    # Uneven split: rank 0 sees 3 images (one empty -> 2 counted), rank 1 sees 3 images.
    rank0, rank1 = DepthMetrics(), DepthMetrics()
    rank0.update(pred[:3], target[:3])
    rank1.update(pred[3:], target[3:])
    assert int(rank0.num_images) == 2 and int(rank1.num_images) == 3
    # (computed on copies: torchmetrics' merge_state does not invalidate a cached compute() result)
    mean_of_rank_means = (copy.deepcopy(rank0).compute()["rmse"].item() + rank1.compute()["rmse"].item()) / 2

    # Manual "all-reduce sum" of every state, as dist_reduce_fx="sum" does.
    manual = {
        name: (getattr(rank0, f"{name}_sum") + getattr(rank1, f"{name}_sum")) / (rank0.num_images + rank1.num_images)
        for name in NAMES
    }

    rank0.merge_state(rank1)
    merged = rank0.compute()
    assert int(rank0.num_images) == 5
    for name in NAMES:
        assert merged[name].item() == pytest.approx(expected[name].item(), rel=1e-12, abs=1e-15), name
        assert manual[name].item() == pytest.approx(expected[name].item(), rel=1e-12, abs=1e-15), name
    # Mean over all images, not the mean of the per-rank means.
    assert merged["rmse"].item() != pytest.approx(mean_of_rank_means, rel=1e-6)


def test_states_use_sum_reduction():
    metric = DepthMetrics()
    state_names = [f"{n}_sum" for n in NAMES] + ["num_images"]
    assert set(metric._defaults) == set(state_names)
    for name in state_names:
        assert metric._reductions[name] is torch.sum or metric._reductions[name].__name__ == "dim_zero_sum", name
