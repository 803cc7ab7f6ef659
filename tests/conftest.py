"""Test set-up: offline, two threads, tiny models and generated data sets made once per session."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    """A tiny random SD-1.x-shaped diffusers folder (unet/, vae/, text_encoder/, tokenizer/)."""
    from vpd_lightning.backbone.tiny import save_tiny_stable_diffusion

    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_family_dir(tmp_path_factory):
    """``tiny_family_dir(family)``: a tiny random diffusers folder of that family's topology (sd15, sd21, sdxl ...),
    written once per session (SDXL: also text_encoder_2/ and tokenizer_2/)."""
    from vpd_lightning.backbone.tiny import save_tiny_stable_diffusion

    made = {}

    def make(family: str):
        if family not in made:
            made[family] = save_tiny_stable_diffusion(tmp_path_factory.mktemp(f"tiny-{family}"), family=family)
        return made[family]

    return make


@pytest.fixture(scope="session")
def nyu_root(tmp_path_factory):
    """A small generated NYUv2 tree (``nyu_depth_v2`` folder): 8 train / 4 test images of 64x96."""
    from vpd_lightning.data.synthetic import generate_nyuv2

    return generate_nyuv2(tmp_path_factory.mktemp("data") / "nyu_depth_v2", 8, 4, 64, 96, seed=0)


@pytest.fixture(scope="session")
def ade_root(tmp_path_factory):
    """A small generated ADE20K tree (``ADEChallengeData2016`` folder): 8 training / 3 validation images."""
    from vpd_lightning.data.synthetic import generate_ade20k

    return generate_ade20k(tmp_path_factory.mktemp("data") / "ADEChallengeData2016", 8, 3, 64, 64, seed=0)


@pytest.fixture(scope="session")
def refer_root(tmp_path_factory):
    """A small generated RefCOCO (unc) tree in the LAVT layout: 16 images."""
    from vpd_lightning.data.synthetic import generate_refcoco

    return generate_refcoco(tmp_path_factory.mktemp("refer"), "refcoco", "unc", 16, 64, 80, seed=0)


@pytest.fixture(autouse=True)
def _no_shared_wandb_service():
    """wandb exports WANDB_SERVICE so that child processes attach to the parent's service. A training subprocess
    started by a later test would then run inside this pytest process's W&B service, and a killed one would keep
    its run id busy there: every test starts and ends without it."""
    os.environ.pop("WANDB_SERVICE", None)
    yield
    os.environ.pop("WANDB_SERVICE", None)


@pytest.fixture(scope="session")
def depth_checkpoint(tmp_path_factory, tiny_sd_dir, nyu_root):
    """A depth checkpoint written by ``vpd_lightning.train`` (tiny model, one step), shared by the hub and app tests."""
    from test_predict import train_checkpoint

    return train_checkpoint("depth", nyu_root, tiny_sd_dir, tmp_path_factory.mktemp("ckpt-depth-shared"))


@pytest.fixture(scope="session")
def task_checkpoints(tmp_path_factory, tiny_sd_dir, depth_checkpoint, ade_root, refer_root):
    """``{task: checkpoint}`` for depth, segmentation and referring, each written by ``vpd_lightning.train`` (tiny
    model, one step; depth is ``depth_checkpoint``), shared by the predict, export and app tests. Read-only."""
    from test_predict import train_checkpoint

    out = {"depth": depth_checkpoint}
    for task, root in (("segmentation", ade_root), ("referring", refer_root)):
        out[task] = train_checkpoint(task, root, tiny_sd_dir, tmp_path_factory.mktemp(f"ckpt-{task}-shared"))
    return out
