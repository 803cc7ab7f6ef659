"""Export to a self-contained folder and reload it offline, for the three tasks (tiny models, 1 training step)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_config import make_cfg

from vpd_lightning.export import (
    CheckpointError,
    WrongTaskError,
    _safetensors_dict,
    export_checkpoint,
    export_model,
    load_checkpoint,
    load_exported,
    load_model,
)
from vpd_lightning.predict import Predictor, predict_files

TASKS = ("depth", "segmentation", "referring")


@pytest.fixture(scope="module")
def checkpoints(task_checkpoints):
    """The session's three one-step checkpoints (``train_checkpoint`` of each task, tests/conftest.py)."""
    return task_checkpoints


@pytest.fixture
def no_sd_weights(monkeypatch):
    """Any attempt to load Stable Diffusion components or compute prompt embeddings fails."""
    import vpd_lightning.backbone.loading as loading
    import vpd_lightning.prompts as prompts

    def refuse(*args, **kwargs):
        raise AssertionError("an exported model must load without Stable Diffusion weights")

    monkeypatch.setattr(loading, "_load", refuse)
    monkeypatch.setattr(prompts, "class_embeddings", refuse)


def outputs(model, task: str, seed: int = 0) -> torch.Tensor:
    """The task's test-protocol output on a fixed random input."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if task == "depth":
            return model.predict_depth(torch.rand(2, 3, 48, 80, generator=generator), torch.tensor([3, 8]))
        if task == "segmentation":
            return model.predict_logits(torch.rand(1, 3, 40, 72, generator=generator))
        ids = torch.randint(0, 500, (2, 12), generator=generator)
        return model(torch.rand(2, 3, 64, 64, generator=generator), ids, torch.ones_like(ids))


@pytest.mark.parametrize("task", TASKS)
def test_export_and_reload_offline_identical(task, checkpoints, tmp_path, no_sd_weights):
    model = load_checkpoint(checkpoints[task])
    folder = export_model(model, tmp_path / "export", metrics={"test/score": 0.5})
    files = sorted(p.name for p in folder.iterdir())
    expected = {"README.md", "config.json", "model.safetensors"}
    expected |= {"tokenizer"} if task == "referring" else {"class_names.json"}
    assert set(files) == expected
    config = json.loads((folder / "config.json").read_text())
    assert config["task"] == task and config["format"] == "vpd_lightning.export"
    assert config["components"]["unet"]["cross_attention_dim"] == 32 and "vae" in config["components"]
    assert ("text_encoder" in config["components"]) == (task == "referring")
    assert "tokenizer_files" not in config and "train_config" not in config
    card = (folder / "README.md").read_text()
    assert "test/score" in card and "0.5000" in card and "## Training configuration" in card
    assert f"task: {task}" in card or f"`{task}`" in card
    assert "trainer:" in card and "max_steps: 1" in card  # the resolved training config

    reloaded = load_exported(folder)
    assert type(reloaded) is type(model) and reloaded.vpd_config["task"] == task
    before, after = model.state_dict(), reloaded.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert (outputs(model, task) - outputs(reloaded, task)).abs().max().item() == 0.0
    if task != "referring":
        names = json.loads((folder / "class_names.json").read_text())
        assert names == model.vpd_config["class_names"] and len(names) == model.class_embeddings.shape[0]
        assert torch.equal(reloaded.class_embeddings, model.class_embeddings)
        assert reloaded.class_embeddings.abs().sum() > 0  # the buffer came from the weights, not zeros
    # the exported folder can be exported again
    again = export_model(reloaded, tmp_path / "again")
    assert json.loads((again / "config.json").read_text())["components"] == config["components"]


@pytest.mark.parametrize("task", TASKS)
def test_predict_from_exported_folder(task, checkpoints, tmp_path, no_sd_weights):
    folder = export_model(load_checkpoint(checkpoints[task]), tmp_path / "export")
    image = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    sentence = "the red circle" if task == "referring" else None
    from_ckpt = Predictor.from_pretrained(checkpoints[task])(image, sentence)
    from_folder = Predictor.from_pretrained(folder)(image, sentence)
    assert from_folder.shape == (50, 70)
    if task == "depth":
        assert np.abs(from_folder - from_ckpt).max() < 1e-6
    else:
        assert (from_folder == from_ckpt).all()
    # the exported folder as ckpt_path of the file prediction
    Image.fromarray(image).save(tmp_path / "x.png")
    predictor = Predictor(load_model(folder))
    summary = predict_files(predictor, tmp_path / "x.png", tmp_path / "out", sentence=sentence, progress=False)
    assert len(summary["written"]) == 1


def test_export_cli_flow(checkpoints, tmp_path):
    cfg = make_cfg(
        [f"ckpt_path={checkpoints['segmentation']}", f"output={tmp_path / 'seg'}", "task=segmentation"],
        "predict",
    )
    folder = export_checkpoint(cfg)
    assert (folder / "model.safetensors").is_file()
    assert load_exported(folder).num_classes == 150
    with pytest.raises(WrongTaskError, match="segmentation"):
        load_model(folder, task="depth")


def test_bad_export_folders(tmp_path, checkpoints):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_exported(empty)
    folder = export_model(load_checkpoint(checkpoints["depth"]), tmp_path / "export")
    (folder / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_exported(folder)
    model = load_checkpoint(checkpoints["depth"])
    del model.vpd_config
    with pytest.raises(ValueError, match="vpd_config"):
        export_model(model, tmp_path / "nope")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(OSError, match="blocker"):
        export_model(load_checkpoint(checkpoints["depth"]), blocker / "sub")


def test_safetensors_dict_unshares_and_makes_contiguous(tmp_path):
    from safetensors.torch import load_file, save_file

    base = torch.arange(12.0).reshape(3, 4)
    state = {"a": base, "b": base.t(), "c": base[1], "d": base}
    tensors = _safetensors_dict(state)
    pointers = {t.untyped_storage().data_ptr() for t in tensors.values()}
    assert len(pointers) == 4 and all(t.is_contiguous() for t in tensors.values())
    save_file(tensors, str(tmp_path / "x.safetensors"))  # refuses shared or strided tensors
    loaded = load_file(str(tmp_path / "x.safetensors"))
    assert all(torch.equal(loaded[k], state[k]) for k in state)
