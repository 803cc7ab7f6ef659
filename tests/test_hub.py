"""Sharing models on the Hugging Face Hub, without network: loading a hub id from a cache folder laid out exactly as
``huggingface_hub`` writes it (blobs, snapshots of symlinks, refs), and the upload up to the prepared commit."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from huggingface_hub import CommitOperationAdd, constants
from safetensors.torch import load as load_safetensors
from tiny_config import make_cfg

from vpd_lightning.export import export_checkpoint, export_model, load_checkpoint
from vpd_lightning.hub import HubError, download_model, is_hub_id
from vpd_lightning.predict import Predictor

REPO_ID = "vpd-org/tiny-depth"


def cache_snapshot(cache: Path, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...] = ()) -> Path:
    """Put ``folder`` into the hub cache ``cache`` as huggingface_hub does: each file's bytes once under
    ``blobs/<sha256>``, ``snapshots/<commit>/<path>`` a relative symlink to it, ``refs/<name>`` the commit hash."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return repo / "snapshots" / commit


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, depth_checkpoint):
    """A hub cache holding REPO_ID at two commits: ``main`` (the trained model) and ``old`` (a copy)."""
    tmp = tmp_path_factory.mktemp("hub")
    model = load_checkpoint(depth_checkpoint)
    new = export_model(model, tmp / "new", repo_id=REPO_ID)
    old = tmp / "old"
    shutil.copytree(new, old)
    (old / "README.md").write_text("an older card\n")
    cache = tmp / "cache"
    cache_snapshot(cache, REPO_ID, new, "a" * 40, refs=("main",))
    cache_snapshot(cache, REPO_ID, old, "b" * 40, refs=("old",))
    return {"cache": cache, "new": new, "old": old}


def test_hub_id_or_local_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("org/name") and is_hub_id("my-org/vpd.depth_nyu")
    assert not is_hub_id("runs/best.ckpt") and not is_hub_id("/abs/folder") and not is_hub_id("./org/name")
    assert not is_hub_id("a/b/c") and not is_hub_id("name")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not is_hub_id("org/name")  # a folder of that name exists: the local path wins


def test_from_pretrained_reads_the_hub_cache_offline(hub_cache):
    assert constants.is_offline_mode()  # the conftest's HF_HUB_OFFLINE=1: no request may leave the machine
    cache = hub_cache["cache"]
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    hub = Predictor.from_pretrained(REPO_ID, cache_dir=cache)
    assert np.array_equal(hub(image), Predictor.from_pretrained(hub_cache["new"])(image))
    # revisions: a branch, a commit hash; each the snapshot of its commit
    snapshots = cache / "models--vpd-org--tiny-depth" / "snapshots"
    assert download_model(REPO_ID, cache_dir=cache) == snapshots / ("a" * 40)
    assert download_model(REPO_ID, cache_dir=cache, revision="old") == snapshots / ("b" * 40)
    assert download_model(REPO_ID, cache_dir=cache, revision="b" * 40) == snapshots / ("b" * 40)
    with pytest.raises(HubError, match=r"'vpd-org/tiny-depth' \(revision v9\).*not in the Hugging Face cache.*offline"):
        Predictor.from_pretrained(REPO_ID, cache_dir=cache, revision="v9")
    with pytest.raises(HubError, match=str(cache)):
        Predictor.from_pretrained("vpd-org/missing", cache_dir=cache)


@pytest.fixture
def online_with_token(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")


def test_export_push_to_hub_prepares_one_commit(depth_checkpoint, online_with_token, monkeypatch):
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["repo"] = (repo_id, kwargs, self.token)

    def create_commit(self, repo_id, operations, **kwargs):
        operations = list(operations)
        assert all(isinstance(op, CommitOperationAdd) for op in operations)
        # the folder is a temporary one: read what would be uploaded now
        calls["commit"] = (
            repo_id,
            kwargs,
            {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations},
        )
        return huggingface_hub.CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{'c' * 40}",
            commit_message=kwargs["commit_message"],
            commit_description="",
            oid="c" * 40,
        )

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)
    folder = export_checkpoint(
        make_cfg([f"ckpt_path={depth_checkpoint}", f"push_to_hub={REPO_ID}", "private=true"], "predict")
    )
    assert not folder.exists()  # no output=: exported into a temporary folder, removed after the upload
    assert calls["repo"] == (REPO_ID, {"private": True, "exist_ok": True, "repo_type": "model"}, "hf_test_token")
    repo_id, kwargs, files = calls["commit"]
    assert repo_id == REPO_ID and kwargs["repo_type"] == "model"
    assert sorted(files) == ["README.md", "class_names.json", "config.json", "model.safetensors"]
    card = files["README.md"].decode()
    assert card.startswith("---\nlibrary_name: vpd_lightning\npipeline_tag: depth-estimation\n")
    assert f'Predictor.from_pretrained("{REPO_ID}")' in card and "## Training configuration" in card
    assert json.loads(files["config.json"])["task"] == "depth"
    weights = load_safetensors(files["model.safetensors"])
    reference = load_checkpoint(depth_checkpoint).state_dict()
    assert weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k]) for k in weights)


def test_push_to_hub_offline_or_without_token_writes_nothing(depth_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "export"
    cfg = make_cfg([f"ckpt_path={depth_checkpoint}", f"output={out}", f"push_to_hub={REPO_ID}"], "predict")
    with pytest.raises(HubError, match=r"offline \(HF_HUB_OFFLINE=1\), nothing was exported or uploaded"):
        export_checkpoint(cfg)
    assert not out.exists()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(HubError, match=r"no Hugging Face token \(log in with `hf auth login` or set HF_TOKEN\)"):
        export_checkpoint(cfg)
    assert not out.exists()
    with pytest.raises(HubError, match="not a hub repository id"):
        export_checkpoint(
            make_cfg([f"ckpt_path={depth_checkpoint}", f"output={out}", "push_to_hub=no-slash"], "predict")
        )
    assert not out.exists()
