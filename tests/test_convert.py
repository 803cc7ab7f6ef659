"""Conversion of VPD's original task checkpoints into Lightning checkpoints (``vpd_lightning.convert``).

Original-layout checkpoints are made here from tiny framework models by a small diffusers -> ldm inverse
converter (UNet and VAE), with each task's original prefixes and extras (``module.``, no ``out.*`` for depth,
``sd_model.*`` buffers for segmentation, ``args`` / ``meta`` objects next to the weights). Converting them back
into a freshly initialised model must give the source model's outputs exactly.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import types
from pathlib import Path

import pytest
import torch
from script_loader import load_script

from vpd_lightning.backbone import DiffusionBackbone, load_text_encoder
from vpd_lightning.convert import (
    DDPM_BUFFERS,
    ConversionError,
    convert_checkpoint,
    convert_vpd_state_dict,
    detect_task,
    load_original_state_dict,
)
from vpd_lightning.heads import FPN, FPNHead, SimpleDecoding, VPDDepthHead
from vpd_lightning.tasks import DepthEstimationTask, ReferringSegmentationTask, SemanticSegmentationTask

REPO = Path(__file__).resolve().parents[1]
OPTIMIZER = functools.partial(torch.optim.AdamW, lr=1e-3)

from ldm_layout import unet_to_ldm, vae_to_ldm  # noqa: E402  (tests/ldm_layout.py)


def to_original(model, unet_prefix: str, vae_prefix: str, renames: dict[str, str], drop_out: bool = False) -> dict:
    """An original-layout state dict of ``model``: ``renames`` maps framework prefixes to original ones."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {}
    unet = {k[len("backbone.unet.") :]: v for k, v in sd.items() if k.startswith("backbone.unet.")}
    for k, v in unet_to_ldm(unet, model.backbone.unet.config).items():
        if not (drop_out and k.startswith("out.")):
            out[unet_prefix + k] = v
    vae = {k[len("backbone.vae.") :]: v for k, v in sd.items() if k.startswith("backbone.vae.")}
    out.update({vae_prefix + k: v for k, v in vae_to_ldm(vae).items()})
    for key, value in sd.items():
        for new, old in renames.items():
            if key == new or (new.endswith(".") and key.startswith(new)):
                out[old + key[len(new) :]] = value
                break
    return out


def original_depth(model) -> dict:
    renames = {
        "text_adapter.fc.": "encoder.text_adapter.fc.",
        "text_adapter.gamma": "encoder.gamma",
        "class_embeddings": "encoder.class_embeddings",
        "head.layer1.": "encoder.layer1.",
        "head.layer2.": "encoder.layer2.",
        "head.out_layer.": "encoder.out_layer.",
        "head.decoder.": "decoder.",
        "head.last_layer_depth.": "last_layer_depth.",
    }
    return to_original(model, "encoder.unet.unet.diffusion_model.", "encoder.encoder_vq.", renames, drop_out=True)


def original_segmentation(model) -> dict:
    renames = {
        "text_adapter.fc.": "text_adapter.fc.",
        "text_adapter.gamma": "gamma",
        "class_embeddings": "class_embeddings",
        "neck.": "neck.",
        "head.": "decode_head.",
    }
    out = to_original(model, "unet.unet.diffusion_model.", "encoder_vq.", renames)
    out.update({f"sd_model.{name}": torch.rand(1000, dtype=torch.float64) for name in DDPM_BUFFERS})
    return out


def original_referring(model) -> dict:
    renames = {"text_adapter.fc.": "text_adapter.fc.", "text_adapter.gamma": "gamma", "head.": "classifier."}
    return to_original(model, "unet.unet.diffusion_model.", "encoder_vq.", renames)


# --------------------------------------------------------------------------------------------- tiny models
def depth_model(sd_dir, seed: int):
    torch.manual_seed(seed)
    backbone = DiffusionBackbone.from_pretrained(sd_dir, attention="none")
    head = functools.partial(VPDDepthHead, fusion_channels=32, head_channels=16)
    return DepthEstimationTask(backbone, head, torch.randn(27, 32), OPTIMIZER).eval()


def segmentation_model(sd_dir, seed: int, num_classes: int = 6):
    torch.manual_seed(seed)
    backbone = DiffusionBackbone.from_pretrained(sd_dir)
    return SemanticSegmentationTask(
        backbone,
        functools.partial(FPN, out_channels=16),
        functools.partial(FPNHead, channels=16),
        torch.randn(num_classes, 32),
        optimizer=OPTIMIZER,
    ).eval()


