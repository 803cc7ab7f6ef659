"""``memory=gpuXX`` presets: the exact bytes of parameters, gradients and optimizer state of the SD-1.5-sized model
(built on the meta device, nothing allocated) plus the activations measured at full size fit each budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import HydraException
from tiny_config import make_cfg

from vpd_lightning.config import CONFIG_DIR
from vpd_lightning.memory import activation_images, build_sd15_model, count_training_bytes, optimizer_kind

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
    activations = memory.activations_gb_per_image * 1e9 * cfg.data.batch_size
    assert activation_images(cfg) == cfg.data.batch_size
    assert count.total + activations <= memory.budget_gb * 1e9, (count.as_dict(), activations)


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
    activations = cfg.memory.activations_gb_per_image * 1e9 * images
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
