"""Memory levers: half-precision frozen weights with fp32 master weights, torchao's 8-bit AdamW selected from the
config, half-precision inference weights and windowed depth inference (tiny models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from hydra.utils import instantiate
from tiny_config import make_cfg, tiny_task

from vpd_lightning.backbone import DiffusionBackbone
from vpd_lightning.backbone.tiny import TINY_UNET_CONFIG, TINY_VAE_CONFIG
from vpd_lightning.predict import Predictor

#: bf16 keeps 8 significant bits: each rounding is off by at most 2^-9 relative. The tiny backbone's path
#: (VAE encoder and UNet, ~40 convolutions/linears, each output rounded once to bf16 under autocast) can add up
#: to ~40 x 2^-9 ~ 8 % relative in the worst case; errors of independent roundings mostly cancel, so the *mean*
#: relative error is compared with this bound.
BF16_PATH_BOUND = 40 * 2.0**-9


def _backbone(**options) -> DiffusionBackbone:
    torch.manual_seed(0)
    return DiffusionBackbone(UNet2DConditionModel(**TINY_UNET_CONFIG), AutoencoderKL(**TINY_VAE_CONFIG), **options)


@pytest.mark.parametrize("finetune", ["full", "frozen", "partial", "lora"])
def test_frozen_dtype_bf16_keeps_fp32_master_weights(finetune):
    reference = _backbone(finetune=finetune)
    backbone = _backbone(finetune=finetune, frozen_dtype="bf16")
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == {n for n, p in reference.named_parameters() if p.requires_grad}
    for name, param in backbone.named_parameters():
        assert param.dtype == (torch.float32 if name in trainable else torch.bfloat16), name
    assert all(p.dtype == torch.bfloat16 for p in backbone.vae.parameters())
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    context = torch.randn(2, 3, 32, requires_grad=True)
    features = backbone(image, context)
    assert [f.dtype for f in features] == [torch.float32] * 4
    sum(f.square().mean() for f in features).backward()
    for name, param in backbone.named_parameters():
        if name in trainable:
            assert param.grad is not None and param.grad.dtype == torch.float32, name
    assert context.grad is not None and torch.isfinite(context.grad).all()
    with torch.no_grad():
        expected = reference(image, context)
        got = backbone(image, context)
    for e, g in zip(expected, got, strict=True):
        relative = ((g - e).abs().mean() / e.abs().mean()).item()
        assert relative < BF16_PATH_BOUND, relative


def test_frozen_dtype_unknown_value():
    with pytest.raises(
        ValueError, match=r"backbone.frozen_dtype must be one of fp32, bf16, fp16 \(or null\); got 'int8'"
    ):
        _backbone(frozen_dtype="int8")


def test_8bit_adamw_from_the_config_keeps_parameter_groups(tmp_path, tiny_sd_dir, nyu_root):
    from torchao.optim import AdamW8bit

    base = [*tiny_task("depth", nyu_root, tiny_sd_dir, tmp_path), "trainer=cpu"]
    cfg32 = make_cfg(base)
    cfg8 = make_cfg([*base, "model.optimizer._target_=torchao.optim.AdamW8bit"])
    model = instantiate(cfg8.model, _convert_="all")
    optimizer = model.optimizer_factory(params=model.parameter_groups())
    assert isinstance(optimizer, AdamW8bit)
    reference = instantiate(cfg32.model, _convert_="all").parameter_groups()
    got = [(g["name"], g["weight_decay"], len(g["params"])) for g in optimizer.param_groups]
    assert got == [(g["name"], g["weight_decay"], len(g["params"])) for g in reference]
    # torchao keeps each lr as a float32 tensor: equal up to float32 rounding (2^-24 relative)
    for g, r in zip(optimizer.param_groups, reference, strict=True):
        assert float(g["lr"]) == pytest.approx(r["lr"], rel=2.0**-24)
    assert {g["name"] for g in optimizer.param_groups} == {"x0.01", "x0.01_no_wd", "x1", "x1_no_wd"}
    # the recipe's schedule drives torchao's tensor learning rates like plain floats
    schedule = instantiate(cfg8.model.scheduler)(optimizer, total_steps=10, max_epochs=None, steps_per_epoch=None)
    before = [float(g["lr"]) for g in optimizer.param_groups]
    schedule.step()
    after = [float(g["lr"]) for g in optimizer.param_groups]
    ratios = {round(a / b, 6) for a, b in zip(after, before, strict=True)}
    assert len(ratios) == 1 and ratios != {1.0}


@pytest.fixture(scope="module")
def make_depth_model(tmp_path_factory, tiny_sd_dir, nyu_root):
    """Builds the same tiny depth model (seeded) on every call (a deep copy would share the feature hooks)."""
    tmp = tmp_path_factory.mktemp("depth-model")
    cfg = make_cfg([*tiny_task("depth", nyu_root, tiny_sd_dir, tmp), "trainer=cpu"])

    def make():
        torch.manual_seed(0)
        model = instantiate(cfg.model, _convert_="all")
        names = list(cfg.data.class_names)
        model.vpd_config = {"task": "depth", "class_names": names, "predict": {"crop_height": 48}}
        return model

    return make


def _photo(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_window_batch_gives_the_all_windows_result(make_depth_model):
    depth_model = make_depth_model()
    # 48x160 at crop height 48: 4 windows x 2 flips = 8 forwards of one window each instead of one of 8.
    photo = _photo(48, 160)
    together = Predictor(depth_model, device="cpu")(photo)
    one_by_one = Predictor(depth_model, device="cpu", window_batch=1)(photo)
    # same windows, only the batch size of each forward differs: fp32 kernels may sum in another order, a
    # difference of a few units in the last place of each of the ~10^3-term sums (2^-23 x 10^3 ~ 1e-4 relative)
    np.testing.assert_allclose(one_by_one, together, rtol=1e-4, atol=1e-4 * float(np.abs(together).max()))
    with pytest.raises(ValueError, match="window_batch must be >= 1"):
        Predictor(depth_model, device="cpu", window_batch=0)


def test_bf16_inference_weights(make_depth_model):
    photo = _photo(64, 96)
    reference = Predictor(make_depth_model(), device="cpu")(photo)
    predictor = Predictor(make_depth_model(), device="cpu", dtype="bf16")
    assert {p.dtype for p in predictor.model.parameters()} == {torch.bfloat16}
    got = predictor(photo)
    assert got.dtype == np.float32 and got.shape == reference.shape
    relative = float(np.abs(got - reference).mean() / np.abs(reference).mean())
    assert relative < BF16_PATH_BOUND, relative
    with pytest.raises(ValueError, match="dtype must be one of fp32, bf16, fp16"):
        Predictor(make_depth_model(), device="cpu", dtype="int4")


def test_fp16_mixed_precision_scales_the_loss_and_skips_overflowing_steps():
    """``trainer.precision=16-mixed``: fp16 autocast with a GradScaler. The loss is multiplied by the scale before
    the backward, the gradients are unscaled before AdamW, and a step whose gradients overflow is skipped (weights
    unchanged) while the scale halves, as on a GPU (torch's GradScaler runs on the CPU too)."""
    import functools

    import lightning as L
    from lightning.pytorch.plugins.precision import MixedPrecision
    from torch import nn

    from vpd_lightning.heads import VPDDepthHead
    from vpd_lightning.tasks import DepthEstimationTask

    torch.manual_seed(0)
    task = DepthEstimationTask(
        _backbone(finetune="full"),
        functools.partial(VPDDepthHead, fusion_channels=16, head_channels=8),
        torch.randn(3, 32),
        functools.partial(torch.optim.AdamW, lr=1e-3),
    )
    batch = {
        "image": torch.rand(2, 3, 32, 32),
        "depth": torch.rand(2, 1, 32, 32) * 5 + 1,
        "class_id": torch.tensor([0, 2]),
    }
    probe = task.head.parameters().__next__()
    seen: list[dict] = []
    dtypes: list[torch.dtype] = []
    task.backbone.unet.conv_in.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer, module, b, batch_idx):
            self.before = probe.detach().clone()
            self.handle = None
            if batch_idx == 1:  # one overflowing step: an inf in one gradient
                self.handle = probe.register_hook(lambda g: g * float("inf"))

        def on_before_optimizer_step(self, trainer, module, optimizer):
            # Lightning calls this after the backward and the scaler's unscale_: gradients are back at loss scale 1
            seen.append({"scale": trainer.precision_plugin.scaler.get_scale()})

        def on_train_batch_end(self, trainer, module, outputs, b, batch_idx):
            if self.handle is not None:
                self.handle.remove()
            seen[-1]["changed"] = not torch.equal(self.before, probe.detach())
            seen[-1]["loss"] = float(outputs["loss"])
            seen[-1]["next_scale"] = trainer.precision_plugin.scaler.get_scale()

    trainer = L.Trainer(
        accelerator="cpu",
        # Lightning turns precision="16-mixed" into bf16 on a CPU; the plugin it builds on a GPU, given directly
        plugins=[MixedPrecision("16-mixed", "cpu")],
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Watch()],
    )
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader([batch] * 3, batch_size=None))
    scaler = trainer.precision_plugin.scaler
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()
    assert dtypes == [torch.float16] * 3  # the UNet ran under fp16 autocast
    assert len(seen) == 3 and all(np.isfinite(s["loss"]) for s in seen)
    assert seen[0]["changed"] and seen[2]["changed"]  # ordinary steps update the weights
    assert not seen[1]["changed"]  # the overflowing step is skipped ...
    assert seen[1]["next_scale"] == seen[1]["scale"] * scaler.get_backoff_factor()  # ... and the scale backs off
    assert seen[0]["next_scale"] == seen[0]["scale"]  # growth only after growth_interval (2000) good steps
    assert all(
        isinstance(m.weight, nn.Parameter) and m.weight.dtype == torch.float32
        for m in task.head.modules()
        if isinstance(m, nn.Conv2d)
    )


