"""Referring-image-segmentation metrics following the LAVT protocol VPD reports on RefCOCO(+/g).

The protocol reproduced here is the one of ``evaluate`` / ``computeIoU`` in LAVT (``train.py``), which
VPD's ``refer`` evaluation reuses:

* **One sample = one (object, sentence) pair.** Prediction and ground truth are binary masks; with
  ``I = |pred AND gt|`` and ``U = |pred OR gt|`` (pixel counts), the sample IoU is ``I / U``, and
  ``0`` when ``U == 0`` (both masks empty). Such a sample still counts in ``miou`` and in the
  precision denominators, but adds nothing to ``oiou``.
* **Metrics.** ``oiou = sum(I) / sum(U)`` over all samples (overall / cumulative IoU, dominated by
  large objects); ``miou`` = mean of the per-sample IoUs; ``precision@t`` = fraction of samples
  whose IoU is ``>= t`` (LAVT's ``seg_correct += (this_iou >= eval_seg_iou)``), for
  ``t in (0.5, 0.6, 0.7, 0.8, 0.9)``.

Values are fractions in ``[0, 1]`` (LAVT prints them multiplied by 100). Pixel and sample counts are
kept as exact ``int64`` states; the IoUs are computed in float64.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from vpd_lightning.metrics._shapes import paired_bhw

__all__ = ["ReferringMetrics"]

_COUNT_STATES: tuple[str, ...] = ("total_intersection", "total_union", "count")


class ReferringMetrics(Metric):
    """oIoU, mIoU and precision@{0.5..0.9} of referring segmentation masks (LAVT / VPD protocol).

    Every sample of a batch is one (object, sentence) pair with a binary predicted and ground-truth
    mask (see the module docstring). Per-sample intersections and unions are summed for ``oiou``,
    per-sample IoUs (``0`` when the union is empty) are summed for ``miou``, and the samples whose
    IoU is ``>=`` each threshold of :attr:`THRESHOLDS` are counted for the precisions.

    The state is ``total_intersection``, ``total_union``, ``count`` (``int64`` scalars), ``iou_sum``
    (``float64`` scalar) and ``hits`` (``int64``, one count per threshold), all reduced with
    ``"sum"``, so the result after a distributed sync is the one over all samples seen by all
    processes.

    Note:
        :meth:`compute` raises if no sample has been accumulated. ``oiou`` is ``0`` when every
        accumulated sample has an empty union (``0 / 0`` is reported as ``0``, like a sample IoU).

    Args:
        **kwargs: Forwarded to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = ReferringMetrics()
        >>> target = torch.tensor([[1, 1], [0, 0]], dtype=torch.bool)
        >>> metric.update(torch.tensor([[1, 0], [0, 0]], dtype=torch.bool), target)
        >>> float(metric.compute()["oiou"]), float(metric.compute()["precision@0.5"])
        (0.5, 1.0)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
    METRIC_NAMES: tuple[str, ...] = ("oiou", "miou", *(f"precision@{t}" for t in THRESHOLDS))

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        for name in _COUNT_STATES:
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("iou_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("hits", default=torch.zeros(len(self.THRESHOLDS), dtype=torch.long), dist_reduce_fx="sum")

    @staticmethod
    def _to_bool(x: Tensor, name: str) -> Tensor:
        if x.dtype == torch.bool:
            return x
        if x.is_floating_point() or x.is_complex():
            raise ValueError(
                f"ReferringMetrics.update expects boolean (or 0/1 integer) masks; got `{name}` of dtype {x.dtype} "
                "(threshold the probabilities / take the argmax of the logits first)"
            )
        bad = (x != 0) & (x != 1)
        if bool(bad.any()):
            uniq = torch.unique(x[bad]).tolist()
            shown = ", ".join(str(v) for v in uniq[:10])
            raise ValueError(
                f"ReferringMetrics.update expects boolean (or 0/1 integer) masks; `{name}` holds values "
                f"[{shown}{', ...' if len(uniq) > 10 else ''}] other than 0 and 1"
            )
        return x != 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Accumulate a batch of (object, sentence) samples.

        Args:
            pred: Predicted masks, boolean or integer with values in ``{0, 1}``, shape
                ``[B, 1, H, W]``, ``[B, H, W]`` or ``[H, W]`` (a single sample).
            target: Ground-truth masks, same accepted dtypes and shapes; after dropping the singleton
                channel dimension / adding the batch dimension it must have the same shape as
                ``pred``.

        Raises:
            ValueError: If a shape is unsupported, ``pred`` and ``target`` do not match, a tensor is
                floating point, or an integer tensor holds a value other than 0 and 1.
        """
        p, g = paired_bhw(pred, target, "ReferringMetrics")
        p = self._to_bool(p.detach(), "pred")
        g = self._to_bool(g.detach(), "target").to(p.device)
        if p.shape[0] == 0:
            return

        intersection = (p & g).flatten(1).sum(dim=1)  # [B] int64
        union = (p | g).flatten(1).sum(dim=1)
        # Per-sample IoU in float64 (same rounding as LAVT's Python ``I * 1.0 / U``); 0 when U == 0.
        # (clamp_min(1) only avoids 0 / 0: I == 0 whenever U == 0, so those samples get IoU 0.)
        iou = intersection.to(torch.float64) / union.clamp_min(1).to(torch.float64)
        thresholds = torch.tensor(self.THRESHOLDS, dtype=torch.float64, device=iou.device)
        hits = (iou[:, None] >= thresholds[None, :]).sum(dim=0)

        self.total_intersection = self.total_intersection + intersection.sum().to(self.total_intersection)
        self.total_union = self.total_union + union.sum().to(self.total_union)
        self.iou_sum = self.iou_sum + iou.sum().to(self.iou_sum)
        self.count = self.count + torch.tensor(iou.shape[0]).to(self.count)
        self.hits = self.hits + hits.to(self.hits)

    def compute(self) -> dict[str, Tensor]:
        """Metrics over all accumulated samples.

        Returns:
            Dict of float64 0-dim tensors: ``oiou``, ``miou`` and ``precision@0.5`` ...
            ``precision@0.9`` (one per :attr:`THRESHOLDS` entry), all fractions in ``[0, 1]``.

        Raises:
            RuntimeError: If no sample has been accumulated.
        """
        if int(self.count) == 0:
            raise RuntimeError("ReferringMetrics.compute: no sample was seen (update was never called with a mask)")
        count = self.count.to(torch.float64)
        union = self.total_union.to(torch.float64)
        oiou = self.total_intersection.to(torch.float64) / union if int(self.total_union) > 0 else union * 0.0
        result = {"oiou": oiou, "miou": self.iou_sum / count}
        precision = self.hits.to(torch.float64) / count
        for i, thr in enumerate(self.THRESHOLDS):
            result[f"precision@{thr}"] = precision[i]
        return result
