"""Tests for :class:`vpd_lightning.metrics.SegmentationMetrics` against hand-computed values."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from vpd_lightning.metrics import SegmentationMetrics

# A 3x3 example with 3 classes. Pixel pairs (target, pred), row by row:
#   (0,0) (0,0) (0,1) | (1,1) (1,2) (2,2) | (2,2) (2,2) (2,0)
# class 0: label 3, pred 3 ({0,0},{0,1},{2,2}), intersect 2 -> union 4, IoU 2/4, acc 2/3
# class 1: label 2, pred 2 ({0,2},{1,0}),       intersect 1 -> union 3, IoU 1/3, acc 1/2
# class 2: label 4, pred 4 ({1,1},{1,2},{2,0},{2,1}), intersect 3 -> union 5, IoU 3/5, acc 3/4
TARGET = [[0, 0, 0], [1, 1, 2], [2, 2, 2]]
PRED = [[0, 0, 1], [1, 2, 2], [2, 2, 0]]
IOU = [2 / 4, 1 / 3, 3 / 5]
ACC = [2 / 3, 1 / 2, 3 / 4]


def _map(rows):
    """[H, W] long tensor from a nested list."""
    return torch.tensor(rows, dtype=torch.long)


def _approx(value):
    return pytest.approx(value, rel=1e-12, abs=1e-15)


def _assert_vec(tensor, expected):
    assert tensor.shape == (len(expected),)
    for got, want in zip(tensor.tolist(), expected):
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == _approx(want)


def _mmseg_reference(preds, targets, num_classes, ignore_index):
    """Straight port of mmsegmentation's intersect_and_union (torch.histc) + total_area_to_metrics."""
    total = torch.zeros(4, num_classes, dtype=torch.float64)
    for pred, label in zip(preds, targets):
        mask = label != ignore_index
        pred, label = pred[mask], label[mask]
        intersect = pred[pred == label]
        a_i = torch.histc(intersect.float(), bins=num_classes, min=0, max=num_classes - 1)
        a_p = torch.histc(pred.float(), bins=num_classes, min=0, max=num_classes - 1)
        a_l = torch.histc(label.float(), bins=num_classes, min=0, max=num_classes - 1)
        total += torch.stack([a_i, a_p + a_l - a_i, a_p, a_l]).double()
    a_i, a_u, _, a_l = total
    iou, acc = a_i / a_u, a_i / a_l
    return {"aacc": a_i.sum() / a_l.sum(), "iou": iou, "acc": acc, "miou": iou.nanmean(), "macc": acc.nanmean()}


# ----------------------------------------------------------------------------------------------
# API basics
# ----------------------------------------------------------------------------------------------


def test_flags_and_states():
    assert SegmentationMetrics.is_differentiable is False
    assert SegmentationMetrics.higher_is_better is True
    assert SegmentationMetrics.full_state_update is False
    metric = SegmentationMetrics(num_classes=5)
    names = {"area_intersect", "area_union", "area_pred_label", "area_label"}
    assert set(metric._defaults) == names
    for name in names:
        reduction = metric._reductions[name]
        assert reduction is torch.sum or reduction.__name__ == "dim_zero_sum", name
        state = getattr(metric, name)
        assert state.shape == (5,) and state.dtype == torch.long and int(state.sum()) == 0


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": -3}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"num_classes": 3, "class_names": ["a", "b"]}, "class_names"),
        ({"num_classes": 2, "class_names": ["a", "b", "c"]}, "class_names"),
        ({"num_classes": 2, "class_names": "ab"}, "class_names"),
    ],
)
def test_invalid_options(kwargs, option):
    with pytest.raises(ValueError, match=option):
        SegmentationMetrics(**kwargs)


# ----------------------------------------------------------------------------------------------
# Hand-computed values
# ----------------------------------------------------------------------------------------------


def test_hand_computed_3x3():
    metric = SegmentationMetrics(num_classes=3)
    metric.update(_map(PRED), _map(TARGET))
    assert metric.area_intersect.tolist() == [2, 1, 3]
    assert metric.area_union.tolist() == [4, 3, 5]
    assert metric.area_pred_label.tolist() == [3, 2, 4]
    assert metric.area_label.tolist() == [3, 2, 4]

    result = metric.compute()
    assert set(result) == set(SegmentationMetrics.METRIC_NAMES)
    for name in ("miou", "aacc", "macc"):
        assert result[name].ndim == 0 and result[name].is_floating_point(), name
    _assert_vec(result["iou"], IOU)
    _assert_vec(result["acc"], ACC)
    assert result["miou"].item() == _approx((1 / 2 + 1 / 3 + 3 / 5) / 3)
    assert result["aacc"].item() == _approx(6 / 9)
    assert result["macc"].item() == _approx((2 / 3 + 1 / 2 + 3 / 4) / 3)


