"""Backbone families (SD-1.5, SD 2.x, SDXL): shipped configurations, taps, SDXL's added conditioning, the SD-2
tokenizer against the real CLIP vocabulary, refusals, and one training step + one prediction per task and family on
tiny topologies saved in the real diffusers layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_predict import task_overrides
from tiny_config import make_cfg

from vpd_lightning.backbone import DiffusionBackbone, load_text_encoder, load_tokenizer
from vpd_lightning.backbone.families import FAMILIES, config_dir, family_of_unet
from vpd_lightning.backbone.loading import _shipped_tokenizer
from vpd_lightning.backbone.text import DualTextEncoder, repad

#: parameters of each family's UNet (the published sizes: SD 2.x 865.9 M, SDXL 2.567 B)
UNET_PARAMS = {"sd15": 859_520_964, "sd21": 865_910_724, "sd21_base": 865_910_724, "sdxl": 2_567_463_684}
#: expected tap module names per topology, by level (latent stride 1 first)
SD1_TAPS = {0: "up_blocks.3", 1: "up_blocks.2.attentions.1", 2: "up_blocks.1.attentions.1", 3: "up_blocks.0.resnets.1"}
TAPS = {
    "sd15": SD1_TAPS,
    "sd21": SD1_TAPS,
    "sdxl": {0: "up_blocks.2", 1: "up_blocks.1.attentions.1", 2: "up_blocks.0.attentions.1"},
}


def _config(family: str, component: str) -> dict:
    return json.loads((config_dir(family) / component / "config.json").read_text())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_shipped_configs_full_size_on_meta(family):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet_cfg = _config(family, "unet")
    assert family_of_unet(unet_cfg) == family
    widths = [_config(family, name)["hidden_size"] for name in FAMILIES[family].text_encoders]
    assert sum(widths) == unet_cfg["cross_attention_dim"] == FAMILIES[family].context_dim
    assert unet_cfg["sample_size"] * 8 == FAMILIES[family].native_size
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_cfg)
        backbone = DiffusionBackbone(unet, AutoencoderKL.from_config(_config(family, "vae")), family=family)
    assert sum(p.numel() for p in unet.parameters()) == UNET_PARAMS[family]
    assert backbone.tap_names == TAPS["sd21" if family == "sd21_base" else family]
    # A32 with 150 class tokens: maps at levels 1 and 2
    expected = [320, 790, 1430] + ([1280] if family != "sdxl" else [])
    assert backbone.out_channels(150) == expected
    if family == "sdxl":  # pooled text embedding (bigG projection, 1280) + 6 time ids x 256
        pooled = _config("sdxl", "text_encoder_2")["projection_dim"]
        assert unet_cfg["projection_class_embeddings_input_dim"] == pooled + 6 * 256


def test_sd2_tokenizer_ids_and_padding_with_the_real_vocabulary():
    # the shipped configurations + CLIP's BPE vocabulary: the real tokenizers of each family
    sd15 = _shipped_tokenizer(config_dir("sd15") / "tokenizer")
    sd2 = _shipped_tokenizer(config_dir("sd21") / "tokenizer")
    xl_1 = _shipped_tokenizer(config_dir("sdxl") / "tokenizer")
    xl_2 = _shipped_tokenizer(config_dir("sdxl") / "tokenizer_2")
    words = [49406, 320, 1125, 539, 320, 2368, 49407]  # <start> a photo of a cat <end> (CLIP's ids)
    for tokenizer, pad in ((sd15, 49407), (sd2, 0), (xl_1, 49407), (xl_2, 0)):
        assert len(tokenizer) == 49408 and tokenizer.pad_token_id == pad
        out = tokenizer(["a photo of a cat"], padding="max_length", max_length=10, truncation=True)
        assert out.input_ids[0] == words + [pad] * 3
        assert out.attention_mask[0] == [1] * 7 + [0] * 3
    # SD-2 pads with "!" (id 0): the character itself is the pad token, as in the released tokenizer files
    assert sd2.convert_ids_to_tokens([0]) == ["!"]
    # SDXL's second encoder gets the first tokenizer's ids re-padded: exactly tokenizer_2's ids
    ids = xl_1(["a photo of a cat", "a"], padding="max_length", max_length=10, return_tensors="pt").input_ids
    expected = xl_2(["a photo of a cat", "a"], padding="max_length", max_length=10, return_tensors="pt").input_ids
    assert torch.equal(repad(ids, 49407, 0), expected)


@pytest.mark.parametrize("family", ["sd21", "sdxl"])
def test_taps_are_the_named_up_block_outputs(family, tiny_family_dir):
    """Features = the outputs of the named modules in a stock diffusers forward (SDXL: with the added
    conditioning the backbone documents: zero pooled embedding, time ids (H, W, 0, 0, H, W))."""
    root = tiny_family_dir(family)
    backbone = DiffusionBackbone.from_pretrained(str(root), family=family, attention="none").eval()
    assert backbone.tap_names == TAPS[family] and backbone.family == family
    image = torch.rand(2, 3, 64, 48) * 2 - 1
    context = torch.randn(2, 5, backbone.context_dim)
    with torch.no_grad():
        features = backbone(image, context)
        backbone.remove()
        outputs = {}
        hooks = [
            backbone.unet.get_submodule(name).register_forward_hook(
                lambda m, a, o, level=level: outputs.__setitem__(level, o[0] if isinstance(o, tuple) else o)
            )
            for level, name in TAPS[family].items()
        ]
        added = None
        if family == "sdxl":
            pooled = _config_dir_width(root)
            added = {"text_embeds": torch.zeros(2, pooled), "time_ids": torch.tensor([[64.0, 48, 0, 0, 64, 48]] * 2)}
        backbone.unet(backbone.encode(image), 1, context, added_cond_kwargs=added)
        for hook in hooks:
            hook.remove()
    assert len(features) == len(TAPS[family])
    for level, feature in enumerate(features):
        assert torch.equal(feature, outputs[level]), level
    if family == "sdxl":  # the time ids are used: another image size changes the features of the same latent
        backbone.install()
        with torch.no_grad():
            other = backbone._unet_features(backbone.encode(image), context, image_size=(128, 96))
        assert other is None and not torch.equal(backbone._taps[1], features[1])


def _config_dir_width(root) -> int:
    cfg = json.loads((root / "unet" / "config.json").read_text())
    return cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]


def test_sdxl_text_side_is_both_penultimate_layers(tiny_family_dir):
    root = tiny_family_dir("sdxl")
    encoder = load_text_encoder(str(root), family="sdxl")
    assert isinstance(encoder, DualTextEncoder) and encoder.config.hidden_size == 80
    assert isinstance(load_text_encoder(str(root)), DualTextEncoder)  # text_encoder_2/ found without being told
    tokenizer = load_tokenizer(str(root), vocab_size=encoder.config.vocab_size)
    tokenizer_2 = load_tokenizer(str(root), "tokenizer_2", vocab_size=encoder.config.vocab_size)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id and tokenizer_2.pad_token_id == 0
    ids = tokenizer(["a red cup"], padding="max_length", max_length=12, return_tensors="pt").input_ids
    ids_2 = tokenizer_2(["a red cup"], padding="max_length", max_length=12, return_tensors="pt").input_ids
    with torch.no_grad():
        out = encoder(input_ids=ids)
        h1 = encoder.text_encoder(input_ids=ids, output_hidden_states=True).hidden_states[-2]
        h2 = encoder.text_encoder_2(input_ids=ids_2, output_hidden_states=True).hidden_states[-2]
    assert torch.equal(out.last_hidden_state, torch.cat([h1, h2], dim=-1))
    eos = int((ids[0] == tokenizer.eos_token_id).nonzero()[0])
    assert torch.equal(out.pooler_output[0], out.last_hidden_state[0, eos])


def test_wrong_family_and_context_width_are_refused(tiny_family_dir):
    from vpd_lightning.export import CheckpointError
    from vpd_lightning.heads import FPN, FPNHead
    from vpd_lightning.tasks import ReferringSegmentationTask, SemanticSegmentationTask

    with pytest.raises(ValueError, match=r"backbone.family=sd21 .* is a sdxl UNet"):
        DiffusionBackbone.from_pretrained(str(tiny_family_dir("sdxl")), family="sd21")
    with pytest.raises(ValueError, match=r"family=sdxl \(Stable Diffusion XL base 1.0\) but .* is a sd15 UNet"):
        DiffusionBackbone.from_pretrained(str(tiny_family_dir("sd15")), family="sdxl")
    with pytest.raises(ValueError, match=r"attention=a64 .* sdxl UNet has no cross-attention at level\(s\) \[0\]"):
        DiffusionBackbone.from_pretrained(str(tiny_family_dir("sdxl")), attention="a64")
    backbone = DiffusionBackbone.from_pretrained(str(tiny_family_dir("sd21")), family="sd21")
    optimizer = torch.optim.AdamW
    with pytest.raises(ValueError, match=r"\[num_classes, 48\] \(the sd21 UNet's context width\), got \[3, 32\]"):
        SemanticSegmentationTask(backbone, FPN, FPNHead, torch.zeros(3, 32), optimizer)
    sd15_encoder = load_text_encoder(str(tiny_family_dir("sd15")))
    with pytest.raises(ValueError, match="text encoder width 32 differs from the sd21 UNet's cross-attention width 48"):
        ReferringSegmentationTask(backbone, lambda in_channels: None, sd15_encoder, optimizer)
    task = SemanticSegmentationTask(backbone, FPN, FPNHead, torch.zeros(3, 48), optimizer)
    with pytest.raises(CheckpointError, match="holds a backbone=sdxl model, but this model is backbone=sd21"):
        task.on_load_checkpoint({"vpd_config": {"backbone": {"family": "sdxl"}}, "state_dict": {}})
    task.on_load_checkpoint({"vpd_config": {"backbone": {"family": "sd21_base"}}})  # same topology: a fine-tune


def test_a_checkpoint_of_another_family_is_refused_before_the_model_is_built(tmp_path, nyu_root):
    """`evaluate`/`train` with ckpt_path= read the family the checkpoint records first: another topology is refused
    naming both, before any weights are looked for (sd_path does not exist here); sd21 <-> sd21_base pass."""
    from vpd_lightning.checkpoint import check_run_checkpoint
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.export import CheckpointError

    path = tmp_path / "sdxl.ckpt"
    torch.save({"vpd_config": {"task": "depth", "backbone": {"family": "sdxl"}}, "state_dict": {}}, path)
    overrides = ["task=depth", f"data.root={nyu_root}", "sd_path=/nonexistent", f"ckpt_path={path}"]
    with pytest.raises(CheckpointError, match=r"sdxl.ckpt' holds a backbone=sdxl model, .* set up for backbone=sd21;"):
        evaluate(make_cfg([*overrides, "backbone=sd21"], "evaluate"))
    with pytest.raises(CheckpointError, match="holds a backbone=sdxl model, but this run is set up for backbone=sd15"):
        check_run_checkpoint(path, make_cfg(["task=depth"]))
    check_run_checkpoint(path, make_cfg(["task=depth", "backbone=sdxl"]))
    torch.save({"vpd_config": {"task": "depth", "backbone": {"family": "sd21"}}, "state_dict": {}}, path)
    check_run_checkpoint(path, make_cfg(["task=depth", "backbone=sd21_base"]))  # the same topology


def test_backbone_configs_compose(monkeypatch, tmp_path):
    for variable in ("VPD_SD_PATH", "VPD_SD21_PATH", "VPD_SD21_BASE_PATH", "VPD_SDXL_PATH"):
        monkeypatch.delenv(variable, raising=False)
    for family in FAMILIES:
        cfg = make_cfg([f"backbone={family}", "task=segmentation", "data.root=/nonexistent"])
        assert cfg.backbone.family == family and cfg.sd_path == FAMILIES[family].hub_id
        assert cfg.model.class_embeddings.family == family
    # tiny_<family>: the resolver writes the tiny folder of that topology once, loaded like real weights
    cfg = make_cfg(["backbone=tiny_sdxl", "task=depth", "data.root=/nonexistent", f"paths.cache_dir={tmp_path}"])
    assert cfg.backbone.family == "sdxl" and cfg.backbone.pretrained_model_name_or_path == str(tmp_path / "tiny-sdxl")
    assert (tmp_path / "tiny-sdxl" / "text_encoder_2" / "config.json").is_file()
    index = json.loads((tmp_path / "tiny-sdxl" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["tokenizer_2"] == ["transformers", "CLIPTokenizer"]


IMAGE = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


#: SD 2.x segmentation trains the 4-level heads SD-1.5's tests cover: in the full suite only (default stays fast)
CASES = [
    ("sd21", "depth"),
    pytest.param("sd21", "segmentation", marks=pytest.mark.slow),
    ("sd21", "referring"),
    ("sdxl", "depth"),
    ("sdxl", "segmentation"),
    ("sdxl", "referring"),
]


@pytest.mark.parametrize(("family", "task"), CASES)
def test_train_step_and_prediction(task, family, tiny_family_dir, nyu_root, ade_root, refer_root, tmp_path):
    from vpd_lightning.predict import Predictor
    from vpd_lightning.train import train

    root = {"depth": nyu_root, "segmentation": ade_root, "referring": refer_root}[task]
    overrides = [
        *task_overrides(task, root, tiny_family_dir(family), tmp_path),
        f"backbone={family}",
        "trainer.limit_val_batches=0",  # one optimisation step; prediction is checked below
    ]
    metrics, objects = train(make_cfg(overrides))
    assert objects["trainer"].global_step == 1 and np.isfinite(float(metrics["train/loss"]))
    model = objects["model"]
    assert model.backbone.family == family and len(model.backbone.out_channels(1)) == (3 if family == "sdxl" else 4)
    checkpoint = tmp_path / "out" / "checkpoints" / "last.ckpt"
    predictor = Predictor.from_pretrained(checkpoint)
    assert predictor.model.vpd_config["backbone"]["family"] == family
    assert predictor.model.backbone.family == family
    result = predictor(IMAGE, sentence="the red cup") if task == "referring" else predictor(IMAGE)
    assert result.shape == IMAGE.shape[:2]
    if task == "depth":
        assert np.isfinite(result).all() and (result > 0).all() and (result < 10).all()


def test_memory_counts_per_family_on_meta():
    """``vpd_lightning.memory`` builds each family full size on the meta device: SDXL's referring model holds both
    frozen text encoders (CLIP ViT-L 123.1 M + OpenCLIP ViT-bigG 694.7 M) and the 2,567.5 M-parameter UNet."""
    from vpd_lightning.memory import build_sd15_model, count_training_bytes

    model = build_sd15_model(make_cfg(["backbone=sdxl", "task=referring"]))
    assert isinstance(model.text_encoder, DualTextEncoder) and next(model.parameters()).is_meta
    assert sum(p.numel() for p in model.text_encoder.parameters()) == 123_060_480 + 694_659_840
    assert sum(p.numel() for p in model.backbone.unet.parameters()) == UNET_PARAMS["sdxl"]
    count = count_training_bytes(model, "adamw")
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert count.trainable_params == sum(p.numel() for p in trainable)
    assert count.frozen_params >= 817_720_320  # the text encoders (and the VAE) are frozen
    # fp32 AdamW: 4 bytes of gradient and 8 of state per trainable element, plus a 4-byte step per tensor
    assert count.grad_bytes == 4 * count.trainable_params
    assert count.optimizer_bytes == 8 * count.trainable_params + 4 * len(trainable)


@pytest.fixture(scope="module")
def family_single_files(tiny_family_dir, tmp_path_factory):
    """The tiny SD 2.x and SDXL folders as original-layout single files (UNet, VAE, text encoders)."""
    from ldm_layout import clip_to_ldm, clip_to_open_clip, unet_to_ldm, vae_to_ldm
    from safetensors.torch import save_file

    from vpd_lightning.backbone import load_unet, load_vae

    files = {}
    for family in ("sd21", "sdxl"):
        root = tiny_family_dir(family)
        unet, vae = load_unet(root), load_vae(root)
        state = {"model.diffusion_model." + k: v for k, v in unet_to_ldm(unet.state_dict(), unet.config).items()}
        state.update({"first_stage_model." + k: v for k, v in vae_to_ldm(vae.state_dict()).items()})
        text = load_text_encoder(root, family=family)
        if family == "sd21":
            state.update(clip_to_open_clip(text.state_dict(), "cond_stage_model.model."))
        else:
            first = clip_to_ldm(text.text_encoder.state_dict())
            state.update({k.replace("cond_stage_model.", "conditioner.embedders.0."): v for k, v in first.items()})
            state.update(clip_to_open_clip(text.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
        path = tmp_path_factory.mktemp("single") / f"tiny-{family}.safetensors"
        save_file({k: v.contiguous().clone() for k, v in state.items()}, path)
        files[family] = path
    return files


@pytest.mark.parametrize("family", ["sd21", "sdxl"])
def test_single_file_checkpoints(family, family_single_files, tiny_family_dir):
    """An original single file loads through the same path as the folder, with identical weights; its tokenizer
    is the family's (SD 2.x: padded with "!", id 0) when no configuration folder is given."""
    from vpd_lightning.backbone.loading import single_file_family

    root, path = tiny_family_dir(family), family_single_files[family]
    assert single_file_family(path) == family  # from the text-encoder keys: picks the shipped configurations
    from_file = DiffusionBackbone.from_pretrained(str(path), family=family, single_file_config=str(root))
    from_folder = DiffusionBackbone.from_pretrained(str(root), family=family)
    for a, b in ((from_file.unet, from_folder.unet), (from_file.vae, from_folder.vae)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    text_file = load_text_encoder(str(path), family=family, single_file_config=str(root))
    text_folder = load_text_encoder(str(root), family=family)
    sa, sb = text_file.state_dict(), text_folder.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), family
    assert len(load_tokenizer(str(path), single_file_config=str(root))) == 514  # the folder's byte-level one
    shipped = load_tokenizer(str(path))
    assert len(shipped) == 49408 and shipped.pad_token_id == (0 if family == "sd21" else 49407)
    named = "sd21 / sd21_base" if family == "sd21" else "sdxl"
    with pytest.raises(ValueError, match=f"backbone.family=sd15 .* is a {named} UNet"):
        DiffusionBackbone.from_pretrained(str(path), family="sd15", single_file_config=str(root))
