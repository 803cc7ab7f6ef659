"""Fine-tuning modes (finetune=full|lora|partial|frozen): trainable parameters against hand counts, LoRA at
initialisation, merged adapters, bad input; and every mode trained, resumed, evaluated, predicted and exported
(tiny models, generated data, a few CPU steps)."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from hydra.errors import ConfigCompositionException
from lightning.pytorch import Callback
from tiny_config import make_cfg, run_train, tiny_task

from vpd_lightning.backbone import CaptureAttnProcessor, DiffusionBackbone, load_unet, load_vae
from vpd_lightning.backbone.finetune import (
    AdapterMismatchError,
    apply_finetune,
    check_adapters,
    has_adapters,
    merge_adapters,
    merged_state_dict,
    normalize_finetune,
)
from vpd_lightning.backbone.tiny import TINY_UNET_CONFIG
from vpd_lightning.export import CheckpointError, _load_weights, export_checkpoint, load_exported, load_model

MODES = ("full", "lora", "partial", "frozen")


@pytest.fixture(scope="module")
def parts(tiny_sd_dir):
    return load_unet(tiny_sd_dir), load_vae(tiny_sd_dir)


def make(parts, **options) -> DiffusionBackbone:
    unet, vae = parts
    return DiffusionBackbone(copy.deepcopy(unet), copy.deepcopy(vae), **options)


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------- hand counts
def attention_widths(cfg: dict) -> list[int]:
    """Channel width C of every Transformer2DModel of an SD-1.x UNet config (one transformer layer each)."""
    channels, layers = list(cfg["block_out_channels"]), cfg["layers_per_block"]
    widths = []
    for c, kind in zip(channels, cfg["down_block_types"]):
        widths += [c] * layers if kind.startswith("CrossAttn") else []
    widths.append(channels[-1])  # the mid block
    for c, kind in zip(reversed(channels), cfg["up_block_types"]):
        widths += [c] * (layers + 1) if kind.startswith("CrossAttn") else []
    return widths


def lora_count(cfg: dict, rank: int, targets: tuple[str, ...]) -> int:
    """LoRA on Linear(i, o) adds r (i + o) parameters. Per transformer of width C, context width D: attn1 maps
    C -> C four times; attn2's to_q and to_out map C -> C, its to_k and to_v D -> C."""
    d = cfg["cross_attention_dim"]
    size = {"to_q": lambda c: 2 * (2 * c), "to_out.0": lambda c: 2 * (2 * c)}
    size.update({"to_k": lambda c: 2 * c + (d + c), "to_v": lambda c: 2 * c + (d + c)})
    return sum(rank * size[t](c) for c in attention_widths(cfg) for t in targets)


def resnet_conv_lora_count(cfg: dict, rank: int) -> int:
    """LoRA on a k x k Conv2d(i, o) adds r (i k k + o) parameters (A: i -> r with the kernel, B: 1x1 r -> o).
    Resnet in/out channels follow diffusers' UNet2DConditionModel block construction."""
    channels, layers = list(cfg["block_out_channels"]), cfg["layers_per_block"]
    pairs = []  # (in, out) of every resnet
    previous = channels[0]
    for c in channels:
        pairs += [(previous if j == 0 else c, c) for j in range(layers)]
        previous = c
    pairs += [(channels[-1], channels[-1])] * 2  # mid block
    rev = list(reversed(channels))
    previous = rev[0]
    for i, c in enumerate(rev):
        skip_in = rev[min(i + 1, len(rev) - 1)]
        for j in range(layers + 1):
            skip = skip_in if j == layers else c
            pairs.append(((previous if j == 0 else c) + skip, c))
        previous = c
    return sum(rank * (i * 9 + o) + rank * (o * 9 + o) for i, o in pairs)  # conv1: i -> o, conv2: o -> o


def full_count(cfg: dict, total: int) -> int:
    """Everything but the never-run head: GroupNorm(C0) (2 C0) and conv_out (C0 -> 4, 3x3, with bias)."""
    c0, out = cfg["block_out_channels"][0], cfg["out_channels"]
    return total - (2 * c0 + c0 * out * 9 + out)


