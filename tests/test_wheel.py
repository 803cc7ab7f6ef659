"""The package as a user installs it: a wheel built from the checkout, installed into a fresh virtual environment
outside it, run from an unrelated folder through its console scripts (configs found inside the package, a user's
config folder added with ``--config-dir``).

The fresh environment gets the wheel only (``pip install --no-deps --no-index``); the dependencies (torch,
lightning, diffusers ...) are the ones of the environment running the tests, made visible by a ``.pth`` file
that adds its site-packages folder *after* the fresh environment's own. A ``.pth`` file is not read from a
folder added that way, so the checkout's editable install (``__editable__*.pth``) stays invisible: the
``vpd_lightning`` that runs is the wheel's (asserted). This checks what the wheel holds (modules, configs,
package data, entry points) without downloading 1.4 GB of dependencies again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_config import TINY_MODEL

REPO = Path(__file__).resolve().parents[1]
#: what a wheel is built from (everything else in the checkout must not matter)
SOURCES = ("src", "conf", "setup.py", "pyproject.toml", "README.md")

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    result = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env={**clean, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment holding the wheel built from a copy of the checkout's sources."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(REPO / name, source / name)
    dist = root / "dist"
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, source], root))
    (wheel,) = dist.glob("vpd_lightning-*.whl")
    env = root / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", env], root))
    python = env / "bin" / "python"
    show = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = Path(_ok(_run([python, "-c", show], root)).stdout.strip())
    (purelib / "_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _ok(_run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel], root))
    return env


def test_wheel_trains_and_predicts_from_any_folder(venv, tmp_path, tiny_sd_dir, nyu_root):
    work = tmp_path / "elsewhere"
    work.mkdir()
    bin_dir = venv / "bin"
    show = "import vpd_lightning, vpd_lightning.config as c; print(vpd_lightning.__file__, c.CONFIG_DIR, c.CONFIG_PATH)"
    where = _ok(_run([bin_dir / "python", "-c", show], work)).stdout.split()
    assert Path(where[0]).is_relative_to(venv) and Path(where[1]).is_relative_to(venv), where
    assert where[1].endswith("vpd_lightning/conf") and where[2] == "pkg://vpd_lightning.conf"
    scripts = ("vpd-train", "vpd-evaluate", "vpd-predict", "vpd-export", "vpd-demo", "vpd-app")
    assert all((bin_dir / name).is_file() for name in scripts), sorted(p.name for p in bin_dir.iterdir())
    # a user's own config folder extends the package's groups
    user = work / "my_conf" / "experiment"
    user.mkdir(parents=True)
    (user / "wheel_tiny.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /task: depth\n  - override /trainer: cpu\n"
        f"sd_path: {tiny_sd_dir}\n"
        "data: {root: " + str(nyu_root) + ", num_workers: 0, batch_size: 2}\n"
        "trainer: {max_epochs: 1, limit_train_batches: 1, limit_val_batches: 1}\n"
        "test: false\n"
    )
    run = work / "run"
    _ok(
        _run(
            [
                bin_dir / "vpd-train",
                "--config-dir",
                work / "my_conf",
                "experiment=wheel_tiny",
                f"paths.cache_dir={tmp_path / 'cache'}",
                f"hydra.run.dir={run}",
                *TINY_MODEL["depth"],
            ],
            work,
        )
    )
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(work / "room.png")
    result = _ok(
        _run(
            [bin_dir / "vpd-predict", f"ckpt_path={checkpoint}", "input=room.png", "output=pred", "progress=false"],
            work,
        )
    )
    assert "predicted 1 image(s)" in result.stdout
    depth = np.asarray(Image.open(work / "pred" / "room_depth.png"))
    assert depth.shape == (40, 56) and depth.dtype == np.uint16 and depth.max() > 0
    # without its configs the installed package says where it looked, in one line, before Hydra starts
    shutil.rmtree(Path(where[1]))
    result = _run([bin_dir / "vpd-train"], work)
    assert result.returncode == 1
    assert "ConfigNotFoundError: vpd_lightning: the Hydra configs (train.yaml) were not found" in result.stderr
    assert str(Path(where[1])) in result.stderr and "Traceback" not in result.stderr
