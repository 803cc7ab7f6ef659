"""Referring image segmentation with VPD (RefCOCO, RefCOCO+, G-Ref): the sentence is the UNet's context."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vpd_lightning.backbone import DiffusionBackbone, TextAdapter
from vpd_lightning.metrics import ReferringMetrics
from vpd_lightning.tasks.base import VPDTask

__all__ = ["ReferringSegmentationTask"]


class ReferringSegmentationTask(VPDTask):
    """VPD referring segmentation (vpd-reference §5).

    The frozen CLIP text encoder's per-token outputs (``last_hidden_state``, ``[B, L, D]``, L = 40 or 77) go
    through the text adapter and become the UNet's cross-attention context; the backbone concatenates the A32
    maps (one channel per token) and LAVT's ``SimpleDecoding`` predicts 2-class logits at stride 8, upsampled
    (bilinear, ``align_corners=True``) to the input size.

    Args:
        backbone: the diffusion backbone (A32).
        head: partial decoder, called with ``in_channels=backbone.out_channels(max_tokens)``.
        text_encoder: a frozen ``CLIPTextModel`` (SD-1.5's, which is openai/clip-vit-large-patch14; SD 2.x's
            OpenCLIP ViT-H) or, for SDXL, a :class:`~vpd_lightning.backbone.text.DualTextEncoder`.
        max_tokens: sentence length in tokens (RefCOCO/RefCOCO+: 40, G-Ref: 77).
        optimizer, scheduler: see :class:`VPDTask` (VPD: AdamW 5e-5, wd 1e-2, poly 0.9 over 40 epochs).
        unet_lr_mult: VPD meant x0.01 but its ``lr_scale`` was never read, so the published numbers come from
            the UNet at the full lr: 1.0 is the faithful default, 0.01 the intended option.
        class_weights: cross-entropy weights (background, target) (VPD: 0.9, 1.1).
        mask_padding: mask padding tokens out of cross-attention (VPD attends to them: False).
    """

    monitor = "val/oiou"
    mode = "max"
    prog_bar_metrics = ("oiou",)

    def __init__(
        self,
        backbone: DiffusionBackbone,
        head: Callable[..., nn.Module],
        text_encoder: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        max_tokens: int = 40,
        unet_lr_mult: float = 1.0,
        class_weights: Sequence[float] = (0.9, 1.1),
        mask_padding: bool = False,
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, unet_lr_mult)
        self.save_hyperparameters(ignore=["backbone", "head", "text_encoder", "optimizer", "scheduler"])
        width = text_encoder.config.hidden_size
        if width != backbone.context_dim:
            raise ValueError(
                f"text encoder width {width} differs from the {backbone.family} UNet's cross-attention width "
                f"{backbone.context_dim}"
            )
        self.text_encoder = text_encoder.requires_grad_(False).eval()
        if backbone.frozen_dtype is not None:  # the frozen CLIP encoder stored like the backbone's frozen weights
            self.text_encoder.to(backbone.frozen_dtype)
        self.text_adapter = TextAdapter(backbone.context_dim)
        self.head = head(in_channels=backbone.out_channels(max_tokens))
        self.max_tokens = max_tokens
        self.register_buffer("class_weights", torch.tensor(list(class_weights), dtype=torch.float32))
        self.mask_padding = mask_padding
        self.val_metrics = ReferringMetrics()
        self.test_metrics = ReferringMetrics()
        self.examples: list[dict] = []

    def train(self, mode: bool = True):
        super().train(mode)
        self.text_encoder.eval()  # frozen, as in the original
        return self

    # ------------------------------------------------------------------------------------------ optimiser
    def lr_scale_and_decay(self, name: str, param: torch.nn.Parameter) -> tuple[float, bool]:
        """VPD refer groups: parameters named ``norm`` get no weight decay (BN layers named ``bn*`` do)."""
        scale = self.unet_lr_mult if name.startswith("backbone.unet.") else 1.0
        return scale, "norm" not in name

    # ------------------------------------------------------------------------------------------ model
    def context(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]``: the adapted CLIP ``last_hidden_state`` of the sentences."""
        if input_ids.shape[-1] != self.max_tokens:
            raise ValueError(f"input_ids have {input_ids.shape[-1]} tokens, the model was built for {self.max_tokens}")
        with torch.no_grad():
            hidden = self.text_encoder(input_ids=input_ids).last_hidden_state
        # fp32 for a trained adapter beside a half-precision frozen encoder; the adapter's own type in inference
        return self.text_adapter(hidden.to(next(self.text_adapter.parameters()).dtype))

    def forward(
        self, image: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """2-class logits ``[B, 2, H, W]`` for ``image`` in ``[0, 1]`` and tokenised sentences ``[B, L]``."""
        mask = attention_mask.bool() if (self.mask_padding and attention_mask is not None) else None
        features = self.backbone(image * 2.0 - 1.0, self.context(input_ids), context_mask=mask)
        logits = self.head(features)
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=True)

    # ------------------------------------------------------------------------------------------ steps
    def loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, mask, weight=self.class_weights)

    def training_loss(self, batch: dict) -> torch.Tensor:
        """The weighted cross-entropy of one training batch (also the multi-task model's referring loss)."""
        return self.loss(self(batch["image"], batch["input_ids"], batch.get("attention_mask")), batch["mask"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def _eval_step(self, batch: dict, metrics: ReferringMetrics, batch_idx: int) -> None:
        pred = self(batch["image"], batch["input_ids"], batch.get("attention_mask")).argmax(dim=1)
        metrics.update(pred.bool(), batch["mask"].bool())
        if batch_idx == 0:
            self.examples = [
                {
                    "image": batch["image"][i].cpu(),
                    "mask": batch["mask"][i].cpu(),
                    "pred": pred[i].cpu(),
                    "sentence": batch["sentence"][i] if "sentence" in batch else "",
                    "input_ids": batch["input_ids"][i].cpu(),
                    "attention_mask": batch["attention_mask"][i].cpu() if "attention_mask" in batch else None,
                }
                for i in range(min(4, pred.shape[0]))
            ]

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self(batch["image"], batch["input_ids"], batch.get("attention_mask")).argmax(dim=1)

    def example_panels(self, attention: bool = True, max_maps: int = 5) -> dict:
        """Masks captioned with their sentence, and the cross-attention maps of the sentence's first
        ``max_maps`` word tokens (start, end and padding tokens left out) for the first two examples."""
        from vpd_lightning.visualize import attention_panel, referring_panel

        if not self.examples:
            return {}
        ex = self.examples
        panels = {
            "predictions": referring_panel(
                [e["image"] for e in ex], [e["mask"] for e in ex], [e["pred"] for e in ex], [e["sentence"] for e in ex]
            )
        }
        if attention and self.backbone.attention_levels:
            trainer = self._trainer
            tokenizer = getattr(getattr(trainer, "datamodule", None), "tokenizer", None) if trainer else None
            images, maps, labels = [], [], []
            for e in ex[:2]:
                ids, valid = e["input_ids"], e["attention_mask"]
                if valid is None:  # CLIP pads with its end token: keep up to the first one
                    valid = torch.cumsum(ids == ids[-1], 0) <= 1
                positions = valid.nonzero().flatten().tolist()[1:-1][:max_maps]  # skip <start>, <end>
                mask = valid[None].bool().to(self.device) if self.mask_padding else None
                levels = self.backbone.attention_maps(
                    e["image"][None].to(self.device) * 2.0 - 1.0, self.context(ids[None].to(self.device)), mask
                )
                amap = levels[min(levels)][0]  # [L, h, w]
                if tokenizer is not None:
                    words = [t.replace("</w>", "") for t in tokenizer.convert_ids_to_tokens(ids[positions].tolist())]
                else:
                    words = [f"token {p}" for p in positions]
                images.append(e["image"])
                maps.append(amap[positions])
                labels.append(words)
            panels["attention"] = attention_panel(images, maps, labels)
        return panels
