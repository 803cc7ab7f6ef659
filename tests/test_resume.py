"""Interrupted runs: atomic checkpoints, ckpt_path=last / auto_resume, and a killed run resumed exactly."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tiny_config import REPO, cli_env, run_train, tiny_task, train_cmd


def _args(nyu_root, tiny_sd_dir, tmp_path, run_dir: Path, *extra: str) -> list[str]:
    return [
        *tiny_task("depth", nyu_root, tiny_sd_dir, tmp_path),
        "trainer=cpu",
        "data.batch_size=2",
        "trainer.max_steps=12",  # 3 epochs of 4 steps (8 images, batch 2), CutDepth and augmentations on
        "trainer.log_every_n_steps=1",
        "callbacks.last_checkpoint.every_n_train_steps=3",
        "logger=many",
        "test=false",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def _val_rmse(run_dir: Path) -> dict[int, float]:
    with (run_dir / "csv" / "metrics.csv").open() as f:
        return {int(r["step"]): float(r["val/rmse"]) for r in csv.DictReader(f) if r.get("val/rmse")}


def _kill_children_outside_the_group(pid: int) -> None:
    """W&B's service process runs in its own session and outlives a killed parent for ~1-2 s, holding the run
    id; a scheduler kills every process of a job, so do the same and wait until they are gone."""
    mine = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--pid" in args and args[args.index(b"--pid") + 1 : args.index(b"--pid") + 2] == [str(pid).encode()]:
            mine.append(int(cmdline.parent.name))
    for child in mine:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 30
    while any(Path(f"/proc/{c}").exists() and b"zombie" not in _status(c) for c in mine) and time.time() < deadline:
        time.sleep(0.05)


def _status(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"


def _assert_same_training_state(path_a: Path, path_b: Path, steps: int) -> dict:
    """Two checkpoints after ``steps`` steps with bit-identical weights, AdamW moments and schedules; returns b."""
    a = torch.load(path_a, map_location="cpu", weights_only=True)
    b = torch.load(path_b, map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == steps
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert a["lr_schedulers"] == b["lr_schedulers"]
    return b


def test_a_killed_run_resumes_to_the_same_weights_and_metrics(nyu_root, tiny_sd_dir, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    result = run_train(_args(nyu_root, tiny_sd_dir, tmp_path, full))
    assert result.returncode == 0, result.stderr[-3000:]

    # the same run, killed with SIGKILL as soon as its first interval checkpoint (step 3, mid-epoch) exists;
    # the whole process group, as a scheduler kills a job (the W&B service process included)
    proc = subprocess.Popen(
        train_cmd(_args(nyu_root, tiny_sd_dir, tmp_path, killed)),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    _kill_children_outside_the_group(proc.pid)
    state = torch.load(last, map_location="cpu", weights_only=True)
    step = state["global_step"]
    assert 3 <= step < 12  # interrupted before the end (checkpoints every 3 steps and at epoch ends)
    loader = state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert loader["consumed"] == (2 * (step % 4) or 8)  # position within the epoch (8 = an epoch's end)
    first_run_id = state["wandb_run_id"]

    # resume in the same folder (auto_resume picks up checkpoints/last.ckpt)
    result = run_train(_args(nyu_root, tiny_sd_dir, tmp_path, killed, "auto_resume=true"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "auto_resume: continuing from" in result.stdout + result.stderr

    # one last.ckpt, written by both the interval and the validation checkpoints (no last-v1.ckpt beside it)
    assert sorted(p.name for p in last.parent.glob("last*")) == ["last.ckpt"]
    b = _assert_same_training_state(full / "checkpoints" / "last.ckpt", last, steps=12)
    # validation after the resume: the same numbers as the uninterrupted run (steps 8 and 12; step 4 too when
    # the kill came after it)
    rmse_a, rmse_b = _val_rmse(full), _val_rmse(killed)
    assert set(rmse_a) == {3, 7, 11} and set(rmse_b) >= {7, 11}
    for step, value in rmse_b.items():
        assert value == rmse_a[step]
    # the resumed run continued the same W&B run
    assert b["wandb_run_id"] == first_run_id
    runs = sorted((killed / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(first_run_id) for r in runs)


def test_atomic_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    from vpd_lightning.checkpoint import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1  # the previous checkpoint survives whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left behind


def test_ckpt_path_last_and_auto_resume_resolution(tmp_path):
    from vpd_lightning.train import _resolve_ckpt, _resume_wandb_run

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "ckpt_path": None, "auto_resume": True})
    assert _resolve_ckpt(cfg) is None  # nothing to resume yet: start from scratch
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    torch.save({"wandb_run_id": "abc123", "state_dict": {}}, last)
    assert _resolve_ckpt(cfg) == str(last)
    cfg.auto_resume, cfg.ckpt_path = False, "last"
    assert _resolve_ckpt(cfg) == str(last)
    cfg.ckpt_path = str(tmp_path / "missing.ckpt")
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        _resolve_ckpt(cfg)
    cfg.logger = {"wandb": {"_target_": "lightning.pytorch.loggers.WandbLogger", "id": None}}
    _resume_wandb_run(cfg, str(last))
    assert cfg.logger.wandb.id == "abc123"


@pytest.fixture(scope="module")
def stop_args(nyu_root, tiny_sd_dir, tmp_path_factory):
    """8 steps (2 epochs of 4, validation after each), no interval checkpoint before the end, CSV logs only."""
    base = tmp_path_factory.mktemp("stops")

    def args(run_dir: Path, *extra: str) -> list[str]:
        every = "callbacks.last_checkpoint.every_n_train_steps=1000"
        return _args(nyu_root, tiny_sd_dir, base, run_dir, "trainer.max_steps=8", every, "logger=csv", *extra)

    return args


@pytest.fixture(scope="module")
def uninterrupted(stop_args, tmp_path_factory) -> Path:
    """last.ckpt of the 8 steps run without interruption."""
    run = tmp_path_factory.mktemp("stops-full")
    result = run_train(stop_args(run))
    assert result.returncode == 0, result.stderr[-3000:]
    return run / "checkpoints" / "last.ckpt"


def _loader_position(state: dict) -> int:
    return state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["consumed"]


def test_sigterm_saves_last_ckpt_at_the_current_step_and_the_run_resumes_exactly(stop_args, uninterrupted, tmp_path):
    """SIGTERM sent to a running training mid-epoch: last.ckpt at the step the message names (not the last
    interval checkpoint), exit status 143, and the resumed run ends with the uninterrupted run's state."""
    run, steps = tmp_path / "term", tmp_path / "steps.txt"
    hook = ["+callbacks.steps._target_=train_hooks.StepFile", f"+callbacks.steps.path={steps}"]
    cmd = train_cmd(stop_args(run, *hook, "+callbacks.steps.sleep_s=0.5"))
    proc = subprocess.Popen(
        cmd, env=cli_env(REPO / "tests"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if steps.exists() and steps.read_text().strip() not in ("", "0", "1"):
            break  # two steps done
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]  # not 0: a supervisor sees the interruption
    found = re.search(r"training stopped at step (\d+) by SIGTERM; saved (\S+) \(step (\d+)\)", out)
    assert found, out[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    step = int(found[1])
    assert Path(found[2]) == last and int(found[3]) == step and 2 <= step < 8
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["global_step"] == step and _loader_position(state) == 2 * (step % 4 or 4)

    result = run_train(stop_args(run, "auto_resume=true"))
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_training_state(uninterrupted, last, steps=8)


def test_an_exception_in_a_training_step_saves_last_ckpt_at_that_step(stop_args, uninterrupted, tmp_path):
    """A RuntimeError raised inside the sixth training step (after the first epoch's validation): last.ckpt holds
    step 5 (the batch that failed is drawn again on resume), the run exits non-zero with the original error, and
    the resumed run ends with the uninterrupted run's state."""
    run = tmp_path / "crash"
    hook = ["+callbacks.fail._target_=train_hooks.FailAt", "+callbacks.fail.step=5"]
    result = run_train(stop_args(run, *hook), env=cli_env(REPO / "tests"))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "RuntimeError: injected failure at step 5" in out
    last = run / "checkpoints" / "last.ckpt"
    assert f"training stopped at step 5 by RuntimeError: injected failure at step 5; saved {last} (step 5)" in out
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["global_step"] == 5 and _loader_position(state) == 2  # one batch of the second epoch

    result = run_train(stop_args(run, "auto_resume=true"))
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_training_state(uninterrupted, last, steps=8)


def test_resumed_wandb_run_waits_while_the_old_process_holds_it():
    from vpd_lightning.train import _start_wandb_run

    class Logger:
        version, calls = "abc", 0

        @property
        def experiment(self):
            self.calls += 1
            if self.calls < 3:
                raise RuntimeError("run ID abc is in use")
            return "run"

    logger = Logger()
    _start_wandb_run(logger, wait_s=0)
    assert logger.calls == 3
    with pytest.raises(RuntimeError, match="in use"):
        _start_wandb_run(Logger(), attempts=2, wait_s=0)

    class Broken(Logger):
        @property
        def experiment(self):
            raise ValueError("bad entity")

    with pytest.raises(ValueError, match="bad entity"):
        _start_wandb_run(Broken(), wait_s=0)


@pytest.mark.parametrize("rank", [0, 1])
def test_a_stop_on_several_processes_saves_without_a_collective_unless_every_process_stops(rank, tmp_path):
    """An exception may hit one DDP process while the others wait in a collective: process 0 writes last.ckpt
    alone (no barrier), the others nothing; SIGTERM stops every process at the same step, so they save together
    (Trainer.save_checkpoint); a sharded strategy saves nothing on an exception."""
    from types import SimpleNamespace

    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from vpd_lightning.callbacks import LastCheckpoint
    from vpd_lightning.checkpoint import AtomicCheckpointIO

    collective = []
    strategy = DDPStrategy()
    strategy.checkpoint_io = AtomicCheckpointIO()
    trainer = SimpleNamespace(
        state=SimpleNamespace(fn="fit"),
        sanity_checking=False,
        fast_dev_run=False,
        global_step=3,
        world_size=2,
        is_global_zero=rank == 0,
        strategy=strategy,
        datamodule=None,
        lightning_module=torch.nn.BatchNorm1d(2),
        fit_loop=SimpleNamespace(state_dict=lambda: {"state_dict": {"combined_loader": [{"consumed": 6}]}}),
        _checkpoint_connector=SimpleNamespace(dump_checkpoint=lambda weights_only: {"global_step": 3}),
        save_checkpoint=lambda path: collective.append(path),
    )
    callback = LastCheckpoint(dirpath=tmp_path, save_top_k=0, save_last=True)
    callback._mark_boundary(trainer)  # what on_train_batch_end records after step 3
    last = tmp_path / "last.ckpt"

    callback.on_exception(trainer, None, RuntimeError("CUDA out of memory"))
    assert collective == [] and last.is_file() == (rank == 0)
    if rank == 0:
        assert torch.load(last, weights_only=True)["global_step"] == 3
        last.unlink()
    callback.on_exception(trainer, None, SIGTERMException())
    assert collective == [last]
    trainer.strategy = FSDPStrategy()
    callback.on_exception(trainer, None, RuntimeError("CUDA out of memory"))
    assert collective == [last] and not last.exists()
