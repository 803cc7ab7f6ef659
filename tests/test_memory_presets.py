"""``memory=gpuXX`` presets: the exact bytes of parameters, gradients and optimizer state of the SD-1.5-sized model
(built on the meta device, nothing allocated) plus the activations measured at full size fit each budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import HydraException
from tiny_config import make_cfg

from vpd_lightning.config import CONFIG_DIR
from vpd_lightning.memory import build_sd15_model, count_training_bytes, optimizer_kind

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
    assert count.total + activations <= memory.budget_gb * 1e9, (count.as_dict(), activations)


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