def test_class_absent_from_pred_and_target_is_nan_and_excluded():
    metric = SegmentationMetrics(num_classes=4)
    metric.update(_map(PRED), _map(TARGET))
    result = metric.compute()
    _assert_vec(result["iou"], [*IOU, math.nan])
    _assert_vec(result["acc"], [*ACC, math.nan])
    assert metric.area_union[3].item() == 0
    # miou is the mean of the three present classes only (same as with num_classes=3).
    assert result["miou"].item() == _approx(sum(IOU) / 3)
    assert result["macc"].item() == _approx(sum(ACC) / 3)
    assert result["aacc"].item() == _approx(6 / 9)


def test_class_only_in_prediction_has_iou_zero_and_is_counted():
    pred = _map(PRED)
    pred[2, 2] = 3  # was a wrong "0" on a class-2 pixel; class 3 never appears in the target
    metric = SegmentationMetrics(num_classes=4)
    metric.update(pred, _map(TARGET))
    result = metric.compute()
    # class 0 loses a false positive: intersect 2, union 3.
    _assert_vec(result["iou"], [2 / 3, 1 / 3, 3 / 5, 0.0])
    _assert_vec(result["acc"], [2 / 3, 1 / 2, 3 / 4, math.nan])
    assert result["miou"].item() == _approx((2 / 3 + 1 / 3 + 3 / 5 + 0.0) / 4)
    assert result["macc"].item() == _approx(sum(ACC) / 3)  # class 3 has no label pixel -> excluded
    assert result["aacc"].item() == _approx(6 / 9)


def test_ignore_pixels_are_excluded():
    target = _map(TARGET)
    target[0, 2] = 255  # the (0 -> 1) error
    target[2, 0] = 255  # a correct class-2 pixel
    metric = SegmentationMetrics(num_classes=3)
    metric.update(_map(PRED), target)
    result = metric.compute()
    # class 0: label 2, pred 3, I 2 -> union 3, IoU 2/3; class 1: label 2, pred 1, I 1 -> union 2, IoU 1/2;
    # class 2: label 3, pred 3, I 2 -> union 4, IoU 1/2
    _assert_vec(result["iou"], [2 / 3, 1 / 2, 1 / 2])
    _assert_vec(result["acc"], [1.0, 1 / 2, 2 / 3])
    assert result["aacc"].item() == _approx(5 / 7)

    # Whatever is predicted on ignored pixels (even an out-of-range value) changes nothing.
    for value in (0, 1, 2, 7, -1, 255):
        pred = _map(PRED)
        pred[0, 2] = value
        pred[2, 0] = value
        other = SegmentationMetrics(num_classes=3)
        other.update(pred, target)
        for name in ("area_intersect", "area_union", "area_pred_label", "area_label"):
            assert torch.equal(getattr(other, name), getattr(metric, name)), (value, name)


def test_custom_ignore_index():
    target = _map(TARGET)
    target[0, 2] = -1
    default = SegmentationMetrics(num_classes=3)
    with pytest.raises(ValueError, match="target"):
        default.update(_map(PRED), target)  # -1 is neither a class nor the default ignore_index
    custom = SegmentationMetrics(num_classes=3, ignore_index=-1)
    custom.update(_map(PRED), target)
    assert custom.area_label.tolist() == [2, 2, 4]


