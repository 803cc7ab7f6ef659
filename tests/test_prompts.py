"""Tests for the class-prompt embeddings (vpd_lightning.prompts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import vpd_lightning.backbone.loading as loading
from vpd_lightning.backbone import load_text_encoder, load_tokenizer
from vpd_lightning.backbone.tiny import save_tiny_stable_diffusion
from vpd_lightning.prompts import (
    IMAGENET_TEMPLATES,
    class_embeddings,
    default_cache_dir,
    encode_class_prompts,
    load_embeddings_file,
)

DIM = 32  # TINY_TEXT_CONFIG hidden_size
CLASSES = ["kitchen", "living_room", "bedroom"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tiny encoder gains nothing from threads; one thread keeps it fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny_sd") / "sd")


@pytest.fixture(scope="module")
def encoder(tiny_dir):
    return load_text_encoder(tiny_dir)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir, encoder):
    return load_tokenizer(tiny_dir, vocab_size=encoder.config.vocab_size)


@torch.no_grad()
def _manual(encoder, tokenizer, name: str, templates, max_length: int = 20) -> torch.Tensor:
    """Template-mean of the text encoder's pooler_output, computed here independently."""
    encoder.eval()
    texts = [template.format(name) for template in templates]
    tokens = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    assert tokens.input_ids.shape == (len(texts), max_length)
    return encoder(input_ids=tokens.input_ids).pooler_output.mean(0)


@pytest.fixture
def no_encoder_loading(monkeypatch):
    """Any attempt to load the text encoder or tokenizer fails."""

    def boom(*args, **kwargs):
        raise AssertionError("the text encoder / tokenizer must not be loaded")

    monkeypatch.setattr(loading, "load_text_encoder", boom)
    monkeypatch.setattr(loading, "load_tokenizer", boom)