def up_block0_count(cfg: dict) -> int:
    """up_blocks.0 (UpBlock2D, width C = last level): 3 resnets 2C -> C (GroupNorm 2C, conv1 3x3, time
    projection from 4 C0, GroupNorm C, conv2 3x3, 1x1 shortcut) and the upsampler's 3x3 conv."""
    c, temb = cfg["block_out_channels"][-1], 4 * cfg["block_out_channels"][0]
    i = 2 * c
    resnet = 2 * i + (i * c * 9 + c) + (temb * c + c) + 2 * c + (c * c * 9 + c) + (i * c + c)
    return (cfg["layers_per_block"] + 1) * resnet + (c * c * 9 + c)


def test_trainable_parameters_per_mode_match_hand_counts(parts):
    cfg = TINY_UNET_CONFIG
    total = sum(p.numel() for p in parts[0].parameters())
    full = make(parts)
    assert trainable(full.unet) == full_count(cfg, total) and trainable(full.vae) == 0
    assert trainable(make(parts, finetune={"mode": "frozen"}).unet) == 0
    assert trainable(make(parts, train_unet=False).unet) == 0  # the old switch is the frozen mode
    partial = make(parts, finetune={"mode": "partial", "train_blocks": ["up_blocks.0"]})
    assert trainable(partial.unet) == up_block0_count(cfg) == 419_776
    up = make(parts, finetune="partial")  # default: all up blocks
    assert {n.split(".")[0] for n, p in up.unet.named_parameters() if p.requires_grad} == {"up_blocks"}
    assert trainable(up.unet) == sum(p.numel() for p in up.unet.up_blocks.parameters())

    lora = make(parts, finetune="lora")
    names = [n for n, p in lora.unet.named_parameters() if p.requires_grad]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert trainable(lora.unet) == lora_count(cfg, 8, ("to_q", "to_k", "to_v", "to_out.0")) == 87_040
    assert trainable(lora.vae) == 0
    options = {"mode": "lora", "rank": 2, "target_modules": ["to_k", "to_v"], "resnet_convs": True, "dropout": 0.1}
    convs = make(parts, finetune=options)
    expected = lora_count(cfg, 2, ("to_k", "to_v")) + resnet_conv_lora_count(cfg, 2)
    assert trainable(convs.unet) == expected
    layer = convs.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k
    assert layer.scaling["default"] == 8 / 2 and isinstance(layer.lora_dropout["default"], torch.nn.Dropout)


def test_apply_finetune_on_the_meta_device():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**TINY_UNET_CONFIG)
    applied = apply_finetune(unet, mode="lora", rank=4)
    assert applied["rank"] == 4 and applied["target_modules"] == ["to_q", "to_k", "to_v", "to_out.0"]
    assert all(p.is_meta for p in unet.parameters())
    assert trainable(unet) == lora_count(TINY_UNET_CONFIG, 4, ("to_q", "to_k", "to_v", "to_out.0"))


def test_lora_adapters_stay_float32_on_a_bf16_unet():
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**TINY_UNET_CONFIG).to(torch.bfloat16)
    apply_finetune(unet, mode="lora")
    assert {p.dtype for n, p in unet.named_parameters() if ".lora_" in n} == {torch.float32}
    assert {p.dtype for n, p in unet.named_parameters() if ".lora_" not in n} == {torch.bfloat16}
    layer, x = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q, torch.randn(2, 32)
    out = layer(x.bfloat16())
    assert out.dtype == torch.bfloat16 and torch.equal(out, layer.base_layer(x.bfloat16()))  # B = 0 at init


@pytest.mark.parametrize("impl", ["fast", "explicit"])
def test_lora_at_initialisation_is_the_base_model(parts, impl):
    """lora_B starts at zero: features and cross-attention maps (captured through the peft-wrapped to_q/to_k)
    are exactly the base model's."""
    base, lora = make(parts, attention_impl=impl), make(parts, attention_impl=impl, finetune="lora")
    attn2 = lora.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2
    assert isinstance(attn2.processor, CaptureAttnProcessor) and hasattr(attn2.to_k, "lora_A")
    image, context = torch.rand(2, 3, 48, 64) * 2 - 1, torch.randn(2, 5, 32)
    with torch.no_grad():
        expected, got = base(image, context), lora(image, context)
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    maps_base, maps_lora = base.attention_maps(image, context), lora.attention_maps(image, context)
    assert sorted(maps_lora) == [1, 2] and all(torch.equal(maps_base[k], maps_lora[k]) for k in maps_base)