def referring_model(sd_dir, seed: int):
    torch.manual_seed(seed)
    backbone = DiffusionBackbone.from_pretrained(sd_dir)
    return ReferringSegmentationTask(
        backbone, SimpleDecoding, load_text_encoder(sd_dir), optimizer=OPTIMIZER, max_tokens=8
    ).eval()


def perturb(model, seed: int) -> None:
    """Move every trained tensor (UNet and VAE included) away from the tiny SD weights a fresh model loads."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if name.startswith("text_encoder.") or name == "class_weights" or not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("text_adapter.gamma"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
            else:
                t.add_(torch.randn(t.shape, generator=g) * (0.1 * t.float().std(correction=0) + 0.02))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def depth_source(tiny_sd_dir):
    model = depth_model(tiny_sd_dir, seed=1)
    perturb(model, seed=11)
    return model


@pytest.fixture(scope="module")
def depth_original(depth_source):
    return original_depth(depth_source)


@pytest.fixture(scope="module")
def depth_input():
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 64, 64, generator=g), torch.tensor([5])


# ------------------------------------------------------------------------------------------ round trips
def test_depth_checkpoint_round_trip(tiny_sd_dir, depth_source, depth_original, depth_input, tmp_path):
    """DDP ``module.`` prefix, ``{'model', 'args'}`` file, no UNet ``out.*``: same depth as the source model."""
    src = tmp_path / "vpd_depth_480x480.pth"
    torch.save(
        {"model": {"module." + k: v for k, v in depth_original.items()}, "args": argparse.Namespace(max_depth=10.0)},
        src,
    )
    target = depth_model(tiny_sd_dir, seed=2)
    with torch.no_grad():
        expected = depth_source(*depth_input)
        assert max_diff(target(*depth_input), expected) > 1e-3  # a different model before loading
    dst = tmp_path / "out" / "depth.ckpt"
    report = convert_checkpoint(src, dst, target)

    assert report.task == "depth" and report.ok and not report.dropped
    kept = dict(report.kept_from_target)
    assert set(kept) == {f"backbone.unet.{m}.{p}" for m in ("conv_norm_out", "conv_out") for p in ("weight", "bias")}
    assert all("kept from the target (absent in source)" in reason for reason in kept.values())
    assert ("encoder.gamma", "text_adapter.gamma") in report.mapped
    assert ("encoder.unet.unet.diffusion_model.input_blocks.1.0.in_layers.0.weight",
            "backbone.unet.down_blocks.0.resnets.0.norm1.weight") in report.mapped  # fmt: skip
    assert len(report.mapped) + len(kept) == len(target.state_dict())
    assert "conv_out" in report.summary() and "module." in " ".join(report.notes)

    checkpoint = torch.load(dst, weights_only=True)  # plain contents: loadable without trusting pickles
    assert checkpoint["pytorch-lightning_version"] and checkpoint["hyper_parameters"]["max_depth"] == 10.0
    assert checkpoint["epoch"] == 0 and checkpoint["global_step"] == 0
    target.load_state_dict(torch.load(dst, weights_only=False)["state_dict"], strict=True)
    with torch.no_grad():
        assert max_diff(target(*depth_input), expected) < 1e-5
    assert list(tmp_path.joinpath("out").iterdir()) == [dst]  # atomic write left no temporary file

    # The Lightning path: trainer.test restores the converted weights into yet another fresh model.
    from lightning.pytorch import Trainer

    fresh = depth_model(tiny_sd_dir, seed=3)
    batch = {
        "image": torch.rand(1, 3, 64, 96),
        "depth": torch.rand(1, 1, 64, 96) * 5 + 1,
        "class_id": torch.tensor([5]),
    }
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    loader = torch.utils.data.DataLoader([batch], batch_size=None)
    trainer.test(fresh, dataloaders=loader, ckpt_path=str(dst), weights_only=True, verbose=False)
    for key, value in target.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_segmentation_mmcv_checkpoint_round_trip(tiny_sd_dir, tmp_path):
    """mmcv ``{'meta', 'state_dict', 'optimizer'}`` with an unimportable class in meta; DDPM buffers dropped."""
    source = segmentation_model(tiny_sd_dir, seed=1)
    perturb(source, seed=12)
    original = original_segmentation(source)
    original["encoder_vq.decoder.conv_in.weight"] = torch.randn(32, 4, 3, 3)  # a VAE decoder left in

    fake = types.ModuleType("mmcv_stub_for_test")  # pickled under a module that is gone when loading
    config_dict = type("ConfigDict", (dict,), {"__module__": "mmcv_stub_for_test"})
    fake.ConfigDict = config_dict
    sys.modules["mmcv_stub_for_test"] = fake
    src = tmp_path / "vpd_seg.pth"
    try:
        meta = {"CLASSES": tuple("abcdef"), "config": config_dict(model={"type": "VPDSeg"})}
        torch.save({"meta": meta, "state_dict": original, "optimizer": {"state": {}, "param_groups": []}}, src)
    finally:
        del sys.modules["mmcv_stub_for_test"]

    state_dict = load_original_state_dict(src)
    assert detect_task(state_dict) == "segmentation"
    target = segmentation_model(tiny_sd_dir, seed=2)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = source(image)
        assert max_diff(target(image), expected) > 1e-3
    converted, report = convert_vpd_state_dict(state_dict, target)
    target.load_state_dict(converted, strict=True)
    with torch.no_grad():
        assert max_diff(target(image), expected) < 1e-5

    dropped = dict(report.dropped)
    assert {f"sd_model.{name}" for name in DDPM_BUFFERS} <= set(dropped)
    assert "encoder_vq.decoder.conv_in.weight" in dropped and len(dropped) == len(DDPM_BUFFERS) + 1
    assert report.kept_from_target == [] and report.ok
    assert ("unet.unet.diffusion_model.out.2.weight", "backbone.unet.conv_out.weight") in report.mapped
    assert ("decode_head.conv_seg.weight", "head.conv_seg.weight") in report.mapped
    assert "sd_model.betas" in report.summary()


def test_referring_checkpoint_round_trip(tiny_sd_dir, tmp_path):
    """``{'model', 'optimizer', 'epoch', 'args'}``; the CLIP text encoder is kept from the target."""
    source = referring_model(tiny_sd_dir, seed=1)
    perturb(source, seed=13)
    src = tmp_path / "vpd_ref.pth"
    torch.save({"model": original_referring(source), "epoch": 39, "args": argparse.Namespace(lr=5e-5)}, src)
    target = referring_model(tiny_sd_dir, seed=2)
    g = torch.Generator().manual_seed(0)
    image, input_ids = torch.rand(2, 3, 64, 64, generator=g), torch.randint(0, 500, (2, 8), generator=g)
    with torch.no_grad():
        expected = source(image, input_ids)
        assert max_diff(target(image, input_ids), expected) > 1e-3
    dst = tmp_path / "ref.ckpt"
    report = convert_checkpoint(src, dst, target, task="referring")
    target.load_state_dict(torch.load(dst, weights_only=False)["state_dict"], strict=True)
    with torch.no_grad():
        assert max_diff(target(image, input_ids), expected) < 1e-5
    kept = dict(report.kept_from_target)
    assert "class_weights" in kept and "text_encoder.final_layer_norm.weight" in kept
    assert all(k == "class_weights" or k.startswith("text_encoder.") for k in kept)
    assert ("classifier.conv1_4.weight", "head.conv1_4.weight") in report.mapped and report.ok


# --------------------------------------------------------------------------------------------- failures
def test_unknown_keys_are_errors_named(tiny_sd_dir, depth_original):
    target = depth_model(tiny_sd_dir, seed=4)
    odd = "encoder.unet.unet.diffusion_model.input_blocks.1.7.weight"  # in the UNet, but nothing diffusers knows
    bad = {**depth_original, "encoder.mystery.weight": torch.zeros(3), odd: torch.zeros(3)}
    with pytest.raises(ValueError, match=re.escape("encoder.mystery.weight")) as info:
        convert_vpd_state_dict(bad, target)
    assert odd in str(info.value) and isinstance(info.value, ConversionError)
    converted, report = convert_vpd_state_dict(bad, target, allow_unexpected=True)
    assert sorted(report.unexpected) == sorted(["encoder.mystery.weight", odd])
    target.load_state_dict(converted, strict=True)


def test_missing_keys_are_errors_named(tiny_sd_dir, depth_original):
    target = depth_model(tiny_sd_dir, seed=4)
    gone = {k: v for k, v in depth_original.items() if k != "decoder.deconv_layers.0.weight"}
    with pytest.raises(ValueError, match=re.escape("head.decoder.deconv_layers.0.weight")):
        convert_vpd_state_dict(gone, target)
    gone = {
        k: v
        for k, v in depth_original.items()
        if k != "encoder.unet.unet.diffusion_model.input_blocks.1.1.proj_in.weight"
    }
    with pytest.raises(ValueError, match=re.escape("backbone.unet.down_blocks.0.attentions.0.proj_in.weight")):
        convert_vpd_state_dict(gone, target)
    converted, report = convert_vpd_state_dict(gone, target, allow_missing=True)
    assert [k for k, _ in report.kept_from_target if "proj_in" in k] == [
        "backbone.unet.down_blocks.0.attentions.0.proj_in.weight"
    ]
    target.load_state_dict(converted, strict=True)


def test_shape_mismatch_and_wrong_task(tiny_sd_dir, depth_original):
    target = depth_model(tiny_sd_dir, seed=4)
    with pytest.raises(ValueError, match=r"encoder\.class_embeddings \[150, 32\] -> class_embeddings \[27, 32\]"):
        convert_vpd_state_dict({**depth_original, "encoder.class_embeddings": torch.randn(150, 32)}, target)
    with pytest.raises(ValueError, match="task='segmentation'"):
        convert_vpd_state_dict(depth_original, target, task="segmentation")
    seg = segmentation_model(tiny_sd_dir, seed=4)
    with pytest.raises(ValueError, match="VPD depth checkpoint.*wrong checkpoint"):
        convert_vpd_state_dict(depth_original, seg)
    with pytest.raises(ValueError, match="not an original VPD checkpoint"):
        detect_task({"backbone.unet.conv_in.weight": torch.zeros(1)})


def test_unreadable_files(tiny_sd_dir, tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02 this is not a checkpoint")
    with pytest.raises(ValueError, match=re.escape(str(corrupt))):
        load_original_state_dict(corrupt)
    with pytest.raises(FileNotFoundError):
        load_original_state_dict(tmp_path / "absent.pth")
    no_weights = tmp_path / "no_weights.pth"
    torch.save({"epoch": 3, "args": argparse.Namespace()}, no_weights)
    with pytest.raises(ValueError, match="holds no state dict"):
        load_original_state_dict(no_weights)
    dst = tmp_path / "never.ckpt"
    with pytest.raises(ValueError, match=re.escape(str(corrupt))):
        convert_checkpoint(corrupt, dst, torch.nn.Linear(1, 1))
    assert not dst.exists()


# ------------------------------------------------------------------------------------------------- CLI
def _load_script():
    return load_script("convert_vpd_checkpoint")


def test_cli_builds_the_configured_model_and_converts(tiny_sd_dir, tmp_path, capsys):
    script = _load_script()
    overrides = [
        f"sd_path={tiny_sd_dir}",
        "model.head.fusion_channels=32",
        "model.head.head_channels=16",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    embeddings = tmp_path / "emb.pth"
    torch.save(torch.randn(27, 32), embeddings)
    source = script.build_model("depth", overrides, tmp_path / "o", embeddings_file=embeddings).eval()
    perturb(source, seed=14)
    src, dst = tmp_path / "vpd_depth.pth", tmp_path / "depth.ckpt"
    torch.save({"model": original_depth(source)}, src)

    assert script.main(["--src", str(src), "--dst", str(dst), "--task", "depth", *overrides]) == 0
    out = capsys.readouterr().out
    assert "mapped:" in out and "backbone.unet.conv_out.weight" in out and str(dst) in out
    converted = torch.load(dst, weights_only=True)["state_dict"]
    for key, value in source.state_dict().items():
        if not key.startswith(("backbone.unet.conv_out.", "backbone.unet.conv_norm_out.")):
            assert torch.equal(converted[key], value), key

    # A checkpoint of another task, or an unreadable file: exit status 1, nothing written.
    assert script.main(["--src", str(src), "--dst", str(tmp_path / "x.ckpt"), "--task", "segmentation"]) == 1
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"garbage")
    assert script.main(["--src", str(corrupt), "--dst", str(tmp_path / "x.ckpt")]) == 1
    err = capsys.readouterr().err
    assert "not a segmentation one" in err and str(corrupt) in err and not (tmp_path / "x.ckpt").exists()
