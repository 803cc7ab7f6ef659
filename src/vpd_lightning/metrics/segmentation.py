"""Semantic-segmentation metrics following the mmsegmentation protocol VPD reports on ADE20K.

The protocol reproduced here is the one of ``intersect_and_union`` / ``total_intersect_and_union`` /
``total_area_to_metrics`` in mmsegmentation (``mmseg/core/evaluation/metrics.py``, the ``mean_iou``
/ ``eval_metrics`` functions used by VPD's ``segmentation`` evaluation):

* **Ignored pixels.** Pixels whose ground truth equals ``ignore_index`` (255 for ADE20K after
  ``reduce_zero_label``) are dropped from both the prediction and the target before anything is
  counted; the prediction on these pixels is irrelevant.
* **Data-set-level areas.** For every class ``c`` four pixel counts are summed over the *whole* data
  set (not averaged per image): ``area_intersect[c]`` (pixels with ``pred == target == c``),
  ``area_pred_label[c]`` (``pred == c``), ``area_label[c]`` (``target == c``) and
  ``area_union[c] = area_pred_label[c] + area_label[c] - area_intersect[c]``.
* **Metrics.** ``iou[c] = area_intersect[c] / area_union[c]`` and
  ``acc[c] = area_intersect[c] / area_label[c]``; a class with a zero denominator gets ``NaN``
  (``0 / 0``) and is left out of the means: ``miou = nanmean(iou)``, ``macc = nanmean(acc)``.
  A class that only appears in the prediction therefore has IoU ``0`` and *is* counted in ``miou``
  (but its accuracy is ``NaN``). The overall pixel accuracy is
  ``aacc = sum(area_intersect) / sum(area_label)``.

Values are fractions in ``[0, 1]`` (mmsegmentation prints them multiplied by 100). Counts are kept
as exact ``int64`` states; the metrics are computed in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from vpd_lightning.metrics._shapes import paired_bhw

__all__ = ["SegmentationMetrics"]

_AREA_NAMES: tuple[str, ...] = ("area_intersect", "area_union", "area_pred_label", "area_label")


class SegmentationMetrics(Metric):
    """mIoU, mAcc, aAcc and per-class IoU / accuracy of semantic segmentation (mmsegmentation protocol).

    Pixels whose target equals ``ignore_index`` are excluded; per-class intersection, union,
    predicted and labelled areas are accumulated over the whole data set and turned into metrics in
    :meth:`compute` (see the module docstring). Classes with an empty union (absent from both
    prediction and target) have IoU ``NaN`` and are left out of ``miou``; classes without labelled
    pixels have accuracy ``NaN`` and are left out of ``macc``.

    The state is four ``int64`` tensors of length ``num_classes`` (``area_intersect``,
    ``area_union``, ``area_pred_label``, ``area_label``), all reduced with ``"sum"``, so the result
    after a distributed sync is the one over all pixels seen by all processes.

    Note:
        :meth:`compute` raises if no labelled (non-ignored) pixel has been accumulated. Because
        ``forward`` (i.e. ``metric(pred, target)``) computes the metric on the current batch alone,
        it raises too when that batch is entirely ignored; prefer ``update`` + ``compute`` for
        evaluation loops.

    Args:
        num_classes: Number of classes ``K`` (>= 1); valid labels are ``0 .. K-1``.
        ignore_index: Target value of pixels to ignore (ADE20K: 255). It may lie inside
            ``[0, K)``, in which case that class is never evaluated.
        class_names: Optional names of the ``K`` classes, used by :meth:`per_class_table`.
        **kwargs: Forwarded to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = SegmentationMetrics(num_classes=2)
        >>> target = torch.tensor([[0, 0], [1, 255]])
        >>> metric.update(torch.tensor([[0, 1], [1, 0]]), target)
        >>> round(float(metric.compute()["miou"]), 4)
        0.5
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    METRIC_NAMES: tuple[str, ...] = ("miou", "aacc", "macc", "iou", "acc")

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"SegmentationMetrics option `num_classes` must be an integer >= 1, got {num_classes!r}")
        if isinstance(ignore_index, bool) or int(ignore_index) != ignore_index:
            raise ValueError(f"SegmentationMetrics option `ignore_index` must be an integer, got {ignore_index!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        if class_names is not None:
            if isinstance(class_names, str):
                raise ValueError("SegmentationMetrics option `class_names` must be a sequence of strings, not a string")
            class_names = [str(name) for name in class_names]
            if len(class_names) != self.num_classes:
                raise ValueError(
                    f"SegmentationMetrics option `class_names` must have num_classes ({self.num_classes}) entries, "
                    f"got {len(class_names)}"
                )
        self.class_names: list[str] | None = class_names

        for name in _AREA_NAMES:
            self.add_state(name, default=torch.zeros(self.num_classes, dtype=torch.long), dist_reduce_fx="sum")

    @staticmethod
    def _bad_values(values: Tensor, limit: int = 10) -> str:
        uniq = torch.unique(values).tolist()
        shown = ", ".join(str(v) for v in uniq[:limit])
        return f"[{shown}{', ...' if len(uniq) > limit else ''}]"

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Accumulate the per-class areas of a batch of label maps.

        Args:
            pred: Predicted class indices (integer tensor, e.g. ``logits.argmax(1)``), shape
                ``[B, 1, H, W]``, ``[B, H, W]`` or ``[H, W]``.
            target: Ground-truth class indices, same accepted shapes; after dropping the singleton
                channel dimension / adding the batch dimension it must have the same shape as
                ``pred``. Values must be in ``[0, num_classes)`` or equal ``ignore_index``.

        Raises:
            ValueError: If a shape is unsupported, ``pred`` and ``target`` do not match, a tensor
                is not an integer tensor, ``target`` holds a value that is neither a class index nor
                ``ignore_index``, or ``pred`` holds a value outside ``[0, num_classes)`` on a
                non-ignored pixel (predictions on ignored pixels are not looked at).
        """
        for name, x in (("pred", pred), ("target", target)):
            if x.is_floating_point() or x.is_complex():
                raise ValueError(
                    f"SegmentationMetrics.update expects integer label maps; got `{name}` of dtype {x.dtype} "
                    "(take the argmax over the class dimension of the logits first)"
                )
        p, g = paired_bhw(pred, target, "SegmentationMetrics")

        p = p.detach().reshape(-1).to(torch.long)
        g = g.detach().reshape(-1).to(device=p.device, dtype=torch.long)

        valid = g != self.ignore_index
        bad_target = valid & ((g < 0) | (g >= self.num_classes))
        if bool(bad_target.any()):
            raise ValueError(
                f"SegmentationMetrics.update: `target` holds values {self._bad_values(g[bad_target])} that are neither "
                f"class indices in [0, {self.num_classes}) nor ignore_index ({self.ignore_index})"
            )
        p, g = p[valid], g[valid]
        bad_pred = (p < 0) | (p >= self.num_classes)
        if bool(bad_pred.any()):
            raise ValueError(
                f"SegmentationMetrics.update: `pred` holds values {self._bad_values(p[bad_pred])} outside the class "
                f"range [0, {self.num_classes})"
            )

        k = self.num_classes
        area_intersect = torch.bincount(g[p == g], minlength=k)
        area_pred_label = torch.bincount(p, minlength=k)
        area_label = torch.bincount(g, minlength=k)
        area_union = area_pred_label + area_label - area_intersect
        batch = {
            "area_intersect": area_intersect,
            "area_union": area_union,
            "area_pred_label": area_pred_label,
            "area_label": area_label,
        }
        for name in _AREA_NAMES:
            state = getattr(self, name)
            setattr(self, name, state + batch[name].to(state))

    def compute(self) -> dict[str, Tensor]:
        """Metrics over all accumulated pixels.

        Returns:
            Dict with float64 tensors: ``miou``, ``aacc``, ``macc`` (0-dim scalars) and ``iou``,
            ``acc`` (per-class, shape ``[num_classes]``, ``NaN`` for classes with a zero union /
            no labelled pixel respectively).

        Raises:
            RuntimeError: If no labelled (non-ignored) pixel has been accumulated.
        """
        if int(self.area_label.sum()) == 0:
            raise RuntimeError(
                "SegmentationMetrics.compute: no labelled pixel was seen (every target pixel was ignore_index "
                f"{self.ignore_index}, or update was never called)"
            )
        intersect = self.area_intersect.to(torch.float64)
        union = self.area_union.to(torch.float64)
        label = self.area_label.to(torch.float64)
        # 0 / 0 -> NaN for classes absent from the union / the labels, exactly as in mmsegmentation.
        iou = intersect / union
        acc = intersect / label
        return {
            "miou": torch.nanmean(iou),
            "aacc": intersect.sum() / label.sum(),
            "macc": torch.nanmean(acc),
            "iou": iou,
            "acc": acc,
        }

    def per_class_table(self, digits: int = 2, percent: bool = True) -> str:
        """Text table of the per-class IoU and accuracy (``class | IoU | Acc``), one row per class.

        Class names come from ``class_names`` (or the class indices); ``NaN`` values are shown as
        ``nan``. Calls :meth:`compute` (so it syncs in distributed runs and raises the same
        :class:`RuntimeError` when nothing was accumulated).

        Args:
            digits: Number of decimals.
            percent: If ``True`` (default, like mmsegmentation's log), values are multiplied by 100.

        Returns:
            The table as a multi-line string (no trailing newline).
        """
        result = self.compute()
        scale = 100.0 if percent else 1.0
        names = self.class_names if self.class_names is not None else [str(i) for i in range(self.num_classes)]

        def fmt(value: float) -> str:
            return "nan" if math.isnan(value) else f"{value * scale:.{digits}f}"

        rows = [
            (name, fmt(iou), fmt(acc)) for name, iou, acc in zip(names, result["iou"].tolist(), result["acc"].tolist())
        ]
        header = ("class", "IoU", "Acc")
        widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(3)]

        def line(cells: Sequence[str]) -> str:
            return f"{cells[0]:<{widths[0]}} | {cells[1]:>{widths[1]}} | {cells[2]:>{widths[2]}}"

        separator = "-+-".join("-" * w for w in widths)
        return "\n".join([line(header), separator, *(line(row) for row in rows)])
