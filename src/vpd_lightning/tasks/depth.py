"""Monocular depth estimation with VPD (NYUv2): scene-class prompt -> diffusion backbone -> depth head."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vpd_lightning.backbone import DiffusionBackbone, TextAdapter
from vpd_lightning.losses import SiLogLoss
from vpd_lightning.metrics import DepthMetrics
from vpd_lightning.metrics.depth import ALIGNMENTS
from vpd_lightning.tasks.base import VPDTask

__all__ = ["PROTOCOLS", "DepthEstimationTask", "shift_window_starts"]

#: evaluation protocols of ``depth.protocol``
PROTOCOLS = ("metric", "affine_invariant")


def shift_window_starts(height: int, width: int, shift_size: int = 2) -> list[int]:
    """Left edges of the square test windows (side ``height``) of a ``height x width`` image, ``width > height``.

    VPD's ``--shift_window_test``: ``shift_size`` windows ``(width - height) // (shift_size - 1)`` apart. When
    they cannot cover the width (an image more than ``shift_size`` heights wide; VPD asserts NYUv2's 480x640),
    more windows are used, as few as cover every column; and the last window always ends at the right edge
    (VPD's floor division leaves the last columns uncovered when ``shift_size - 1`` does not divide
    ``width - height``). NYUv2's 480x640 with ``shift_size=2`` gives VPD's ``[0, 160]``.
    """
    n = max(shift_size, math.ceil((width - height) / height) + 1)
    return [i * (width - height) // (n - 1) for i in range(n)]


class DepthEstimationTask(VPDTask):
    """VPD depth (vpd-reference §4).

    The context is one token per image: the embedding of the image's scene class, refined by the text
    adapter (``[B, 1, D]``). The input in ``[0, 1]`` is mapped to ``[-1, 1]`` and zero-padded at the bottom/right
    to a multiple of ``input_padding`` (VPD pads 480 -> 512); the head crops the padding off again.

    Evaluation follows VPD's ``test.py --flip_test --shift_window_test --shift_size 2``: the full image is cut
    into ``shift_size`` square windows (side = image height) spread along the width, each predicted with its
    horizontal flip, flip pairs averaged and windows averaged where they overlap. Images wider than the windows
    cover get more windows (:func:`shift_window_starts`), so every column is predicted.

    Args:
        backbone: the diffusion backbone (VPD depth uses it without attention maps).
        head: partial head, called with ``in_channels=backbone.out_channels(1)``.
        class_embeddings: ``[num_classes, D]`` scene-class embeddings (kept as a buffer, saved with the model).
        optimizer, scheduler, unet_lr_mult: see :class:`VPDTask` (VPD: AdamW 5e-4, wd 0.1, UNet x0.01).
        silog_lambda: variance weight of the SiLog loss (VPD: 0.5).
        silog_sync: SiLog over the global batch of all processes (see :class:`SiLogLoss`; VPD: per process).
        min_depth, max_depth: evaluation range in metres (VPD: 1e-3, 10).
        input_padding: pad inputs to a multiple of this (VPD: 64); ``None`` runs the native size (diffusers
            handles any multiple of 8), a deviation offered for speed.
        flip_test, shift_window_test, shift_size: the evaluation protocol (VPD: True, True, 2).
        eigen_crop: evaluate inside the Eigen crop (VPD: True).
        eval_crop: a named evaluation crop (``"nyu_eigen"``, ``"kitti_garg"``, ``"kitti_eigen"``) that replaces
            ``eigen_crop``; ``None`` keeps ``eigen_crop``.
        protocol: ``"metric"`` (VPD) or ``"affine_invariant"``: the test metrics align each prediction to its
            ground truth by least-squares scale and shift first (Marigold's zero-shot protocol, see
            :mod:`vpd_lightning.metrics.depth`). Validation, which selects the best epoch, stays metric.
        alignment: the space of that fit, ``"depth"`` or ``"disparity"``.
    """

    monitor = "val/rmse"
    mode = "min"
    prog_bar_metrics = ("rmse", "d1")

    def __init__(
        self,
        backbone: DiffusionBackbone,
        head: Callable[..., nn.Module],
        class_embeddings: torch.Tensor,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        unet_lr_mult: float = 0.01,
        silog_lambda: float = 0.5,
        silog_sync: bool = False,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        input_padding: int | None = 64,
        flip_test: bool = True,
        shift_window_test: bool = True,
        shift_size: int = 2,
        eigen_crop: bool = True,
        eval_crop: str | None = None,
        protocol: str = "metric",
        alignment: str = "depth",
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, unet_lr_mult)
        self.save_hyperparameters(ignore=["backbone", "head", "class_embeddings", "optimizer", "scheduler"])
        class_embeddings = torch.as_tensor(class_embeddings, dtype=torch.float32)
        if class_embeddings.ndim != 2 or class_embeddings.shape[1] != backbone.context_dim:
            raise ValueError(
                f"class_embeddings must be [num_classes, {backbone.context_dim}] (the {backbone.family} UNet's "
                "context width), "
                f"got {list(class_embeddings.shape)}"
            )
        if input_padding is not None and input_padding % 8:
            raise ValueError(f"model.input_padding must be a multiple of 8 or null, got {input_padding}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"depth.protocol must be one of {list(PROTOCOLS)}, got '{protocol}'")
        if alignment not in ALIGNMENTS:
            raise ValueError(f"depth.alignment must be one of {list(ALIGNMENTS)}, got '{alignment}'")
        if shift_size < 1:
            raise ValueError(f"model.shift_size must be >= 1, got {shift_size}")
        self.register_buffer("class_embeddings", class_embeddings)
        self.text_adapter = TextAdapter(backbone.context_dim)
        self.head = head(in_channels=backbone.out_channels(1), max_depth=max_depth)
        self.criterion = SiLogLoss(silog_lambda, sync=silog_sync)
        self.input_padding = input_padding
        self.val_metrics = DepthMetrics(min_depth, max_depth, eigen_crop=eigen_crop, eval_crop=eval_crop)
        self.test_metrics = DepthMetrics(
            min_depth,
            max_depth,
            eigen_crop=eigen_crop,
            eval_crop=eval_crop,
            alignment=alignment if protocol == "affine_invariant" else None,
        )
        self.examples: list[dict[str, torch.Tensor]] = []  # a few validation predictions, for pictures

    # ------------------------------------------------------------------------------------------ model
    def context(self, class_ids: torch.Tensor) -> torch.Tensor:
        """``[B, 1, D]`` context: adapted embeddings of each image's scene class."""
        return self.text_adapter(self.class_embeddings[class_ids]).unsqueeze(1)

    def forward(self, image: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """Depth in metres ``[B, 1, H, W]`` for ``image`` in ``[0, 1]`` of shape ``[B, 3, H, W]``."""
        h, w = image.shape[-2:]
        x = image * 2.0 - 1.0
        if self.input_padding:
            m = self.input_padding
            x = F.pad(x, (0, math.ceil(w / m) * m - w, 0, math.ceil(h / m) * m - h), value=0.0)
        elif h % 8 or w % 8:
            raise ValueError(f"with model.input_padding=null the image sides must be multiples of 8, got {h}x{w}")
        features = self.backbone(x, self.context(class_ids))
        return self.head(features, (h, w))

    @torch.no_grad()
    def predict_depth(
        self, image: torch.Tensor, class_ids: torch.Tensor, window_batch: int | None = None
    ) -> torch.Tensor:
        """VPD's test-time protocol on full images (sliding square windows + flips), ``[B, 1, H, W]``.

        ``window_batch``: run the windows (flips included) at most this many per forward instead of all at once
        (VPD), so that peak memory stops growing with the number of windows; the windows are independent, so
        only the batch size of each forward changes.
        """
        b, _, h, w = image.shape
        hp = self.hparams
        if hp.shift_window_test and w > h and hp.shift_size > 1:
            starts, win = shift_window_starts(h, w, hp.shift_size), h
        else:
            starts, win = [0], w
        crops = torch.cat([image[..., s : s + win] for s in starts])  # [n*B, 3, h, win]
        ids = class_ids.repeat(len(starts))
        if hp.flip_test:
            n = crops.shape[0]
            pred = self._windows(torch.cat([crops, crops.flip(-1)]), torch.cat([ids, ids]), window_batch)
            pred = (pred[:n] + pred[n:].flip(-1)) / 2
        else:
            pred = self._windows(crops, ids, window_batch)
        canvas = image.new_zeros(b, 1, h, w)
        count = image.new_zeros(1, 1, 1, w)
        for i, s in enumerate(starts):
            canvas[..., s : s + win] += pred[i * b : (i + 1) * b]
            count[..., s : s + win] += 1
        return canvas / count

    def _windows(self, crops: torch.Tensor, ids: torch.Tensor, window_batch: int | None) -> torch.Tensor:
        if not window_batch or window_batch >= crops.shape[0]:
            return self(crops, ids)
        if window_batch < 1:
            raise ValueError(f"window_batch must be >= 1, got {window_batch}")
        chunks = [
            self(crops[i : i + window_batch], ids[i : i + window_batch]) for i in range(0, len(crops), window_batch)
        ]
        return torch.cat(chunks)

    # ------------------------------------------------------------------------------------------ steps
    def training_loss(self, batch: dict) -> torch.Tensor:
        """The SiLog loss of one training batch (also the multi-task model's depth loss)."""
        return self.criterion(self(batch["image"], batch["class_id"]), batch["depth"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def _eval_step(self, batch: dict, metrics: DepthMetrics, batch_idx: int) -> torch.Tensor:
        pred = self.predict_depth(batch["image"], batch["class_id"])
        metrics.update(pred, batch["depth"])
        if batch_idx == 0:
            self.examples = [
                {"image": batch["image"][i].cpu(), "depth": batch["depth"][i].cpu(), "pred": pred[i].cpu()}
                for i in range(min(4, pred.shape[0]))
            ]
        return pred

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.predict_depth(batch["image"], batch["class_id"])

    def example_panels(self, attention: bool = True) -> dict:
        """image | ground truth | prediction | error, shared colour scale in metres.

        No attention panel: the depth context is one scene token, so every cross-attention map is uniform
        (softmax over a single token is 1 everywhere).
        """
        from vpd_lightning.visualize import depth_panel

        if not self.examples:
            return {}
        ex = self.examples
        panel = depth_panel(
            [e["image"] for e in ex], [e["depth"] for e in ex], [e["pred"] for e in ex], self.hparams.max_depth
        )
        return {"predictions": panel}