def test_dataset_level_accumulation_differs_from_mean_of_per_image_miou():
    # image A: all class 0, perfectly predicted -> per-image mIoU 1 (class 1 absent -> NaN, excluded)
    # image B: all class 1, one pixel predicted as 0 -> IoU_0 = 0/1, IoU_1 = 3/4 -> per-image mIoU 3/8
    target_a, pred_a = _map([[0, 0, 0, 0]]), _map([[0, 0, 0, 0]])
    target_b, pred_b = _map([[1, 1, 1, 1]]), _map([[0, 1, 1, 1]])

    per_image = []
    for pred, target in ((pred_a, target_a), (pred_b, target_b)):
        m = SegmentationMetrics(num_classes=2)
        m.update(pred, target)
        per_image.append(m.compute()["miou"].item())
    assert per_image == [_approx(1.0), _approx(3 / 8)]
    mean_per_image = sum(per_image) / 2
    assert mean_per_image == _approx(0.6875)

    # Data set: class 0 intersect 4, union 5 -> 0.8; class 1 intersect 3, union 4 -> 0.75.
    metric = SegmentationMetrics(num_classes=2)
    metric.update(pred_a, target_a)
    metric.update(pred_b, target_b)
    result = metric.compute()
    _assert_vec(result["iou"], [0.8, 0.75])
    assert result["miou"].item() == _approx(0.775)
    assert result["miou"].item() != pytest.approx(mean_per_image)

    # One batched update gives the same as two updates.
    batched = SegmentationMetrics(num_classes=2)
    batched.update(torch.stack([pred_a, pred_b]), torch.stack([target_a, target_b]))
    assert batched.compute()["miou"].item() == _approx(0.775)


def test_matches_mmseg_reference_on_random_data():
    gen = torch.Generator().manual_seed(0)
    k = 7
    target = torch.randint(0, k - 1, (4, 9, 11), generator=gen)  # class 6 never labelled
    target[torch.rand(target.shape, generator=gen) < 0.2] = 255
    pred = torch.where(torch.rand(target.shape, generator=gen) < 0.6, target, torch.randint(0, k, target.shape))
    pred[target == 255] = torch.randint(0, k, pred.shape)[target == 255]
    metric = SegmentationMetrics(num_classes=k)
    metric.update(pred[:1], target[:1])
    metric.update(pred[1:], target[1:])
    result = metric.compute()
    expected = _mmseg_reference(pred, target, k, 255)
    for name in ("miou", "aacc", "macc"):
        assert result[name].item() == _approx(expected[name].item()), name
    assert torch.allclose(result["iou"], expected["iou"], rtol=1e-12, atol=0, equal_nan=True)
    assert torch.allclose(result["acc"], expected["acc"], rtol=1e-12, atol=0, equal_nan=True)
    assert math.isnan(result["acc"][6].item())


# ----------------------------------------------------------------------------------------------
# Shapes and validation
# ----------------------------------------------------------------------------------------------


def test_shapes_agree():
    gen = torch.Generator().manual_seed(1)
    target = torch.randint(0, 4, (3, 5, 6), generator=gen)
    target[0, 0] = 255
    pred = torch.randint(0, 4, (3, 5, 6), generator=gen)

    def run(pairs):
        m = SegmentationMetrics(num_classes=4)
        for p, t in pairs:
            m.update(p, t)
        return torch.stack([m.area_intersect, m.area_union, m.area_pred_label, m.area_label])

    ref = run([(pred, target)])  # [B, H, W]
    assert torch.equal(run([(pred[:, None], target[:, None])]), ref)  # [B, 1, H, W]
    assert torch.equal(run([(pred[:, None], target)]), ref)  # mixed
    assert torch.equal(run([(pred, target[:, None])]), ref)
    assert torch.equal(run([(pred[i], target[i]) for i in range(3)]), ref)  # [H, W]
    assert torch.equal(run([(pred.to(torch.int32), target.to(torch.uint8))]), ref)  # other integer dtypes


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (torch.zeros(2, 3, dtype=torch.long), torch.tensor([[0, 1, 3], [0, 0, 0]]), r"target.*\[3\]"),
        (torch.zeros(2, 3, dtype=torch.long), torch.tensor([[0, -1, 2], [0, 5, 254]]), r"target.*\[-1, 5, 254\]"),
        (torch.tensor([[0, 1, 3], [0, 0, 0]]), torch.zeros(2, 3, dtype=torch.long), r"pred.*\[3\]"),
        (torch.tensor([[0, -2, 0], [0, 0, 0]]), torch.zeros(2, 3, dtype=torch.long), r"pred.*\[-2\]"),
        (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), "integer"),
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), "integer"),
        (torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 3, 2, dtype=torch.long), "same"),
        (torch.zeros(1, 2, 2, 3, dtype=torch.long), torch.zeros(1, 2, 2, 3, dtype=torch.long), "shape"),
        (torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), "shape"),
    ],
)
def test_invalid_inputs_raise(pred, target, match):
    metric = SegmentationMetrics(num_classes=3)
    with pytest.raises(ValueError, match=match):
        metric.update(pred, target)
    assert int(metric.area_label.sum()) == 0  # nothing accumulated


