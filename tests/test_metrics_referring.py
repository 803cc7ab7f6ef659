"""Tests for :class:`vpd_lightning.metrics.ReferringMetrics` against hand-computed values."""

from __future__ import annotations

import copy

import pytest
import torch
from torchmetrics import Metric

from vpd_lightning.metrics import ReferringMetrics

PRECISION_KEYS = [f"precision@{t}" for t in (0.5, 0.6, 0.7, 0.8, 0.9)]

# A batch of three 4x4 (object, sentence) samples:
#   A: target = top-left 2x2 (4 px), pred = top row (4 px)         -> I = 2,  U = 6,  IoU = 1/3
#   B: target = rows 0-1 (8 px),    pred = rows 0-1, cols 0-2 (6) -> I = 6,  U = 8,  IoU = 3/4
#   C: target = everything (16),    pred = everything (16)        -> I = 16, U = 16, IoU = 1
# oIoU = 24 / 30 = 0.8; mIoU = (1/3 + 3/4 + 1) / 3 = 25/36;
# precision@0.5..0.7 = 2/3 (B, C); precision@0.8, 0.9 = 1/3 (C only).


def _batch():
    pred = torch.zeros(3, 4, 4, dtype=torch.bool)
    target = torch.zeros(3, 4, 4, dtype=torch.bool)
    target[0, :2, :2] = True
    pred[0, 0, :] = True
    target[1, :2, :] = True
    pred[1, :2, :3] = True
    target[2] = True
    pred[2] = True
    return pred, target


EXPECTED = {
    "oiou": 0.8,
    "miou": 25 / 36,
    "precision@0.5": 2 / 3,
    "precision@0.6": 2 / 3,
    "precision@0.7": 2 / 3,
    "precision@0.8": 1 / 3,
    "precision@0.9": 1 / 3,
}


def _approx(value):
    return pytest.approx(value, rel=1e-12, abs=1e-15)


def _assert_result(result, expected):
    assert set(result) == {"oiou", "miou", *PRECISION_KEYS}
    for name, want in expected.items():
        assert result[name].ndim == 0, name
        assert result[name].item() == _approx(want), name


def _lavt_reference(preds, targets):
    """Straight port of LAVT's evaluate loop (computeIoU + cum_I / cum_U / seg_correct)."""
    cum_i, cum_u, ious = 0, 0, []
    correct = [0] * 5
    for pred, target in zip(preds, targets):
        i = int(torch.sum(torch.logical_and(pred, target)))
        u = int(torch.sum(torch.logical_or(pred, target)))
        this_iou = 0.0 if u == 0 else i * 1.0 / u
        ious.append(this_iou)
        cum_i += i
        cum_u += u
        for k, thr in enumerate((0.5, 0.6, 0.7, 0.8, 0.9)):
            correct[k] += this_iou >= thr
    n = len(ious)
    out = {"oiou": cum_i / cum_u, "miou": sum(ious) / n}
    out.update({key: c / n for key, c in zip(PRECISION_KEYS, correct)})
    return out


# ----------------------------------------------------------------------------------------------
# API basics
# ----------------------------------------------------------------------------------------------


def test_api_attributes_and_states():
    metric = ReferringMetrics()
    assert isinstance(metric, Metric)
    assert ReferringMetrics.THRESHOLDS == (0.5, 0.6, 0.7, 0.8, 0.9)
    assert metric.is_differentiable is False
    assert metric.higher_is_better is True
    assert metric.full_state_update is False
    for name in ("total_intersection", "total_union", "count"):
        assert getattr(metric, name).dtype == torch.long, name
    assert metric.iou_sum.dtype == torch.float64
    assert metric.hits.dtype == torch.long and metric.hits.shape == (5,)
    for name in ("total_intersection", "total_union", "count", "iou_sum", "hits"):
        assert metric._reductions[name].__name__ == "dim_zero_sum", name


# ----------------------------------------------------------------------------------------------
# Hand-computed values
# ----------------------------------------------------------------------------------------------


def test_hand_computed_batch():
    metric = ReferringMetrics()
    pred, target = _batch()
    metric.update(pred, target)
    assert metric.total_intersection.item() == 24
    assert metric.total_union.item() == 30
    assert metric.count.item() == 3
    assert metric.hits.tolist() == [2, 2, 2, 1, 1]
    result = metric.compute()
    _assert_result(result, EXPECTED)
    for value in result.values():
        assert value.dtype == torch.float64
    _assert_result(result, _lavt_reference(pred, target))