def test_merged_adapters_equal_the_adapted_model(parts):
    """W' = W + (alpha/r) B A computes the same map as W x + (alpha/r) B (A x), up to float32 rounding: each
    output of a layer is a dot product of at most K = 256 terms (the widest input in the tiny UNet), whose
    rounding error is at most K * 2^-24 ~ 1.5e-5 of the sum of absolute terms; through the network such errors
    add up over a few dozen layers, so 1e-4 of the features' magnitude bounds the difference."""
    lora = make(parts, finetune="lora")
    generator = torch.Generator().manual_seed(0)
    for name, param in lora.unet.named_parameters():
        if ".lora_B." in name:
            param.data = torch.randn(param.shape, generator=generator) * 0.05
    plain = make(parts)
    plain.unet.load_state_dict(merged_state_dict(lora.unet))  # strict: exactly a plain UNet's keys
    image, context = torch.rand(1, 3, 48, 64) * 2 - 1, torch.randn(1, 5, 32)
    with torch.no_grad():
        adapted, merged, base = lora(image, context), plain(image, context), make(parts)(image, context)
    for a, m, b in zip(adapted, merged, base):
        assert (a - m).abs().max() <= 1e-4 * a.abs().max()
        assert (a - b).abs().max() > 1e-2 * a.abs().max()  # the adapters do change the model
    merge_adapters(lora.unet)  # in place: the same weights as merged_state_dict, a plain UNet after
    assert not has_adapters(lora) and lora.unet.state_dict().keys() == plain.unet.state_dict().keys()
    merged_weights = plain.unet.state_dict()  # both add the same delta W to W: bit-identical
    assert all(torch.equal(v, merged_weights[k]) for k, v in lora.unet.state_dict().items())


# ------------------------------------------------------------------------------------------------ bad input
def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ConfigCompositionException) as err:
        make_cfg(["finetune=lorra"])
    message = str(err.value) + str(err.value.__cause__)
    assert "finetune" in message and all(mode in message for mode in MODES)
    with pytest.raises(ValueError, match="full, lora, partial, frozen"):
        normalize_finetune({"mode": "lorra"})
    with pytest.raises(ValueError, match=r"finetune=lora has no option rnk \(its options: rank, alpha"):
        normalize_finetune({"mode": "lora", "rnk": 4})


def test_bad_targets_and_blocks_name_what_exists(parts):
    with pytest.raises(ValueError) as err:
        make(parts, finetune={"mode": "lora", "target_modules": ["to_q", "to_qkv"]})
    message = str(err.value)
    assert "'to_qkv' matches no Linear/Conv2d layer" in message and "to_out.0" in message and "proj_in" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match=r"'upblocks' is not a module of the UNet; available: .*up_blocks\.0-3"):
        make(parts, finetune={"mode": "partial", "train_blocks": ["upblocks"]})
    with pytest.raises(ValueError, match="noise-prediction head"):
        make(parts, finetune={"mode": "partial", "train_blocks": ["conv_out"]})
    with pytest.raises(ValueError, match="train_unet=false contradicts finetune=lora"):
        make(parts, finetune="lora", train_unet=False)


def test_adapter_mismatch_is_one_line_before_any_weight_is_touched(parts):
    lora, plain = make(parts, finetune="lora"), make(parts)
    assert has_adapters(lora) and not has_adapters(plain)
    for source, target, needle in ((lora, plain, "holds LoRA adapters"), (plain, lora, "holds no LoRA adapters")):
        state = {k: torch.zeros_like(v) for k, v in source.state_dict().items()}
        before = {k: v.clone() for k, v in target.state_dict().items()}
        with pytest.raises(CheckpointError) as err:
            _load_weights(target, state, "x.ckpt")
        assert needle in str(err.value) and "'x.ckpt'" in str(err.value) and "\n" not in str(err.value)
        assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
        with pytest.raises(AdapterMismatchError):
            check_adapters(state, target, "x.ckpt")


# ------------------------------------------------------------------------------ train, resume, evaluate ...
def overrides(mode: str, nyu_root, tiny_sd_dir, out) -> list[str]:
    """Depth, 3 steps (of 4 per epoch), a last.ckpt after every step."""
    return [
        *tiny_task("depth", nyu_root, tiny_sd_dir, out),
        f"finetune={mode}",
        "trainer=cpu",
        "data.batch_size=2",
        f"paths.output_dir={out}",
        "trainer.max_steps=3",
        "trainer.limit_val_batches=1",
        "callbacks.last_checkpoint.every_n_train_steps=1",
        "~callbacks.prediction_panels",
        "test=false",
    ]


