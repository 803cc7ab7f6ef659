"""What the test modules share to train a task: the overrides that shrink it to the tiny test model on the
generated data, composing a config in-process, and running the training CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from vpd_lightning.config import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]

#: per task: crops, head widths and prompt/token lengths of the tiny test set-up
TINY_MODEL = {
    "depth": [
        "data.crop_size=[48,48]",
        "model.head.fusion_channels=32",
        "model.head.head_channels=16",
        "model.class_embeddings.templates='a photo of a {}.'",
    ],
    "segmentation": [
        "data.crop_size=[48,48]",
        "data.img_scale=[256,64]",
        "model.neck.out_channels=16",
        "model.head.channels=16",
        "model.crop_size=[48,48]",
        "model.stride=[32,32]",
        "model.test_scale=[256,64]",
        "model.class_embeddings.max_length=16",
    ],
    "referring": ["data.image_size=64", "data.max_tokens=12"],
}


def tiny_task(task: str, root, tiny_sd_dir, tmp_path: Path) -> list[str]:
    """Task, weights, data root, cache folder and the tiny sizes (trainer, batch size and steps are the caller's)."""
    return [
        f"task={task}",
        f"sd_path={tiny_sd_dir}",
        f"data.root={root}",
        "data.num_workers=0",
        f"paths.cache_dir={tmp_path / 'cache'}",
        *TINY_MODEL[task],
    ]


def make_cfg(overrides: list[str], config_name: str = "train"):
    """Compose a root config with its ``hydra`` node, registered as the current HydraConfig (as a CLI run)."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def cli_env(*pythonpath: Path, **extra: str) -> dict[str, str]:
    """The environment of a training subprocess: offline, this checkout's sources first on the path."""
    path = os.pathsep.join(str(p) for p in (REPO / "src", *pythonpath))
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": path, **extra}


def train_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "vpd_lightning.train", *args]


def run_train(args: list[str], cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m vpd_lightning.train ARGS`` to completion (10 minutes at most), output captured."""
    return subprocess.run(train_cmd(args), cwd=cwd, env=env or cli_env(), capture_output=True, text=True, timeout=600)


def wandb_run_bytes(run_dir: Path, *keys: bytes, timeout: float = 60.0) -> bytes:
    """The ``run-*.wandb`` file of an offline W&B run, read once it holds every key in ``keys``.

    ``wandb.finish`` returns when the run's exit record is handed to the W&B service, whose writer process
    appends the last records to the file a moment later (seconds on a loaded machine): wait for them, up to
    ``timeout`` seconds, and return what the file holds then (the caller's asserts name a key still missing).
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        files = sorted(Path(run_dir).glob("run-*.wandb"))
        data = files[0].read_bytes() if files else b""
        if all(key in data for key in keys) or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


def tiny_multitask(tasks: list[str], roots: dict, tiny_sd_dir, tmp_path: Path) -> list[str]:
    """``task=multitask`` over ``tasks`` with each task's tiny sizes (``data.<task>.*``, ``model.<task>.*``) and data
    root from ``roots`` (``{task: root}``)."""
    args = [
        "task=multitask",
        f"multitask.tasks=[{','.join(tasks)}]",
        f"sd_path={tiny_sd_dir}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    for task in tasks:
        args += [f"data.{task}.root={roots[task]}", f"data.{task}.num_workers=0"]
        for override in TINY_MODEL[task]:
            group, rest = override.split(".", 1)
            args.append(f"{group}.{task}.{rest}")
    return args