def test_empty_pred_and_target_counts_as_zero_iou():
    pred, target = _batch()
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    metric = ReferringMetrics()
    metric.update(empty, empty)
    assert metric.count.item() == 1
    assert metric.total_union.item() == 0
    result = metric.compute()
    assert result["miou"].item() == 0.0
    assert result["oiou"].item() == 0.0
    assert all(result[key].item() == 0.0 for key in PRECISION_KEYS)

    # Together with the batch: counted in miou / precisions, adds nothing to oiou.
    metric.update(pred, target)
    _assert_result(
        metric.compute(),
        {
            "oiou": 24 / 30,
            "miou": (1 / 3 + 3 / 4 + 1) / 4,
            "precision@0.5": 2 / 4,
            "precision@0.7": 2 / 4,
            "precision@0.8": 1 / 4,
            "precision@0.9": 1 / 4,
        },
    )


def test_oiou_and_miou_differ():
    # Big object predicted well: target 10x10 (100 px), pred misses one row -> I = 90, U = 100, IoU 0.9.
    # Small object predicted badly: target 1 px, pred the neighbouring pixel -> I = 0, U = 2, IoU 0.
    pred = torch.zeros(2, 10, 10, dtype=torch.bool)
    target = torch.zeros(2, 10, 10, dtype=torch.bool)
    target[0] = True
    pred[0, 1:] = True
    target[1, 0, 0] = True
    pred[1, 0, 1] = True
    metric = ReferringMetrics()
    metric.update(pred, target)
    result = metric.compute()
    _assert_result(
        result,
        {"oiou": 90 / 102, "miou": 0.45, "precision@0.5": 0.5, "precision@0.9": 0.5},
    )
    assert result["oiou"].item() - result["miou"].item() > 0.4  # the big object dominates oIoU
    _assert_result(result, _lavt_reference(pred, target))


@pytest.mark.parametrize("k", [4, 5, 6, 7, 8, 9, 10])
def test_threshold_equality_counts(k):
    # target = 10 pixels, pred = the first k of them -> IoU = k / 10 exactly, compared with `>=`.
    target = torch.zeros(1, 1, 10, dtype=torch.bool)
    target[..., :] = True
    pred = torch.zeros_like(target)
    pred[..., :k] = True
    metric = ReferringMetrics()
    metric.update(pred, target)
    result = metric.compute()
    assert result["miou"].item() == _approx(k / 10)
    for key, thr in zip(PRECISION_KEYS, (5, 6, 7, 8, 9)):
        assert result[key].item() == (1.0 if k >= thr else 0.0), key


def test_iou_exactly_half_counts_for_precision_at_half():
    target = torch.tensor([[1, 1]], dtype=torch.bool)
    pred = torch.tensor([[1, 0]], dtype=torch.bool)  # I = 1, U = 2
    metric = ReferringMetrics()
    metric.update(pred, target)
    result = metric.compute()
    assert result["precision@0.5"].item() == 1.0
    assert result["precision@0.6"].item() == 0.0


def test_matches_lavt_reference_on_random_masks():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(16, 7, 9, generator=gen) < torch.rand(16, 1, 1, generator=gen)
    flip = torch.rand(target.shape, generator=gen) < torch.rand(16, 1, 1, generator=gen) * 0.6
    pred = target ^ flip
    pred[3] = False
    target[3] = False  # one empty / empty sample
    metric = ReferringMetrics()
    metric.update(pred[:5], target[:5])
    metric.update(pred[5:], target[5:])
    _assert_result(metric.compute(), _lavt_reference(pred, target))


# ----------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------


def test_shape_and_dtype_variants_agree():
    pred, target = _batch()
    variants = [
        (pred, target),
        (pred[:, None], target[:, None]),
        (pred[:, None], target),
        (pred, target[:, None]),
        (pred.long(), target.to(torch.uint8)),
        (pred.to(torch.int32)[:, None], target.long()[:, None]),
    ]
    for p, t in variants:
        metric = ReferringMetrics()
        metric.update(p, t)
        _assert_result(metric.compute(), EXPECTED)
    # One [H, W] sample at a time.
    metric = ReferringMetrics()
    for p, t in zip(pred, target):
        metric.update(p, t)
    assert metric.count.item() == 3
    _assert_result(metric.compute(), EXPECTED)


