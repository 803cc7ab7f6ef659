"""The affine-invariant (zero-shot) depth protocol and the KITTI evaluation crops, against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vpd_lightning.metrics import DepthMetrics
from vpd_lightning.metrics.depth import align_scale_shift, eval_crop_mask


def _row(values):
    """[1, 1, 1, N] float64 tensor from a list."""
    return torch.tensor(values, dtype=torch.float64)[None, None, None]


def test_scale_shift_of_an_exact_affine_relation_is_recovered():
    pred = _row([1.0, 2.0, 3.0, 4.0])[:, 0]
    scale, shift = align_scale_shift(pred, 2.0 * pred + 1.0, torch.ones_like(pred, dtype=torch.bool))
    assert scale.tolist() == pytest.approx([2.0]) and shift.tolist() == pytest.approx([1.0])


def test_hand_computed_depth_alignment_and_metrics():
    # p = [1, 2, 3], g = [1, 3, 2.2]: mean p 2, mean g 6.2/3; cov = sum (p - 2)(g - mean g) = 1.2, var = 2
    # -> s = 0.6, t = 6.2/3 - 1.2; aligned = [t + 0.6, t + 1.2, t + 1.8] = [1.4667, 2.0667, 2.6667]
    metric = DepthMetrics(min_depth=1e-3, max_depth=10.0, alignment="depth")
    metric.update(_row([1.0, 2.0, 3.0]), _row([1.0, 3.0, 2.2]))
    t = 6.2 / 3 - 1.2
    aligned = np.array([t + 0.6, t + 1.2, t + 1.8])
    target = np.array([1.0, 3.0, 2.2])
    result = metric.compute()
    assert float(result["abs_rel"]) == pytest.approx(np.mean(np.abs(aligned - target) / target), rel=1e-12)
    # ratios 1.467, 1.452, 1.212: only the last is within 1.25
    assert float(result["d1"]) == pytest.approx(1 / 3, rel=1e-12)
    assert float(result["rmse"]) == pytest.approx(np.sqrt(np.mean((aligned - target) ** 2)), rel=1e-12)


def test_depth_alignment_matches_numpy_polyfit_per_image():
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 1, 5, 7, generator=gen, dtype=torch.float64) * 4 + 0.5
    target = torch.rand(3, 1, 5, 7, generator=gen, dtype=torch.float64) * 6 + 1.0
    target[0, 0, 0, :3] = 0.0  # invalid pixels stay out of the fit
    metric = DepthMetrics(min_depth=1e-3, max_depth=10.0, alignment="depth")
    metric.update(pred, target)
    abs_rel, d1 = [], []
    for p, g in zip(pred[:, 0].numpy(), target[:, 0].numpy(), strict=True):
        valid = (g > 1e-3) & (g < 10.0)
        s, t = np.polyfit(p[valid], g[valid], 1)
        a = np.clip(s * p[valid] + t, 1e-3, 10.0)
        abs_rel.append(np.mean(np.abs(a - g[valid]) / g[valid]))
        d1.append(np.mean(np.maximum(a / g[valid], g[valid] / a) < 1.25))
    result = metric.compute()
    assert float(result["abs_rel"]) == pytest.approx(np.mean(abs_rel), rel=1e-9)
    assert float(result["d1"]) == pytest.approx(np.mean(d1), rel=1e-12)


def test_disparity_alignment_is_exact_for_an_affine_disparity_and_differs_from_depth_alignment():
    # 1/g = 2 * (1/p) + 0.5 for p = [1, 2, 4]: 1/g = [2.5, 1.5, 1.0]
    pred, target = _row([1.0, 2.0, 4.0]), _row([1 / 2.5, 1 / 1.5, 1.0])
    disparity = DepthMetrics(min_depth=1e-3, max_depth=10.0, alignment="disparity")
    disparity.update(pred, target)
    assert float(disparity.compute()["abs_rel"]) == pytest.approx(0.0, abs=1e-12)
    assert float(disparity.compute()["d1"]) == 1.0
    depth = DepthMetrics(min_depth=1e-3, max_depth=10.0, alignment="depth")
    depth.update(pred, target)
    assert float(depth.compute()["abs_rel"]) > 1e-3  # depth-space lines cannot fit 1/(2/p + 0.5)


def test_aligned_prediction_is_clipped_to_the_depth_range():
    # p = [1, 2, 3], g = [0.1, 0.2, 5]: cov 4.9, var 2 -> s = 2.45, t = 5.3/3 - 4.9; aligned[0] = t + 2.45 < 0
    metric = DepthMetrics(min_depth=1e-3, max_depth=10.0, alignment="depth")
    metric.update(_row([1.0, 2.0, 3.0]), _row([0.1, 0.2, 5.0]))
    t = 5.3 / 3 - 4.9
    aligned = np.array([1e-3, t + 4.9, t + 7.35])  # the first clipped up to min_depth
    target = np.array([0.1, 0.2, 5.0])
    expected = np.mean(np.abs(aligned - target) / target)
    assert float(metric.compute()["abs_rel"]) == pytest.approx(expected, rel=1e-12)


def test_constant_prediction_gets_the_mean_target():
    metric = DepthMetrics(min_depth=1e-3, max_depth=10.0, alignment="depth")
    metric.update(_row([5.0, 5.0, 5.0]), _row([1.0, 2.0, 3.0]))
    # s = 0, t = 2: |2 - g| / g = [1, 0, 1/3]
    assert float(metric.compute()["abs_rel"]) == pytest.approx((1 + 0 + 1 / 3) / 3, rel=1e-12)


def test_metric_protocol_is_unchanged_without_alignment():
    pred, target = _row([1.0, 2.0, 3.0]), _row([2.0, 4.0, 6.0])
    metric = DepthMetrics(min_depth=1e-3, max_depth=10.0)
    metric.update(pred, target)
    assert float(metric.compute()["abs_rel"]) == pytest.approx(0.5)
    aligned = DepthMetrics(min_depth=1e-3, max_depth=10.0, alignment="depth")
    aligned.update(pred, target)
    assert float(aligned.compute()["abs_rel"]) == pytest.approx(0.0, abs=1e-12)  # scale 2 removed


def test_kitti_crops_on_the_kb_cropped_size():
    garg = eval_crop_mask("kitti_garg", 352, 1216)
    rows, cols = garg.any(1).nonzero()[:, 0], garg.any(0).nonzero()[:, 0]
    assert (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) == (143, 349, 43, 1172)
    eigen = eval_crop_mask("kitti_eigen", 352, 1216)
    rows = eigen.any(1).nonzero()[:, 0]
    assert (int(rows[0]), int(rows[-1]) + 1) == (117, 321)  # int(0.3324324*352), int(0.91351351*352)
    assert torch.equal(eval_crop_mask("nyu_eigen", 480, 640)[45:471, 41:601].logical_not().sum(), torch.tensor(0))


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match="alignment"):
        DepthMetrics(alignment="log")
    with pytest.raises(ValueError, match="eval_crop"):
        DepthMetrics(eval_crop="garg")


def test_depth_protocol_option_reaches_the_model_config():
    from tiny_config import make_cfg

    cfg = make_cfg(["task=depth", "depth.protocol=affine_invariant", "depth.alignment=disparity"])
    assert cfg.model.protocol == "affine_invariant" and cfg.model.alignment == "disparity"
    assert make_cfg(["task=depth"]).model.protocol == "metric"  # VPD's protocol by default
    from vpd_lightning.utils.validate import config_problems

    bad = make_cfg(["task=depth", "depth.protocol=zero_shot"])
    assert any(p.startswith("depth.protocol must be") for p in config_problems(bad))


def test_new_depth_data_options_are_validated():
    from tiny_config import make_cfg

    from vpd_lightning.utils.validate import config_problems

    cfg = make_cfg(["experiment=kitti_vpd", "data.kb_crop=[352]", "model.eval_crop=garg"])
    problems = config_problems(cfg)
    assert any(p.startswith("data.kb_crop must be") for p in problems)
    assert any(p.startswith("model.eval_crop must be") for p in problems)
    cfg = make_cfg(["task=depth", "data=depth_folder", "data.depth_scale=0"])
    assert any(p.startswith("data.depth_scale must be > 0") for p in config_problems(cfg))