def test_channels_last_prediction_equals_the_default_within_summation_order(make_depth_model):
    """predict channels_last=true converts the model to NHWC and gives the default's depth up to the fp32
    summation order: relative error <= eps_32 sqrt(n L) (n: largest fan-in, 3x3 over <= 4096 channels;
    L <= 400 convolution/linear calls), i.e. ~4e-4 of the depth range; with dtype=bf16 as well, the bf16
    rounding bound u sqrt(2 L) (u = 2^-8)."""

    def model():
        depth_model = make_depth_model()
        torch.manual_seed(1)  # torch's default head init instead of VPD's near-constant one: a varied map
        for m in depth_model.head.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                m.reset_parameters()
        return depth_model

    photo = _photo(48, 64)
    ref = Predictor(model(), device="cpu")(photo)
    predictor = Predictor(model(), device="cpu", channels_last=True)
    conv = predictor.model.backbone.unet.conv_in.weight
    assert predictor.model.backbone.channels_last and conv.is_contiguous(memory_format=torch.channels_last)
    assert predictor.model.head.last_layer_depth[0].weight.is_contiguous(memory_format=torch.channels_last)
    max_depth = predictor.model.hparams.max_depth
    assert ref.std() > 1e-3 * max_depth  # the comparison below tests something
    got = predictor(photo)
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 2.0**-23 * (9 * 4096 * 400) ** 0.5 * max_depth
    fast = Predictor(model(), device="cpu", channels_last=True, dtype="bf16")(photo)
    assert np.abs(fast - ref).max() <= 2.0**-8 * (2 * 400) ** 0.5 * max_depth