class Interrupted(Exception):
    pass


class InterruptAfter(Callback):
    """Crash a fit after ``steps`` optimizer steps, once the last.ckpt of that step is written (as a killed job:
    no end-of-fit validation or checkpoint; its schedule still planned for max_steps)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step >= self.steps:
            raise Interrupted


def fit(args: list[str], ckpt_path=None, stop_after: int | None = None) -> dict:
    from vpd_lightning.train import build

    objects = build(make_cfg(args))
    if stop_after is not None:
        objects["trainer"].callbacks.append(InterruptAfter(stop_after))
    objects["start"] = {n: p.detach().clone() for n, p in objects["model"].named_parameters()}
    try:
        objects["trainer"].fit(objects["model"], datamodule=objects["datamodule"], ckpt_path=ckpt_path)
    except Interrupted:
        assert stop_after is not None
    return objects


@pytest.fixture(scope="module")
def runs(tmp_path_factory, nyu_root, tiny_sd_dir):
    """Per mode: interrupted after 2 of 3 steps, then resumed from its last.ckpt; lora also uninterrupted."""
    out = {}
    for mode in MODES:
        tmp = tmp_path_factory.mktemp(f"ft-{mode}")
        first = fit(overrides(mode, nyu_root, tiny_sd_dir, tmp / "a"), stop_after=2)
        ckpt = tmp / "a" / "checkpoints" / "last.ckpt"
        first["ckpt"] = ckpt.rename(ckpt.with_name("step2.ckpt"))
        resumed = fit(overrides(mode, nyu_root, tiny_sd_dir, tmp / "b"), ckpt_path=str(first["ckpt"]))
        out[mode] = {"first": first, "resumed": resumed}
        if mode == "lora":
            out[mode]["straight"] = fit(overrides(mode, nyu_root, tiny_sd_dir, tmp / "c"))
    return out


@pytest.mark.parametrize("mode", MODES)
def test_mode_trains_the_right_parameters(mode, runs, tiny_sd_dir):
    first = runs[mode]["first"]
    model, start = first["model"], first["start"]
    assert first["trainer"].global_step == 2
    reference = load_unet(tiny_sd_dir).state_dict()
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    # Depth's prompt is one token: the cross-attention softmax over one key is identically 1, so attn2's query
    # path (the norm before it, to_q and to_q's adapters) has no gradient; 1-D ones and lora_B stay unchanged.
    no_gradient = re.compile(r"transformer_blocks\.\d+\.(norm2\.|attn2\.to_q\.)")
    for name, param in model.named_parameters():
        if name in trains:
            assert not torch.equal(param, start[name]) or no_gradient.search(name), f"{name} did not train"
            continue
        assert torch.equal(param, start[name]), name  # frozen: bit-identical after the steps
        key = name.removeprefix("backbone.unet.").replace(".base_layer.", ".")
        if name.startswith("backbone.unet."):  # ... and still the pretrained weights
            assert torch.equal(param, reference[key]), name
    unet = {n.removeprefix("backbone.unet.") for n in trains if n.startswith("backbone.unet.")}
    if mode == "full":  # everything but the never-run head (conv_norm_out, conv_out: weight and bias)
        assert len(unet) == len(reference) - 4
    elif mode == "lora":
        assert unet and all(".lora_A." in n or ".lora_B." in n for n in unet)
    elif mode == "partial":
        assert unet and all(n.startswith("up_blocks.") for n in unet)
    else:
        assert not unet
    assert not any(n.startswith("backbone.vae.") for n in trains)
    assert {"text_adapter.gamma", "text_adapter.fc.0.weight"} <= trains  # the adapter trains in every mode
    assert any(n.startswith("head.") for n in trains)
    # the optimizer holds exactly what trains, the UNet part (adapters included) at lr x unet_lr_mult
    groups = first["trainer"].optimizers[0].param_groups
    assert sum(len(g["params"]) for g in groups) == len(trains)
    in_unet = {id(p) for n, p in model.named_parameters() if n.startswith("backbone.unet.") and p.requires_grad}
    scales = {g["lr_scale"] for g in groups for p in g["params"] if id(p) in in_unet}
    assert scales == ({model.unet_lr_mult} if unet else set())


@pytest.mark.parametrize("mode", MODES)
def test_mode_resumes(mode, runs):
    first, resumed = runs[mode]["first"], runs[mode]["resumed"]
    assert resumed["trainer"].global_step == 3
    assert has_adapters(resumed["model"]) == (mode == "lora")
    stored = torch.load(first["ckpt"], map_location="cpu", weights_only=False)
    assert stored["vpd_config"]["backbone"]["finetune"]["mode"] == mode
    assert has_adapters(stored["state_dict"]) == (mode == "lora")  # the checkpoint stores the adapters
    if mode == "lora":  # resumed exactly: the same weights as the uninterrupted run
        straight = runs[mode]["straight"]["model"].state_dict()
        assert all(torch.equal(v, straight[k]) for k, v in resumed["model"].state_dict().items())


@pytest.mark.parametrize("mode", ["lora", "frozen"])
def test_evaluate_takes_the_checkpoints_mode(mode, runs, tmp_path, nyu_root, tiny_sd_dir):
    from vpd_lightning.evaluate import evaluate

    args = [a for a in overrides("full", nyu_root, tiny_sd_dir, tmp_path) if not a.startswith("finetune=")]
    metrics = evaluate(make_cfg([*args, f"ckpt_path={runs[mode]['first']['ckpt']}"], "evaluate"))
    assert np.isfinite(metrics["test/rmse"])
    if mode == "lora":  # an explicit mode that does not fit: the one-line error, before loading
        with pytest.raises(ValueError, match="holds LoRA adapters but the model was built without them"):
            evaluate(make_cfg([*args, "finetune=full", f"ckpt_path={runs[mode]['first']['ckpt']}"], "evaluate"))


@pytest.mark.parametrize("mode", MODES)
def test_mode_predicts_and_exports(mode, runs, tmp_path):
    from vpd_lightning.predict import Predictor

    ckpt = runs[mode]["first"]["ckpt"]
    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    depth = Predictor.from_pretrained(ckpt)(image)
    assert depth.shape == (48, 64) and np.isfinite(depth).all()
    folder = export_checkpoint(make_cfg([f"ckpt_path={ckpt}", f"output={tmp_path / 'export'}"], "predict"))
    model = load_exported(folder)
    assert model.vpd_config["backbone"]["finetune"]["mode"] == mode
    assert not has_adapters(model)  # merged (or none to merge)
    assert Predictor(model)(image).shape == (48, 64)
    if mode != "lora":
        assert np.abs(Predictor(model)(image) - depth).max() < 1e-6  # as test_export: the same weights


def test_lora_export_merged_or_separate(runs, tmp_path):
    from vpd_lightning.predict import Predictor

    ckpt = runs["lora"]["first"]["ckpt"]
    model = load_model(ckpt)
    image = (np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8)
    depth = Predictor(model)(image)
    merged = export_checkpoint(make_cfg([f"ckpt_path={ckpt}", f"output={tmp_path / 'm'}"], "predict"))
    separate = export_checkpoint(
        make_cfg([f"ckpt_path={ckpt}", f"output={tmp_path / 's'}", "merge_adapters=false"], "predict")
    )
    kept = load_exported(separate)
    assert has_adapters(kept) and not kept.vpd_config["backbone"]["finetune"]["merged"]
    assert np.array_equal(Predictor(kept)(image), depth)
    plain = load_exported(merged)
    assert plain.vpd_config["backbone"]["finetune"]["merged"] and "adapters added" in (merged / "README.md").read_text()
    # merged vs adapted: float32 rounding only (see test_merged_adapters_equal_the_adapted_model)
    assert np.abs(Predictor(plain)(image) - depth).max() <= 1e-4 * np.abs(depth).max()
    assert has_adapters(model)  # exporting did not merge the loaded model itself


# partial under DDP: only with `make test-full` (the default suite keeps lora, the mode with new parameters)
@pytest.mark.slow  # two DDP processes: 19 s (DDP itself is in the default suite: tests/test_distributed.py)
@pytest.mark.parametrize("mode", ["lora", "partial"])
def test_mode_trains_under_ddp(mode, nyu_root, tiny_sd_dir, tmp_path):
    """2 CPU processes (gloo, find_unused_parameters off): DDP must see a gradient for every trainable parameter
    (peft's adapters, the partially trained UNet) and none for the frozen ones."""
    args = [a for a in overrides(mode, nyu_root, tiny_sd_dir, tmp_path) if not a.startswith("trainer=")]
    result = run_train([*args, "trainer=ddp_cpu", "trainer.max_steps=2", f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 2 and has_adapters(state["state_dict"]) == (mode == "lora")
