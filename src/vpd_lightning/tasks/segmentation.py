"""Semantic segmentation with VPD (ADE20K): class-name prompts -> diffusion backbone + A32 maps -> FPN."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from vpd_lightning.backbone import DiffusionBackbone, TextAdapter
from vpd_lightning.inference import rescale_size, slide_inference
from vpd_lightning.metrics import SegmentationMetrics
from vpd_lightning.tasks.base import VPDTask

__all__ = ["SemanticSegmentationTask"]


class SemanticSegmentationTask(VPDTask):
    """VPD semantic segmentation (vpd-reference §3).

    The context is the same for every image: the ``C`` class embeddings refined by the text adapter
    (``[B, C, D]``). The backbone concatenates the A32 cross-attention maps (one channel per class) to its
    stride-16 and stride-32 features; an FPN neck and a Semantic FPN head give logits at stride 8, upsampled
    bilinearly to the label size for the loss.

    Args:
        backbone: the diffusion backbone (A32 by default).
        neck: partial FPN, called with ``in_channels=backbone.out_channels(C)``.
        head: partial FPN head, called with ``num_classes=C`` and ``in_channels=neck.out_channels``.
        class_embeddings: ``[C, D]`` class embeddings (a buffer saved with the model).
        optimizer, scheduler, unet_lr_mult: see :class:`VPDTask` (VPD: AdamW 8e-5, wd 1e-3, UNet x0.1, poly).
        mmcv_norm_quirk: reproduce mmcv's first-match ``custom_keys``: UNet parameters whose name contains
            ``norm`` train at lr x1 (not x0.1). In both settings every parameter named ``norm`` gets no weight
            decay and everything else (biases and BN included) gets it, as in the original.
        ignore_index: label of ignored pixels (255).
        loss_average: ``"all"`` averages the per-pixel loss over all pixels, ignored ones included (mmseg 0.x
            ``avg_non_ignore=False``, VPD); ``"valid"`` over the labelled pixels only.
        crop_size, stride: sliding-window inference (VPD: 512, 341).
        test_scale: test resize ``(long, short)`` bound with kept ratio (VPD: 2048, 512).
        test_ratios, test_flip: multi-scale + flip test-time augmentation (VPD reports 1.0-1.5 with flip as
            "ms+flip"; default single scale, no flip).
        window_batch_size: sliding windows per forward at test time (VPD/mmseg: 1); more is faster, with the
            same logits up to float rounding, at the memory of that many crops.
    """

    monitor = "val/miou"
    mode = "max"
    prog_bar_metrics = ("miou",)

    def __init__(
        self,
        backbone: DiffusionBackbone,
        neck: Callable[..., nn.Module],
        head: Callable[..., nn.Module],
        class_embeddings: torch.Tensor,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        unet_lr_mult: float = 0.1,
        mmcv_norm_quirk: bool = True,
        ignore_index: int = 255,
        loss_average: str = "all",
        crop_size: Sequence[int] = (512, 512),
        stride: Sequence[int] = (341, 341),
        test_scale: Sequence[int] = (2048, 512),
        test_ratios: Sequence[float] = (1.0,),
        test_flip: bool = False,
        class_names: Sequence[str] | None = None,
        window_batch_size: int = 1,
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, unet_lr_mult)
        self.save_hyperparameters(ignore=["backbone", "neck", "head", "class_embeddings", "optimizer", "scheduler"])
        class_embeddings = torch.as_tensor(class_embeddings, dtype=torch.float32)
        if class_embeddings.ndim != 2 or class_embeddings.shape[1] != backbone.context_dim:
            raise ValueError(
                f"class_embeddings must be [num_classes, {backbone.context_dim}] (the {backbone.family} UNet's "
                "context width), "
                f"got {list(class_embeddings.shape)}"
            )
        if int(window_batch_size) < 1:
            raise ValueError(f"model.window_batch_size must be >= 1, got {window_batch_size}")
        if loss_average not in ("all", "valid"):
            raise ValueError(f"model.loss_average must be 'all' or 'valid', got '{loss_average}'")
        self.num_classes = class_embeddings.shape[0]
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(f"model.class_names has {len(class_names)} names for {self.num_classes} embeddings")
        self.register_buffer("class_embeddings", class_embeddings)
        self.text_adapter = TextAdapter(backbone.context_dim)
        self.neck = neck(in_channels=backbone.out_channels(self.num_classes))
        self.head = head(num_classes=self.num_classes, in_channels=self.neck.out_channels)
        self.mmcv_norm_quirk = mmcv_norm_quirk
        self.val_metrics = SegmentationMetrics(self.num_classes, ignore_index, class_names)
        self.test_metrics = SegmentationMetrics(self.num_classes, ignore_index, class_names)
        self.per_class_table: str | None = None
        self.per_class: list[tuple[str, float, float]] = []
        self.examples: list[dict[str, torch.Tensor]] = []

    # ------------------------------------------------------------------------------------------ optimiser
    def lr_scale_and_decay(self, name: str, param: torch.nn.Parameter) -> tuple[float, bool]:
        """mmcv ``paramwise_cfg`` of VPD's config: ``unet: lr_mult 0.1``, ``norm: decay_mult 0``."""
        is_norm = "norm" in name
        scale = 1.0
        if name.startswith("backbone.unet.") and not (self.mmcv_norm_quirk and is_norm):
            scale = self.unet_lr_mult
        return scale, not is_norm

    # ------------------------------------------------------------------------------------------ model
    def context(self, batch_size: int) -> torch.Tensor:
        return self.text_adapter(self.class_embeddings).unsqueeze(0).expand(batch_size, -1, -1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C, H, W]`` for ``image`` ``[B, 3, H, W]`` in ``[0, 1]`` (sides multiples of 8)."""
        features = self.backbone(image * 2.0 - 1.0, self.context(image.shape[0]))
        logits = self.head(self.neck(features))
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)

    @torch.no_grad()
    def predict_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Test protocol on an original-size image ``[B, 3, H, W]`` in ``[0, 1]``: keep-ratio resize, sliding
        windows, logits resized to ``(H, W)``; with several ratios or flip, softmax probabilities averaged."""
        hp = self.hparams
        h, w = image.shape[-2:]
        views = [(r, f) for r in hp.test_ratios for f in ([False, True] if hp.test_flip else [False])]
        total = None
        for ratio, flip in views:
            size = rescale_size(h, w, (hp.test_scale[0] * ratio, hp.test_scale[1] * ratio))
            x = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
            if flip:
                x = x.flip(-1)
            out = slide_inference(
                self,
                x,
                self.num_classes,
                tuple(hp.crop_size),
                tuple(hp.stride),
                pad_value=0.5,
                window_batch_size=int(hp.get("window_batch_size", 1)),
            )
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
            if flip:
                out = out.flip(-1)
            if len(views) > 1:
                out = out.softmax(dim=1)
            total = out if total is None else total + out
        return total / len(views)

    # ------------------------------------------------------------------------------------------ steps
    def loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        per_pixel = F.cross_entropy(logits, label, ignore_index=self.hparams.ignore_index, reduction="none")
        if self.hparams.loss_average == "all":
            return per_pixel.mean()
        valid = (label != self.hparams.ignore_index).sum().clamp(min=1)
        return per_pixel.sum() / valid

    def training_loss(self, batch: dict) -> torch.Tensor:
        """The cross-entropy of one training batch (also the multi-task model's segmentation loss)."""
        return self.loss(self(batch["image"]), batch["label"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def _eval_step(self, batch: dict, metrics: SegmentationMetrics, batch_idx: int) -> None:
        pred = self.predict_logits(batch["image"]).argmax(dim=1)
        metrics.update(pred, batch["label"])
        if batch_idx == 0:
            self.examples = [
                {"image": batch["image"][i].cpu(), "label": batch["label"][i].cpu(), "pred": pred[i].cpu()}
                for i in range(min(4, pred.shape[0]))
            ]

    def on_metrics_computed(self, metrics: SegmentationMetrics, stage: str) -> None:
        self.per_class_table = metrics.per_class_table()
        result = metrics.compute()
        names = self.class_names
        #: ``(class, IoU, Acc)`` rows of the last evaluation (NaN: class absent), for dashboards
        self.per_class = [(n, float(i), float(a)) for n, i, a in zip(names, result["iou"], result["acc"])]
        if stage == "val" and not self.trainer.sanity_checking:
            rows = [r for r in self.per_class_table.splitlines() if not r.rstrip().endswith("nan")]
            rank_zero_info(f"per-class IoU / Acc (%) at step {self.global_step} (classes seen):\n" + "\n".join(rows))

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.predict_logits(batch["image"]).argmax(dim=1)

    @property
    def class_names(self) -> list[str]:
        names = self.hparams.get("class_names")
        return [str(n).strip() for n in names] if names is not None else [str(i) for i in range(self.num_classes)]

    def example_panels(self, attention: bool = True, max_maps: int = 4) -> dict:
        """Overlays of ground truth and prediction with a class legend, and the cross-attention maps of the
        ``max_maps`` largest ground-truth classes of the first two images (the image resized to the training
        crop)."""
        from vpd_lightning.visualize import attention_panel, segmentation_panel

        if not self.examples:
            return {}
        ex, names = self.examples, self.class_names
        panels = {
            "predictions": segmentation_panel(
                [e["image"] for e in ex], [e["label"] for e in ex], [e["pred"] for e in ex], names
            )
        }
        if attention and self.backbone.attention_levels:
            images, maps, labels = [], [], []
            for e in ex[:2]:
                x = F.interpolate(e["image"][None].float(), size=tuple(self.hparams.crop_size), mode="bilinear")
                levels = self.backbone.attention_maps(x.to(self.device) * 2.0 - 1.0, self.context(1))
                amap = levels[min(levels)][0]  # the finest level used, [C, h, w]
                label = e["label"][e["label"] != self.hparams.ignore_index]
                counts = torch.bincount(label.flatten().long(), minlength=self.num_classes)[: self.num_classes]
                if int((counts > 0).sum()) == 0:
                    counts = torch.bincount(e["pred"].flatten().long(), minlength=self.num_classes)
                classes = [int(c) for c in counts.argsort(descending=True)[:max_maps] if counts[c] > 0]
                images.append(x[0].cpu())
                maps.append(amap[classes])
                labels.append([names[c] for c in classes])
            panels["attention"] = attention_panel(images, maps, labels)
        return panels