@pytest.mark.filterwarnings("ignore:.*called before the ``update`` method")
def test_no_labelled_pixel_raises():
    metric = SegmentationMetrics(num_classes=3)
    with pytest.raises(RuntimeError, match="no labelled pixel"):
        metric.compute()
    metric = SegmentationMetrics(num_classes=3)
    metric.update(_map(PRED), torch.full((3, 3), 255))
    with pytest.raises(RuntimeError, match="no labelled pixel"):
        metric.compute()


# ----------------------------------------------------------------------------------------------
# Distributed reduction (simulated via state merging), forward, reset
# ----------------------------------------------------------------------------------------------


def test_merged_states_equal_single_metric_over_all_data():
    gen = torch.Generator().manual_seed(2)
    k = 5
    target = torch.randint(0, k, (6, 8, 8), generator=gen)
    target[:, :2] = 255
    pred = torch.where(torch.rand(target.shape, generator=gen) < 0.5, target.clamp_max(k - 1), 0)

    reference = SegmentationMetrics(num_classes=k)
    reference.update(pred, target)
    expected = reference.compute()

    rank0, rank1 = SegmentationMetrics(num_classes=k), SegmentationMetrics(num_classes=k)
    rank0.update(pred[:2], target[:2])
    rank1.update(pred[2:], target[2:])
    # (computed on a copy: torchmetrics' merge_state does not invalidate a cached compute() result)
    mean_of_rank_mious = (copy.deepcopy(rank0).compute()["miou"].item() + rank1.compute()["miou"].item()) / 2

    rank0.merge_state(rank1)
    for name in ("area_intersect", "area_union", "area_pred_label", "area_label"):
        assert torch.equal(getattr(rank0, name), getattr(reference, name)), name
    merged = rank0.compute()
    for name in ("miou", "aacc", "macc"):
        assert merged[name].item() == _approx(expected[name].item()), name
    assert torch.allclose(merged["iou"], expected["iou"], equal_nan=True)
    assert merged["miou"].item() != pytest.approx(mean_of_rank_mious, rel=1e-9)


def test_forward_returns_batch_value_and_accumulates():
    metric = SegmentationMetrics(num_classes=3)
    batch = metric(_map(PRED), _map(TARGET))
    assert batch["miou"].item() == _approx(sum(IOU) / 3)
    metric(_map(TARGET), _map(TARGET))  # a perfect second image
    assert metric.area_label.tolist() == [6, 4, 8]
    assert metric.area_intersect.tolist() == [5, 3, 7]


@pytest.mark.filterwarnings("ignore:.*called before the ``update`` method")
def test_reset():
    metric = SegmentationMetrics(num_classes=3)
    metric.update(_map(PRED), _map(TARGET))
    metric.compute()
    metric.reset()
    for name in ("area_intersect", "area_union", "area_pred_label", "area_label"):
        assert getattr(metric, name).tolist() == [0, 0, 0], name
    with pytest.raises(RuntimeError):
        metric.compute()
    metric.update(_map(TARGET), _map(TARGET))
    assert metric.compute()["miou"].item() == 1.0


# ----------------------------------------------------------------------------------------------
# per-class table
# ----------------------------------------------------------------------------------------------


def test_per_class_table_with_names():
    metric = SegmentationMetrics(num_classes=4, class_names=["wall", "floor", "sky", "tree"])
    metric.update(_map(PRED), _map(TARGET))
    table = metric.per_class_table()
    lines = table.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["class", "IoU", "Acc"]
    assert len(lines) == 2 + 4
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.split("|")] for line in lines[2:])}
    assert rows == {
        "wall": ["50.00", "66.67"],
        "floor": ["33.33", "50.00"],
        "sky": ["60.00", "75.00"],
        "tree": ["nan", "nan"],
    }
    # Fractions with more digits on request.
    assert "0.3333" in metric.per_class_table(digits=4, percent=False)


def test_per_class_table_without_names_uses_indices():
    metric = SegmentationMetrics(num_classes=3)
    metric.update(_map(PRED), _map(TARGET))
    lines = metric.per_class_table().splitlines()
    assert [line.split("|")[0].strip() for line in lines[2:]] == ["0", "1", "2"]
    assert "60.00" in lines[4]
