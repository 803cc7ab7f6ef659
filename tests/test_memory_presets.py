"""``memory=gpuXX`` presets: the exact bytes of parameters, gradients and optimizer state of the SD-1.5-sized model
(built on the meta device, nothing allocated) plus the activations measured at full size fit each budget; other
families scale the measured activations by a ratio counted on the meta device and get their batch x accumulation
fitted, or a refusal naming the family, the preset, the bytes and the budget."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra.errors import HydraException
from tiny_config import make_cfg

from vpd_lightning.backbone.families import FAMILIES
from vpd_lightning.config import CONFIG_DIR
from vpd_lightning.memory import (
    MemoryPresetError,
    activation_bytes,
    activation_images,
    build_sd15_model,
    count_training_bytes,
    family_activation_bytes,
    fit_preset,
    optimizer_kind,
)

PRESETS = sorted(p.stem for p in (Path(CONFIG_DIR) / "memory").glob("*.yaml"))
#: the paper's per-GPU batch (8 GPUs): depth 480^2 x 3, segmentation 512^2 x 2, referring 512^2 x 4
PAPER_BATCH = {"depth": 3, "segmentation": 2, "referring": 4}


def test_every_preset_is_tested():
    assert PRESETS == ["gpu12", "gpu16", "gpu24", "gpu40", "gpu8", "gpu80"]


@pytest.mark.parametrize("task", list(PAPER_BATCH))
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_fits_its_budget(preset, task):
    cfg = make_cfg([f"task={task}", f"memory={preset}"])
    memory = cfg.memory
    assert memory.budget_gb == int(preset.removeprefix("gpu"))
    # the global batch stays the paper's: per-GPU batch x accumulation = the paper's per-GPU batch
    assert cfg.data.batch_size * cfg.trainer.accumulate_grad_batches == PAPER_BATCH[task]
    model = build_sd15_model(cfg)  # SD-1.5 UNet, VAE (and CLIP for referring) + the paper's heads, on meta
    assert next(model.parameters()).is_meta
    count = count_training_bytes(model, optimizer_kind(cfg.model.optimizer._target_))
    # activations measured at full size by scripts/bench_memory.py (docs/benchmarks.md), per 512^2 image
    per_image = memory.activations_gb_per_image["sd15"] * 1e9
    activations = per_image * cfg.data.batch_size
    assert activation_images(cfg) == cfg.data.batch_size
    assert count.total + activations <= memory.budget_gb * 1e9, (count.as_dict(), activations)
    # the run-time check (train applies it) keeps the preset's batch for SD-1.5 and counts the same bytes
    fit = fit_preset(cfg, model)
    assert (fit.batch, fit.accumulate) == (cfg.data.batch_size, cfg.trainer.accumulate_grad_batches)
    assert fit.state == count.total and fit.activations_per_image == int(per_image)


def test_presets_use_their_levers():
    gpu24 = make_cfg(["memory=gpu24"])
    assert gpu24.finetune.mode == "full"
    assert gpu24.backbone.gradient_checkpointing and gpu24.backbone.frozen_dtype == "bf16"
    assert gpu24.model.optimizer._target_ == "torchao.optim.AdamW8bit"
    gpu8 = make_cfg(["task=referring", "memory=gpu8"])
    assert gpu8.finetune.mode == "lora" and gpu8.backbone.frozen_dtype == "bf16"
    assert (gpu8.data.batch_size, gpu8.trainer.accumulate_grad_batches) == (1, 4)
    assert make_cfg(["task=referring", "memory=gpu16"]).data.batch_size == 1
    assert make_cfg(["memory=gpu80"]).backbone.gradient_checkpointing is False


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(HydraException) as err:
        make_cfg(["memory=gpu99"])
    message = str(err.value)
    assert "memory/gpu99" in message
    for preset in PRESETS:
        assert preset in message


def test_lora_preset_trains_on_the_tiny_model(tmp_path, tiny_sd_dir, nyu_root):
    """memory=gpu8 (LoRA, bf16 frozen weights, checkpointing, batch 1 x 3 accumulated) on the tiny model."""
    import torch
    from tiny_config import tiny_task

    from vpd_lightning.train import train

    out = tmp_path / "out"
    base = [
        *tiny_task("depth", nyu_root, tiny_sd_dir, tmp_path),
        "memory=gpu8",
        "trainer=cpu",
        f"paths.output_dir={out}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "test=false",
    ]
    _, objects = train(make_cfg(base))
    model, trainer = objects["model"], objects["trainer"]
    assert trainer.accumulate_grad_batches == 3 and trainer.global_step == 1
    unet = model.backbone.unet
    assert {p.dtype for p in unet.parameters() if not p.requires_grad} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert any(".lora_A." in k for k in state["state_dict"])


def test_activation_bytes_counts_what_autograd_saves():
    """Hand counts: Linear(4,8) -> ReLU -> Linear(8,2) on 3 inputs saves the input (3x4) and the ReLU output (3x8,
    the second Linear's input: the same tensor, counted once); weights are training state, not counted. SDPA is
    counted as a fused kernel: q, k, v (here one tensor), the output and a float32 log-sum-exp per query -- no
    [heads, 16, 16] probabilities."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert activation_bytes(mlp, torch.randn(3, 4)) == 4 * (3 * 4 + 3 * 8)

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(8, 8)

        def forward(self, x):
            q = self.proj(x).view(1, 16, 2, 4).transpose(1, 2)  # 2 heads of width 4 over 16 tokens
            return F.scaled_dot_product_attention(q, q, q)

    with torch.device("meta"):
        model, x = SelfAttention(), torch.randn(1, 16, 8)
    # x (16x8), q (2x16x4), output (2x16x4), log-sum-exp (2x16), all float32
    assert activation_bytes(model, x) == 4 * (128 + 128 + 128 + 32)
    assert F.scaled_dot_product_attention is not None and "fused" not in F.scaled_dot_product_attention.__name__


@pytest.mark.slow  # four full-size families on the meta device: 7 s
def test_family_activation_scale_is_the_counted_ratio():
    """Each family's ``activation_scale`` (shipped) is the ratio of the bytes saved by its depth model's forward at
    its native resolution to SD-1.5's at 512^2, counted on the meta device (rounded up to 0.01)."""

    def count(family, size=None):
        cfg = make_cfg([f"backbone={family}", "task=depth", "finetune=full", "model.input_padding=null"])
        return family_activation_bytes(cfg, size)

    sd15 = count("sd15", 512)
    counts = {family: count(family) for family in FAMILIES}
    for family, value in counts.items():
        assert FAMILIES[family].activation_scale == math.ceil(value / sd15 * 100) / 100, family
    # SD 2.x at 768^2 vs 512^2: the same topology on 2.25x the pixels (the fixed-size text context aside)
    assert counts["sd21"] / counts["sd21_base"] == pytest.approx((768 / 512) ** 2, rel=1e-3)


def _fit(family, task, preset):
    cfg = make_cfg([f"backbone={family}", f"task={task}", f"memory={preset}"])
    return cfg, fit_preset(cfg)


def test_family_presets_fit_the_batch_or_refuse():
    """SD 2.1 at 768^2 (its measured figure in the preset): memory=gpu24 keeps the global batch (3) at per-GPU
    batch 1 x 3; SDXL at 1024^2 (not measured: SD-1.5's figure x 6.9): memory=gpu80 fits one image per step,
    memory=gpu24's full fine-tuning does not hold even one and is refused, naming family, preset, bytes and budget
    and the LoRA alternative."""
    cfg, fit = _fit("sd21", "depth", "gpu24")
    per_image = int(cfg.memory.activations_gb_per_image["sd21"] * 1e9)
    assert fit.activations_per_image == per_image and (fit.batch, fit.accumulate) == (1, 3)
    # the largest divisor of the paper's 3 that fits: 1 fits, 3 does not
    assert fit.state + per_image <= 24e9 < fit.state + 3 * per_image
    cfg, fit = _fit("sdxl", "depth", "gpu80")
    assert fit.activations_per_image == int(cfg.memory.activations_gb_per_image["sd15"] * 6.9 * 1e9)
    assert (fit.batch, fit.accumulate) == (1, 3) and fit.needed <= 80e9 < fit.state + 3 * fit.activations_per_image
    assert fit.state > 41.5e9  # 2.57 B trainable parameters: fp32 weights, gradients and two AdamW states
    with pytest.raises(MemoryPresetError) as err:
        _fit("sdxl", "depth", "gpu24")
    message = str(err.value)
    for part in ("memory=gpu24", "backbone=sdxl", "task=depth", "budget of 24 GB", "memory=gpu12 memory.budget_gb=24"):
        assert part in message, message


def test_sdxl_with_a_small_preset_is_refused_before_anything_is_built(tmp_path, tiny_family_dir, nyu_root):
    """`train` applies the check first: a refused preset fails in seconds with the message, nothing is trained."""
    from tiny_config import tiny_task

    from vpd_lightning.train import train

    overrides = [*tiny_task("depth", nyu_root, tiny_family_dir("sdxl"), tmp_path), "backbone=sdxl", "memory=gpu8"]
    with pytest.raises(MemoryPresetError, match=r"memory=gpu8 does not fit backbone=sdxl .* budget of 8 GB"):
        train(make_cfg([*overrides, f"paths.output_dir={tmp_path / 'out'}"]))
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_measured_figures_per_family_take_precedence():
    from vpd_lightning.memory import preset_activations_per_image

    memory = make_cfg(["memory=gpu24"]).memory
    assert preset_activations_per_image(memory, "sdxl") == int(3.58 * 6.9 * 1e9)
    memory.activations_gb_per_image = {"sd15": 3.58, "sdxl": 20.0}
    assert preset_activations_per_image(memory, "sdxl") == int(20e9)
    assert preset_activations_per_image(memory, "sd21") == int(3.58 * 2.25 * 1e9)


MULTITASK = ["experiment=multitask_vpd"]  # depth + segmentation + referring, each with its paper recipe


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_applies_to_each_task_of_a_multitask_run(preset):
    """task=multitask: each task gets the preset's micro-batch (data.<task>.batch_size) and accumulation
    (multitask.accumulate, run inside the model's manual optimisation: Lightning's stays 1), every task the preset's
    optimizer, the shared backbone its levers."""
    cfg = make_cfg([*MULTITASK, f"memory={preset}"])
    single = make_cfg([f"memory={preset}"])
    assert cfg.trainer.accumulate_grad_batches == 1
    assert "batch_size" not in cfg.data and "optimizer" not in cfg.model  # nothing of the single-task keys
    for task in PAPER_BATCH:
        assert cfg.data[task].batch_size == cfg.memory.batch[task]
        assert cfg.multitask.accumulate[task] == cfg.memory.accumulate[task]
        assert cfg.data[task].batch_size * cfg.multitask.accumulate[task] == PAPER_BATCH[task]
        assert cfg.model[task].optimizer._target_ == single.model.optimizer._target_ == cfg.memory.optimizer
    assert cfg.finetune.mode == single.finetune.mode
    assert cfg.backbone.frozen_dtype == single.backbone.frozen_dtype
    assert cfg.backbone.gradient_checkpointing == single.backbone.gradient_checkpointing


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_fits_its_budget_with_all_three_tasks(preset):
    """One shared SD-1.5 backbone + the three heads, adapters and CLIP (state counted once, on meta) + the
    activations of the largest task's micro-batch (the tasks' micro-batches run one after the other)."""
    cfg = make_cfg([*MULTITASK, f"memory={preset}"])
    model = build_sd15_model(cfg)
    assert type(model).__name__ == "MultiTaskModel" and next(model.parameters()).is_meta
    assert model.accumulate == dict(cfg.memory.accumulate)
    count = count_training_bytes(model, optimizer_kind(cfg.memory.optimizer))
    # the backbone is counted once: the multi-task state is the referring model's plus the two other heads
    referring = count_training_bytes(build_sd15_model(make_cfg(["task=referring", f"memory={preset}"])), "sgd")
    unet = sum(p.numel() for p in model.backbone.unet.parameters())
    assert referring.trainable_params < count.trainable_params < referring.trainable_params + unet // 20
    images = activation_images(cfg)
    assert images == max(cfg.memory.batch[t] for t in PAPER_BATCH)
    activations = cfg.memory.activations_gb_per_image["sd15"] * 1e9 * images
    assert count.total + activations <= cfg.memory.budget_gb * 1e9, (count.as_dict(), activations)


def test_a_preset_without_a_trained_task_in_its_tables_names_the_tasks_it_has():
    from omegaconf import open_dict

    from vpd_lightning.utils.errors import ConfigError
    from vpd_lightning.utils.validate import validate_config

    for overrides, key in (
        ([*MULTITASK, "memory=gpu24", "~memory.batch.referring"], "batch"),
        ([*MULTITASK, "memory=gpu8", "~memory.accumulate.segmentation"], "accumulate"),
        (["task=referring", "memory=gpu24", "~memory.batch.referring"], "batch"),
    ):
        cfg = make_cfg(overrides)
        with pytest.raises(ConfigError) as err:
            validate_config(cfg)
        message = str(err.value)
        missing = "referring" if key == "batch" else "segmentation"
        others = ", ".join(t for t in PAPER_BATCH if t != missing)
        assert message == f"memory={cfg.memory.name}: memory.{key} has no '{missing}'; it has {others}", message
    cfg = make_cfg([*MULTITASK, "memory=gpu24", "~memory.batch.referring"])
    with open_dict(cfg):
        cfg.multitask.tasks = ["depth", "segmentation"]  # a task not trained may be missing
    validate_config(cfg)


@pytest.mark.slow
def test_multitask_preset_trains_on_the_tiny_model(tmp_path, tiny_sd_dir, nyu_root, ade_root):
    """memory=gpu8 with task=multitask (depth + segmentation): LoRA, bf16 frozen weights, checkpointing; each task's
    step batch (depth 3, segmentation 2 images) runs as the preset's micro-batches of 1, forward + backward one at
    a time, then one optimiser step. (Segmentation crops of 128: the FPN's coarsest level, 1/64 of the crop, must
    hold more than one value per channel for batch norm at batch 1; the usual tiny 48 gives it 1 x 1.)"""
    import torch
    from tiny_config import tiny_multitask

    from vpd_lightning.train import train

    roots = {"depth": nyu_root, "segmentation": ade_root}
    cfg = make_cfg(
        [
            *tiny_multitask(["depth", "segmentation"], roots, tiny_sd_dir, tmp_path),
            "memory=gpu8",
            "trainer=cpu",
            f"paths.output_dir={tmp_path / 'out'}",
            "trainer.max_steps=1",
            "trainer.limit_val_batches=0",
            "trainer.enable_progress_bar=false",
            "logger=csv",
            "callbacks=none",
            "+callbacks.spy._target_=train_hooks.RecordMicroBatches",
            "test=false",
            "data.segmentation.crop_size=[128,128]",
            "data.segmentation.img_scale=[512,128]",
            "model.segmentation.crop_size=[128,128]",
        ]
    )
    _, objects = train(cfg)
    model, trainer = objects["model"], objects["trainer"]
    [spy] = [c for c in trainer.callbacks if type(c).__name__ == "RecordMicroBatches"]
    assert model.accumulate == {"depth": 3, "segmentation": 2} and trainer.accumulate_grad_batches == 1
    assert spy.calls == [("depth", 1)] * 3 + [("segmentation", 1)] * 2  # the preset's micro-batch: 1 image
    assert spy.steps == [0] * 5 and trainer.global_step == 1  # one optimiser step after all five
    optimizer = trainer.optimizers[0]
    assert type(optimizer) is torch.optim.AdamW
    assert {int(s["step"]) for s in optimizer.state.values()} == {1}
    assert {p.dtype for p in model.backbone.unet.parameters() if not p.requires_grad} == {torch.bfloat16}
    assert model.backbone.unet.is_gradient_checkpointing
    assert any(".lora_A." in k for k in model.state_dict())