@pytest.mark.parametrize(
    ("pred_shape", "target_shape"),
    [
        ((3, 4, 4), (2, 4, 4)),
        ((3, 4, 4), (3, 4, 5)),
        ((3, 2, 4, 4), (3, 2, 4, 4)),
        ((4,), (4,)),
        ((1, 1, 1, 4, 4), (1, 1, 1, 4, 4)),
        ((4, 4), (2, 4, 4)),
    ],
)
def test_bad_shapes_raise(pred_shape, target_shape):
    metric = ReferringMetrics()
    with pytest.raises(ValueError) as excinfo:
        metric.update(torch.zeros(pred_shape, dtype=torch.bool), torch.zeros(target_shape, dtype=torch.bool))
    message = str(excinfo.value)
    assert str(pred_shape) in message and str(target_shape) in message


def test_bad_values_raise():
    metric = ReferringMetrics()
    good = torch.zeros(2, 3, 3, dtype=torch.long)
    bad = good.clone()
    bad[0, 0, 0] = 2
    bad[1, 1, 1] = -1
    with pytest.raises(ValueError, match=r"`pred` holds values \[-1, 2\]"):
        metric.update(bad, good)
    with pytest.raises(ValueError, match=r"`target` holds values \[-1, 2\]"):
        metric.update(good, bad)
    with pytest.raises(ValueError, match="dtype torch.float32"):
        metric.update(good.float(), good)
    assert metric.count.item() == 0


# ----------------------------------------------------------------------------------------------
# Distributed reduction (simulated via state merging), forward, reset
# ----------------------------------------------------------------------------------------------


def test_merged_states_equal_single_metric_over_all_data():
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(10, 6, 6, generator=gen) < 0.4
    pred = target ^ (torch.rand(target.shape, generator=gen) < 0.25)

    reference = ReferringMetrics()
    reference.update(pred, target)
    expected = reference.compute()

    rank0, rank1 = ReferringMetrics(), ReferringMetrics()
    rank0.update(pred[:3], target[:3])
    rank1.update(pred[3:], target[3:])
    # (computed on a copy: torchmetrics' merge_state does not invalidate a cached compute() result)
    mean_of_rank_oious = (copy.deepcopy(rank0).compute()["oiou"].item() + rank1.compute()["oiou"].item()) / 2

    rank0.merge_state(rank1)
    for name in ("total_intersection", "total_union", "count", "hits"):
        assert torch.equal(getattr(rank0, name), getattr(reference, name)), name
    assert rank0.iou_sum.item() == _approx(reference.iou_sum.item())
    merged = rank0.compute()
    _assert_result(merged, {name: value.item() for name, value in expected.items()})
    assert merged["oiou"].item() != pytest.approx(mean_of_rank_oious, rel=1e-9)


def test_forward_returns_batch_value_and_accumulates():
    pred, target = _batch()
    metric = ReferringMetrics()
    batch = metric(pred, target)
    _assert_result(batch, EXPECTED)
    metric(target, target)  # three perfect samples
    assert metric.count.item() == 6
    assert metric.total_intersection.item() == 24 + 28
    assert metric.total_union.item() == 30 + 28
    assert metric.hits.tolist() == [5, 5, 5, 4, 4]


@pytest.mark.filterwarnings("ignore:.*called before the ``update`` method")
def test_reset():
    pred, target = _batch()
    metric = ReferringMetrics()
    metric.update(pred, target)
    metric.compute()
    metric.reset()
    for name in ("total_intersection", "total_union", "count"):
        assert getattr(metric, name).item() == 0, name
    assert metric.iou_sum.item() == 0.0
    assert metric.hits.tolist() == [0] * 5
    with pytest.raises(RuntimeError):
        metric.compute()
    metric.update(target, target)
    assert metric.compute()["miou"].item() == 1.0


@pytest.mark.filterwarnings("ignore:.*called before the ``update`` method")
def test_compute_without_samples_raises():
    metric = ReferringMetrics()
    with pytest.raises(RuntimeError, match="no sample"):
        metric.compute()
    metric.update(torch.zeros(0, 4, 4, dtype=torch.bool), torch.zeros(0, 4, 4, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="no sample"):
        metric.compute()
