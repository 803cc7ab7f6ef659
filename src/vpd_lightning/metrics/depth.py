"""Monocular depth-estimation metrics following the VPD / GLPDepth NYUv2 evaluation protocol.

The protocol reproduced here is the one of ``eval_depth`` / ``cropping_img`` in GLPDepth
(``utils/metrics.py``) as used by VPD's ``depth/test.py``:

* **Prediction clean-up.** ``inf`` values in the prediction are replaced by ``max_depth`` and
  ``NaN`` values by ``min_depth`` before anything else (the reference does
  ``pred[isinf(pred)] = max_depth; pred[isnan(pred)] = min_depth``).
* **Valid pixels.** A pixel is evaluated iff its ground truth lies strictly inside the valid range,
  ``min_depth < target < max_depth`` (so missing depth encoded as ``0`` is ignored), and, when
  ``eigen_crop=True``, it lies inside the Eigen crop: rows ``45:471`` and columns ``41:601`` of a
  480x640 image (scaled proportionally for other resolutions, see :func:`eigen_crop_mask`).
* **Per-image metrics averaged over images.** Every metric is computed on the valid pixels of each
  image separately and the final value is the mean of those per-image values over all evaluated
  images (e.g. the reported RMSE is the mean of per-image RMSEs, not the RMSE of all pixels pooled
  together). This is what the reference obtains by evaluating with batch size 1 and averaging.
  Images without any valid pixel are skipped: they contribute neither to the sums nor to the
  image count.
* **Metrics.** With ``g`` the ground truth and ``p`` the prediction on the valid pixels:
  ``d1/d2/d3`` = fraction of pixels with ``max(g/p, p/g) < 1.25, 1.25**2, 1.25**3``;
  ``abs_rel = mean(|p-g|/g)``; ``sq_rel = mean((p-g)**2/g)``; ``rmse = sqrt(mean((p-g)**2))``;
  ``rmse_log = sqrt(mean((ln p - ln g)**2))``; ``log10 = mean(|log10 p - log10 g|)``;
  ``silog = sqrt(mean(d**2) - 0.5 * mean(d)**2)`` with ``d = ln p - ln g`` (no x100 / x10 scaling;
  a value under the square root that is slightly negative because of rounding is clamped to 0).

All computations are carried out in float64.

**Affine-invariant (zero-shot) protocol** (``alignment="depth"`` or ``"disparity"``; Marigold's
``eval.py``, also used by Lotus and E2E-FT): after the clean-up and before the metrics, each prediction is
aligned to its ground truth by the least-squares scale ``s`` and shift ``t`` over the image's valid pixels (the
same mask as above):

* ``"depth"``: ``(s, t) = argmin sum (s * p + t - g)**2`` and ``p' = s * p + t``;
* ``"disparity"``: the same fit between ``1 / p`` and ``1 / g``, then ``p' = 1 / max(s / p + t, 1e-3)``
  (Marigold's floor on the aligned disparity); pixels where ``p <= 0`` are left out of the fit and count as
  ``min_depth``;

then ``p'`` is clipped to ``[min_depth, max_depth]`` (Marigold clips to the data set's range) and the nine
metrics are computed on it as above, per image and averaged over images. AbsRel and d1 are the two that
Marigold's tables report. The fit is the closed form of the 2x2 normal equations; an image whose valid
prediction is constant (no scale can be fitted) gets ``s = 0`` and ``t`` = the mean target.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from vpd_lightning.metrics._shapes import paired_bhw

__all__ = ["ALIGNMENTS", "DepthMetrics", "EVAL_CROPS", "align_scale_shift", "eigen_crop_mask", "eval_crop_mask"]

#: the affine-invariant protocol's alignment spaces (``None``: the metric protocol, no alignment)
ALIGNMENTS = ("depth", "disparity")
#: evaluation crops by name (:func:`eval_crop_mask`)
EVAL_CROPS = ("nyu_eigen", "kitti_garg", "kitti_eigen")
_CROP_NAMES = {"nyu_eigen": "Eigen crop", "kitti_garg": "KITTI Garg crop", "kitti_eigen": "KITTI Eigen crop"}
# Garg and Eigen crops of KITTI (BTS / GLPDepth ``eval_depth``), as fractions of the ground truth's size:
# rows top:bottom, columns left:right of ``int(fraction * side)``.
_KITTI_CROPS = {
    "kitti_garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "kitti_eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}

# Eigen crop of the NYUv2 test set, defined on the 480x640 raw resolution (end indices exclusive).
_EIGEN_REF_HEIGHT = 480
_EIGEN_REF_WIDTH = 640
_EIGEN_TOP, _EIGEN_BOTTOM = 45, 471
_EIGEN_LEFT, _EIGEN_RIGHT = 41, 601


def eigen_crop_mask(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """Boolean mask of the Eigen crop for an image of size ``height`` x ``width``.

    For 480x640 images the crop is exactly rows ``45:471`` and columns ``41:601`` (end exclusive),
    as in GLPDepth / VPD. For other sizes the crop borders are scaled proportionally:
    ``top = round(45 * H / 480)``, ``bottom = round(471 * H / 480)``,
    ``left = round(41 * W / 640)``, ``right = round(601 * W / 640)`` (Python's built-in ``round``).

    Args:
        height: Image height ``H`` (> 0).
        width: Image width ``W`` (> 0).
        device: Device of the returned tensor.

    Returns:
        A ``torch.bool`` tensor of shape ``[H, W]`` that is ``True`` inside the crop.

    Raises:
        ValueError: If ``height`` or ``width`` is not a positive integer.
    """
    if int(height) != height or int(width) != width or height <= 0 or width <= 0:
        raise ValueError(f"eigen_crop_mask expects positive integer height/width, got height={height}, width={width}")
    height, width = int(height), int(width)
    top = round(_EIGEN_TOP * height / _EIGEN_REF_HEIGHT)
    bottom = round(_EIGEN_BOTTOM * height / _EIGEN_REF_HEIGHT)
    left = round(_EIGEN_LEFT * width / _EIGEN_REF_WIDTH)
    right = round(_EIGEN_RIGHT * width / _EIGEN_REF_WIDTH)
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[top:bottom, left:right] = True
    return mask


def eval_crop_mask(name: str, height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """Boolean ``[H, W]`` mask of the named evaluation crop.

    ``"nyu_eigen"``: :func:`eigen_crop_mask`. ``"kitti_garg"`` / ``"kitti_eigen"``: BTS's and GLPDepth's KITTI
    crops, rows ``int(a * H):int(b * H)`` and columns ``int(c * W):int(d * W)`` with Garg's
    ``(a, b, c, d) = (0.40810811, 0.99189189, 0.03594771, 0.96405229)`` and Eigen's
    ``(0.3324324, 0.91351351, 0.0359477, 0.96405229)`` (on 352x1216: rows 143:349, columns 43:1172 for Garg).
    """
    if name == "nyu_eigen":
        return eigen_crop_mask(height, width, device)
    if name not in _KITTI_CROPS:
        raise ValueError(f"evaluation crop must be one of {list(EVAL_CROPS)} or null, got '{name}'")
    a, b, c, d = _KITTI_CROPS[name]
    mask = torch.zeros(int(height), int(width), dtype=torch.bool, device=device)
    mask[int(a * height) : int(b * height), int(c * width) : int(d * width)] = True
    return mask


def align_scale_shift(pred: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image least-squares ``(scale, shift)`` with ``scale * pred + shift ~ target`` on ``valid`` pixels.

    Args:
        pred, target: ``[B, H, W]`` (any float dtype; computed in float64).
        valid: ``[B, H, W]`` boolean mask; an image without valid pixels gets ``(0, 0)``.

    Returns:
        ``scale`` and ``shift``, float64 ``[B]``: the closed-form solution of the normal equations
        ``[[sum p^2, sum p], [sum p, n]] [s, t]^T = [sum p g, sum g]^T``; where the valid prediction is constant
        (the system is singular) ``s = 0`` and ``t = mean(g)``.
    """
    w = valid.to(torch.float64)
    p = torch.where(valid, pred.to(torch.float64), 0.0)
    g = torch.where(valid, target.to(torch.float64), 0.0)
    n = w.flatten(1).sum(1)
    sp, sg = p.flatten(1).sum(1), g.flatten(1).sum(1)
    spp, spg = (p * p).flatten(1).sum(1), (p * g).flatten(1).sum(1)
    safe_n = n.clamp_min(1.0)
    # centred sums: numerically kinder than n * spp - sp**2
    var = spp - sp * sp / safe_n
    cov = spg - sp * sg / safe_n
    degenerate = var <= 1e-12 * spp.clamp_min(1e-300)
    scale = torch.where(degenerate, torch.zeros_like(var), cov / torch.where(degenerate, torch.ones_like(var), var))
    shift = (sg - scale * sp) / safe_n
    return scale, shift


class DepthMetrics(Metric):
    """Standard monocular depth metrics (d1, d2, d3, AbsRel, SqRel, RMSE, RMSE-log, log10, SILog).

    Follows the VPD / GLPDepth NYUv2 protocol (see the module docstring): ``inf``/``NaN`` in the
    prediction are replaced by ``max_depth``/``min_depth``, only pixels with
    ``min_depth < target < max_depth`` (and inside the Eigen crop if ``eigen_crop``) are evaluated,
    metrics are computed per image and averaged over images. Images without any valid pixel are
    skipped (not counted).

    The state is one float64 sum of per-image values per metric plus an image count, all reduced
    with ``"sum"``, so the result after a distributed sync is the mean over all images seen by all
    processes.

    Note:
        :meth:`compute` raises if no valid image has been accumulated. Because ``forward`` (i.e.
        ``metric(pred, target)``) computes the metric on the current batch alone, it raises too when
        that batch holds no valid image; prefer ``update`` + ``compute`` for evaluation loops.
        Predictions are expected to be positive (as produced by a depth head); non-positive values
        on valid pixels give ``NaN``/``inf`` logarithmic metrics, exactly as in the reference.

    Args:
        min_depth: Lower bound (exclusive) of valid ground-truth depth, in metres; also the value
            that replaces ``NaN`` predictions. Must be > 0.
        max_depth: Upper bound (exclusive) of valid ground-truth depth, in metres; also the value
            that replaces ``inf`` predictions. Must be > ``min_depth``.
        eigen_crop: If ``True``, restrict the evaluation to the (NYUv2) Eigen crop.
        alignment: ``None`` (metric depth, the VPD protocol), or ``"depth"`` / ``"disparity"``: the
            affine-invariant protocol (module docstring) with the least-squares fit in that space.
        eval_crop: a named crop of :data:`EVAL_CROPS` (``"kitti_garg"``, ...); replaces ``eigen_crop``
            when given (``eigen_crop=True`` is ``eval_crop="nyu_eigen"``).
        **kwargs: Forwarded to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = DepthMetrics(max_depth=10.0)
        >>> target = torch.full((1, 1, 2, 2), 2.0)
        >>> metric.update(target.clone(), target)
        >>> float(metric.compute()["rmse"])
        0.0
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    METRIC_NAMES: tuple[str, ...] = ("d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")

    def __init__(
        self,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        eigen_crop: bool = False,
        alignment: str | None = None,
        eval_crop: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        min_depth = float(min_depth)
        max_depth = float(max_depth)
        if not math.isfinite(min_depth) or min_depth <= 0:
            raise ValueError(f"DepthMetrics option `min_depth` must be a finite number > 0, got {min_depth}")
        if not math.isfinite(max_depth) or max_depth <= min_depth:
            raise ValueError(
                f"DepthMetrics option `max_depth` must be a finite number > min_depth ({min_depth}), got {max_depth}"
            )
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.eigen_crop = bool(eigen_crop)
        if alignment is not None and alignment not in ALIGNMENTS:
            raise ValueError(
                f"DepthMetrics option `alignment` must be one of {list(ALIGNMENTS)} or None, got '{alignment}'"
            )
        self.alignment = alignment
        if eval_crop is not None and eval_crop not in EVAL_CROPS:
            raise ValueError(
                f"DepthMetrics option `eval_crop` must be one of {list(EVAL_CROPS)} or None, got '{eval_crop}'"
            )
        self.eval_crop = eval_crop if eval_crop is not None else ("nyu_eigen" if self.eigen_crop else None)

        for name in self.METRIC_NAMES:
            self.add_state(f"{name}_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Accumulate the per-image metrics of a batch.

        Args:
            pred: Predicted depth in metres, shape ``[B, 1, H, W]`` or ``[B, H, W]``.
            target: Ground-truth depth in metres, shape ``[B, 1, H, W]`` or ``[B, H, W]``; after
                dropping the channel dimension it must have the same shape as ``pred``.

        Raises:
            ValueError: If a shape is unsupported or ``pred`` and ``target`` do not match.
        """
        p, g = paired_bhw(pred, target, "DepthMetrics", single=False)

        p = p.detach().to(torch.float64)
        g = g.detach().to(device=p.device, dtype=torch.float64)
        # Reference clean-up of the prediction: inf -> max_depth, NaN -> min_depth.
        p = torch.where(torch.isinf(p), torch.full_like(p, self.max_depth), p)
        p = torch.where(torch.isnan(p), torch.full_like(p, self.min_depth), p)

        valid = (g > self.min_depth) & (g < self.max_depth)
        if self.eval_crop is not None:
            valid = valid & eval_crop_mask(self.eval_crop, g.shape[-2], g.shape[-1], device=g.device)
        if self.alignment is not None:
            p = self.align(p, g, valid)

        n = valid.flatten(1).sum(dim=1)  # [B] number of valid pixels per image
        keep = n > 0
        if not bool(keep.any()):
            return
        valid, p, g, n = valid[keep], p[keep], g[keep], n[keep].to(torch.float64)

        # Neutral values outside the valid mask so no NaN/inf leaks in; every term is masked anyway.
        ones = torch.ones_like(g)
        p = torch.where(valid, p, ones)
        g = torch.where(valid, g, ones)
        w = valid.to(torch.float64)

        def masked_mean(x: Tensor) -> Tensor:
            return (x * w).flatten(1).sum(dim=1) / n

        thresh = torch.maximum(g / p, p / g)
        diff = p - g
        diff_log = torch.log(p) - torch.log(g)
        mean_diff_log = masked_mean(diff_log)
        per_image = {
            "d1": masked_mean((thresh < 1.25).to(torch.float64)),
            "d2": masked_mean((thresh < 1.25**2).to(torch.float64)),
            "d3": masked_mean((thresh < 1.25**3).to(torch.float64)),
            "abs_rel": masked_mean(diff.abs() / g),
            "sq_rel": masked_mean(diff.pow(2) / g),
            "rmse": masked_mean(diff.pow(2)).sqrt(),
            "rmse_log": masked_mean(diff_log.pow(2)).sqrt(),
            "log10": masked_mean((torch.log10(p) - torch.log10(g)).abs()),
            "silog": (masked_mean(diff_log.pow(2)) - 0.5 * mean_diff_log.pow(2)).clamp_min(0.0).sqrt(),
        }
        for name in self.METRIC_NAMES:
            state = getattr(self, f"{name}_sum")
            setattr(self, f"{name}_sum", state + per_image[name].sum().to(state))
        self.num_images = self.num_images + keep.sum().to(self.num_images)

    def align(self, pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        """The affine-invariant protocol's aligned, clipped prediction ``[B, H, W]`` (module docstring)."""
        if self.alignment == "depth":
            scale, shift = align_scale_shift(pred, target, valid)
            aligned = scale[:, None, None] * pred + shift[:, None, None]
        else:  # disparity: fit 1/p to 1/g where both are positive, floor the aligned disparity at 1e-3
            valid = valid & (pred > 0)
            disp = 1.0 / torch.where(pred > 0, pred, torch.ones_like(pred))
            scale, shift = align_scale_shift(disp, 1.0 / torch.where(valid, target, torch.ones_like(target)), valid)
            aligned = 1.0 / (scale[:, None, None] * disp + shift[:, None, None]).clamp_min(1e-3)
            aligned = torch.where(pred > 0, aligned, torch.full_like(aligned, self.min_depth))  # p <= 0: nearest
        return aligned.clamp(self.min_depth, self.max_depth)

    def compute(self) -> dict[str, Tensor]:
        """Mean of the per-image metrics over all accumulated (valid) images.

        Returns:
            Dict mapping each name of :attr:`METRIC_NAMES` to a float64 scalar tensor.

        Raises:
            RuntimeError: If no image with at least one valid pixel has been accumulated.
        """
        if int(self.num_images) == 0:
            raise RuntimeError(
                "DepthMetrics.compute: no valid image was seen (no image had a pixel with ground truth in the valid "
                f"depth range {self.min_depth} < target < {self.max_depth}"
                + (f", inside the {_CROP_NAMES[self.eval_crop]}" if self.eval_crop else "")
                + ")"
            )
        count = self.num_images.to(torch.float64)
        return {name: getattr(self, f"{name}_sum") / count for name in self.METRIC_NAMES}