# ----------------------------------------------------------------------------------------------- templates
def test_imagenet_templates():
    assert isinstance(IMAGENET_TEMPLATES, tuple)
    assert len(IMAGENET_TEMPLATES) == 80
    assert len(set(IMAGENET_TEMPLATES)) == 80
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    assert IMAGENET_TEMPLATES[0] == "a bad photo of a {}."
    assert IMAGENET_TEMPLATES[1] == "a photo of many {}."
    assert IMAGENET_TEMPLATES[-1] == "a tattoo of the {}."
    assert "itap of my {}." in IMAGENET_TEMPLATES


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VPD_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "prompts"
    monkeypatch.delenv("VPD_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "vpd_lightning" / "prompts"


# ----------------------------------------------------------------------------------------------- encoding
def test_encode_shape_and_manual_equivalence(encoder, tokenizer):
    emb = encode_class_prompts(encoder, tokenizer, CLASSES)
    assert emb.shape == (3, DIM) and emb.dtype == torch.float32
    expected = _manual(encoder, tokenizer, "kitchen", IMAGENET_TEMPLATES)
    torch.testing.assert_close(emb[0], expected, atol=1e-5, rtol=1e-5)
    expected = _manual(encoder, tokenizer, "living room", IMAGENET_TEMPLATES)
    torch.testing.assert_close(emb[1], expected, atol=1e-5, rtol=1e-5)
    # rows differ between classes, and are not the first template alone
    assert not torch.allclose(emb[0], emb[2], atol=1e-4)
    first_only = _manual(encoder, tokenizer, "kitchen", IMAGENET_TEMPLATES[:1])
    assert not torch.allclose(emb[0], first_only, atol=1e-4)


def test_encode_batching_does_not_change_result(encoder, tokenizer):
    full = encode_class_prompts(encoder, tokenizer, ["bedroom"])
    small = encode_class_prompts(encoder, tokenizer, ["bedroom"], batch_size=32)  # 32 + 32 + 16
    torch.testing.assert_close(full, small, atol=1e-5, rtol=1e-5)


def test_encode_max_length(encoder, tokenizer):
    templates = ["a photo of a {} in a video game."]
    emb = encode_class_prompts(encoder, tokenizer, ["kitchen"], templates, max_length=12)
    torch.testing.assert_close(emb[0], _manual(encoder, tokenizer, "kitchen", templates, 12), atol=1e-5, rtol=1e-5)
    longer = encode_class_prompts(encoder, tokenizer, ["kitchen"], templates, max_length=40)
    assert not torch.allclose(emb, longer, atol=1e-4)


def test_underscores_become_spaces(encoder, tokenizer):
    templates = ["a {}.", "a photo of the {}."]
    a = encode_class_prompts(encoder, tokenizer, ["living_room"], templates)
    b = encode_class_prompts(encoder, tokenizer, ["living room"], templates)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    raw = _manual(encoder, tokenizer, "living_room", templates)
    assert not torch.allclose(a[0], raw, atol=1e-4)  # the tokenizer does see '_' differently
    torch.testing.assert_close(a[0], _manual(encoder, tokenizer, "living room", templates), atol=1e-5, rtol=1e-5)


def test_single_template_string(encoder, tokenizer):
    one = encode_class_prompts(encoder, tokenizer, ["kitchen"], "a photo of a {}.")
    listed = encode_class_prompts(encoder, tokenizer, ["kitchen"], ["a photo of a {}."])
    torch.testing.assert_close(one, listed, atol=0, rtol=0)
    assert not torch.allclose(one, encode_class_prompts(encoder, tokenizer, ["kitchen"]), atol=1e-4)


@pytest.mark.parametrize("templates", ["a photo of a kitchen", ["a {}.", "no placeholder"], []])
def test_bad_templates(encoder, tokenizer, templates):
    with pytest.raises(ValueError, match=r"\{\}"):
        encode_class_prompts(encoder, tokenizer, ["kitchen"], templates)


def test_bad_template_class_embeddings(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="no placeholder"):
        class_embeddings(["kitchen"], tiny_dir, templates=["no placeholder"], cache_dir=tmp_path)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_empty_class_list(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="class_names is empty"):
        class_embeddings([], tiny_dir, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="empty"):
        class_embeddings((), embeddings_file=tmp_path / "x.pt")


# ----------------------------------------------------------------------------------------------- cache
@pytest.fixture(scope="module")
def cached(tiny_dir, tmp_path_factory):
    """One computed + cached embedding set: (cache_dir, tensor)."""
    cache = tmp_path_factory.mktemp("prompt_cache")
    emb = class_embeddings(CLASSES, tiny_dir, cache_dir=cache)
    return cache, emb


def test_class_embeddings_computes_and_caches(cached, encoder, tokenizer):
    cache, emb = cached
    assert emb.shape == (3, DIM)
    torch.testing.assert_close(emb, encode_class_prompts(encoder, tokenizer, CLASSES), atol=1e-5, rtol=1e-5)
    pts = sorted(cache.glob("*.pt"))
    jsons = sorted(cache.glob("*.json"))
    assert len(pts) == 1 and len(jsons) == 1
    assert pts[0].stem == jsons[0].stem and len(pts[0].stem) == 20
    assert not list(cache.glob("*.tmp*"))
    assert torch.equal(torch.load(pts[0], weights_only=True), emb)
    meta = json.loads(jsons[0].read_text())
    assert meta["classes"] == CLASSES
    assert meta["max_length"] == 20
    assert meta["templates"] == list(IMAGENET_TEMPLATES)
    assert meta["pooling"] == "pooler_output-mean"


def test_cache_hit_does_not_load_encoder(cached, tiny_dir, no_encoder_loading):
    cache, emb = cached
    again = class_embeddings(CLASSES, tiny_dir, cache_dir=cache)
    assert torch.equal(again, emb)
    assert torch.equal(class_embeddings(tuple(CLASSES), tiny_dir, cache_dir=cache, dim=DIM), emb)
    # a miss does try to load (so the patch above is effective)
    with pytest.raises(AssertionError, match="must not be loaded"):
        class_embeddings(CLASSES[:2], tiny_dir, cache_dir=cache)


def test_cache_key_changes(cached, tiny_dir, tmp_path):
    cache, emb = cached
    local = tmp_path / "cache"
    local.mkdir()
    for path in cache.iterdir():
        (local / path.name).write_bytes(path.read_bytes())
    base = {p.name for p in local.glob("*.pt")}
    assert len(base) == 1

    def new_files(**kwargs):
        before = {p.name for p in local.glob("*.pt")}
        out = class_embeddings(kwargs.pop("classes", CLASSES), tiny_dir, cache_dir=local, **kwargs)
        added = {p.name for p in local.glob("*.pt")} - before
        assert len(added) == 1, kwargs
        assert (local / next(iter(added))).with_suffix(".json").is_file()
        return out

    other_templates = new_files(templates=["a photo of a {}."])
    assert not torch.allclose(other_templates, emb, atol=1e-4)
    other_classes = new_files(classes=["bedroom", "kitchen"])
    torch.testing.assert_close(other_classes, emb[[2, 0]], atol=1e-5, rtol=1e-5)
    other_length = new_files(max_length=16)
    assert other_length.shape == (3, DIM)
    assert len(list(local.glob("*.pt"))) == 4
    # the same arguments again: no new file
    class_embeddings(CLASSES, tiny_dir, cache_dir=local, max_length=16)
    assert len(list(local.glob("*.pt"))) == 4


def test_dim_mismatch(cached, tiny_dir):
    cache, _ = cached
    with pytest.raises(ValueError, match="32-wide.*768"):
        class_embeddings(CLASSES, tiny_dir, cache_dir=cache, dim=768)


# ----------------------------------------------------------------------------------------------- files
def test_embeddings_file_tensor(tmp_path, no_encoder_loading):
    t = torch.randn(3, DIM)
    path = tmp_path / "nyu_class_embeddings.pth"
    torch.save(t, path)
    out = class_embeddings(CLASSES, embeddings_file=path, dim=DIM)
    assert out.dtype == torch.float32 and torch.equal(out, t)
    assert torch.equal(class_embeddings(CLASSES, embeddings_file=str(path)), t)


def test_embeddings_file_dict_and_dtype(tmp_path, no_encoder_loading):
    t = torch.randn(3, DIM, dtype=torch.float64)
    path = tmp_path / "emb.pt"
    torch.save({"class_embeddings": t, "other": torch.zeros(3, DIM)}, path)
    out = class_embeddings(CLASSES, embeddings_file=path)
    assert out.dtype == torch.float32 and torch.equal(out, t.float())
    single = tmp_path / "single.pt"
    torch.save({"whatever": t}, single)
    assert torch.equal(load_embeddings_file(single), t.float())


def test_embeddings_file_wrong_shape(tmp_path):
    path = tmp_path / "emb.pt"
    torch.save(torch.randn(4, DIM), path)
    with pytest.raises(ValueError) as err:
        class_embeddings(CLASSES, embeddings_file=path, dim=DIM)
    msg = str(err.value)
    assert str(path) in msg and "[4, 32]" in msg and "[3, 32]" in msg
    torch.save(torch.randn(3, 16), path)
    with pytest.raises(ValueError, match=r"\[3, 32\]"):
        class_embeddings(CLASSES, embeddings_file=path, dim=DIM)
    torch.save(torch.randn(3, DIM, 1), path)
    with pytest.raises(ValueError, match="one \\[num_classes, dim\\] tensor"):
        class_embeddings(CLASSES, embeddings_file=path)
    torch.save({"a": torch.randn(3, DIM), "b": torch.randn(3, DIM)}, path)
    with pytest.raises(ValueError, match="emb.pt"):
        class_embeddings(CLASSES, embeddings_file=path)


def test_embeddings_file_missing_or_unreadable(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        class_embeddings(CLASSES, embeddings_file=missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pt"):
        class_embeddings(CLASSES, embeddings_file=garbage)
