"""Errors a user can act on: printed as a few clean lines by every entry point, raised before anything is built
(bad option values, a checkpoint of another task, a damaged checkpoint), full disks named with the space needed,
and no empty folders or stale temporary files left behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, InstantiationException
from omegaconf import open_dict, read_write
from tiny_config import make_cfg, run_train

from vpd_lightning.checkpoint import AtomicCheckpointIO, CheckpointWriteError, remove_stale_temp_files
from vpd_lightning.data.errors import DatasetNotFoundError
from vpd_lightning.export import CheckpointNotFoundError, DamagedCheckpointError, WrongTaskError, read_checkpoint
from vpd_lightning.utils.errors import (
    ConfigError,
    ReportedError,
    remove_empty_run_folder,
    report_user_errors,
)
from vpd_lightning.utils.validate import config_problems


# ------------------------------------------------------------------------------------- 7: clean messages
def test_cli_prints_a_data_layout_error_as_lines_without_traceback_and_leaves_no_run_folder(tmp_path):
    result = run_train(["task=depth", f"data.root={tmp_path / 'nowhere'}"], cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(line.startswith("DatasetNotFoundError: NYUv2 test split not found") for line in lines)
    assert "Expected layout (set data.root):" in lines
    assert any(line.startswith("    official_splits/test/<scene>/rgb_XXXXX.jpg") for line in lines)
    assert "\\n" not in result.stderr and "Traceback" not in result.stderr
    assert "HYDRA_FULL_ERROR=1" in result.stderr
    # 11: the run folder Hydra made (only .hydra/ and the log in it) is gone, and outputs/ with it
    assert not (tmp_path / "outputs").exists()


def _raises(err: BaseException):
    def task(cfg):
        raise err

    return task


def test_user_errors_become_compact_hydra_errors_and_bugs_keep_their_traceback(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    layout = DatasetNotFoundError("no data here.\nExpected layout:\n  <root>/\n    train/\n")
    with pytest.raises(ReportedError) as info:
        report_user_errors(_raises(layout))(None)
    assert isinstance(info.value, CompactHydraException)  # Hydra prints these as the message alone
    assert str(info.value) == "DatasetNotFoundError: no data here.\nExpected layout:\n  <root>/\n    train/"
    # wrapped by hydra.utils.instantiate (whose message holds the repr, with literal \n)
    try:
        raise InstantiationException(f"Error in call to target 'x':\n{layout!r}") from layout
    except InstantiationException as wrapped:
        with pytest.raises(ReportedError, match="^DatasetNotFoundError: no data here.\nExpected layout:"):
            report_user_errors(_raises(wrapped))(None)
    bug = RuntimeError("a bug")
    with pytest.raises(RuntimeError) as info:
        report_user_errors(_raises(bug))(None)
    assert info.value is bug
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(DatasetNotFoundError) as info:
        report_user_errors(_raises(layout))(None)
    assert info.value is layout


@pytest.mark.parametrize("module", ["train", "evaluate", "predict", "export"])
def test_every_entry_point_reports_user_errors(module):
    import importlib

    main = importlib.import_module(f"vpd_lightning.{module}").main
    chain = []
    while main is not None:
        chain.append(main)
        main = getattr(main, "__wrapped__", None)
    assert any(getattr(f, "__code__", None) is _wrapper_code() for f in chain)


def _wrapper_code():
    return report_user_errors(lambda cfg: None).__code__


def test_entry_points_without_hydra_exit_with_the_message(capsys, monkeypatch):
    """The demo (argparse) reports user errors the same way."""
    from vpd_lightning.utils.errors import user_errors_exit

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as info, user_errors_exit():
        raise ConfigError("invalid configuration:\n  data.batch_size must be an integer >= 1, got 0")
    assert info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["ConfigError: invalid configuration:", "  data.batch_size must be an integer >= 1, got 0"]
    with pytest.raises(KeyError), user_errors_exit():
        raise KeyError("a bug keeps its traceback")


# ----------------------------------------------------------------------------- 8: early config validation
def _no_build(monkeypatch):
    """Make building the data module or the model fail the test."""
    import vpd_lightning.train as train_module

    def build(*args, **kwargs):
        raise AssertionError("data/model were built")

    monkeypatch.setattr(train_module, "build", build)
    monkeypatch.setattr("vpd_lightning.evaluate.build", build)


def test_bad_values_fail_before_data_and_model_are_built(monkeypatch, tmp_path):
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.train import train

    _no_build(monkeypatch)
    bad = ["model.optimizer.lr=-1", "data.batch_size=0", "trainer.max_epochs=0", "backbone.timestep=1000"]
    cfg = make_cfg(["task=depth", f"paths.output_dir={tmp_path / 'out'}", *bad])
    with pytest.raises(ConfigError) as info:
        train(cfg)
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert "  model.optimizer.lr must be > 0, got -1" in lines
    assert "  data.batch_size must be an integer >= 1, got 0" in lines
    assert any(line.startswith("  trainer.max_epochs must be") and line.endswith("got 0") for line in lines)
    assert any(line.startswith("  backbone.timestep must be") and line.endswith("got 1000") for line in lines)
    ckpt = tmp_path / "a.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    cfg = make_cfg(["task=depth", "data.eval_batch_size=0", f"ckpt_path={ckpt}"], "evaluate")
    with pytest.raises(ConfigError, match="data.eval_batch_size must be an integer >= 1, got 0"):
        evaluate(cfg)


@pytest.mark.parametrize(
    "overrides",
    [
        ["task=depth"],
        ["task=segmentation"],
        ["task=referring"],
        ["experiment=nyuv2_vpd"],
        ["experiment=ade20k_vpd"],
        ["experiment=refcoco_vpd"],
        ["experiment=demo_depth"],
        ["experiment=demo_segmentation"],
        ["experiment=demo_referring"],
        ["task=segmentation", "debug=smoke", "trainer=fsdp"],
        ["task=depth", "trainer.precision=bf16-mixed", "trainer.val_check_interval=0.5", "trainer.max_epochs=null"],
    ],
)
def test_shipped_configs_pass_validation(overrides):
    assert config_problems(make_cfg(overrides)) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["task=segmentation", "data.crop_size=[500,512]"], "data.crop_size must be two positive multiples of 8"),
        (["task=segmentation", "model.crop_size=[510,512]"], "model.crop_size must be two positive multiples of 8"),
        (["task=depth", "model.input_padding=null", "data.crop_size=[476,480]"], "data.crop_size must be two"),
        (["task=referring", "data.image_size=500"], "data.image_size must be a positive multiple of 8 (the VAE's"),
        (["task=depth", "backbone.attention=a16"], "backbone.attention must be one of ['a32', 'a64', 'none']"),
        (["task=depth", "trainer.precision=17"], "trainer.precision must be one of"),
        (["task=depth", "model.max_depth=0.0005"], "model.max_depth must be > model.min_depth (0.001), got 0.0005"),
        (["task=depth", "model.optimizer.lr=null"], "model.optimizer.lr must be > 0, got None"),
        (["task=depth", "trainer.max_steps=0"], "trainer.max_steps must be -1 (no limit) or an integer >= 1, got 0"),
        (["task=depth", "model.optimizer.betas=[0.9,1.5]"], "model.optimizer.betas must be two numbers in [0, 1)"),
        (["task=depth", "mode=best"], "mode must be 'min' or 'max', got 'best'"),
    ],
)
def test_each_bad_value_is_named(overrides, expected):
    problems = config_problems(make_cfg(overrides))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


# ------------------------------------------------------------------------------- 9: wrong-task checkpoints
def _fake_checkpoint(path: Path, task: str, extra_bytes: int = 0) -> Path:
    """What train/evaluate read before building anything: the stored model description's task."""
    state = {"head.out_layer.weight": torch.zeros(4), "pad": torch.zeros(extra_bytes // 4)}
    torch.save({"state_dict": state, "vpd_config": {"task": task}}, path)
    return path


@pytest.mark.parametrize("entry", ["train", "evaluate"])
def test_checkpoint_of_another_task_is_refused_before_anything_is_built(entry, monkeypatch, tmp_path):
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.train import train

    _no_build(monkeypatch)
    ckpt = _fake_checkpoint(tmp_path / "depth.ckpt", "depth")
    cfg = make_cfg(["task=segmentation", f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path / 'out'}"], entry)
    with pytest.raises(WrongTaskError) as info:
        (train if entry == "train" else evaluate)(cfg)
    message = str(info.value)
    assert f"'{ckpt}' is a depth checkpoint, but this run is set up for task=segmentation" in message
    assert "Use task=depth" in message
    # a checkpoint without a stored description: its task is read off the state dict's keys
    bare = tmp_path / "bare.ckpt"
    torch.save({"state_dict": {"neck.lateral.0.weight": torch.zeros(1)}}, bare)
    cfg = make_cfg(["task=depth", f"ckpt_path={bare}", f"paths.output_dir={tmp_path / 'out'}"], entry)
    with pytest.raises(WrongTaskError, match="is a segmentation checkpoint.*\nUse task=segmentation"):
        (train if entry == "train" else evaluate)(cfg)


# ---------------------------------------------------------------------- 10: damaged checkpoints, full disk
def test_truncated_checkpoint_names_the_file_and_the_complete_ones(monkeypatch, tmp_path):
    from vpd_lightning.train import train

    _no_build(monkeypatch)
    folder = tmp_path / "out" / "checkpoints"
    folder.mkdir(parents=True)
    best = _fake_checkpoint(folder / "best-epoch=003.ckpt", "depth")
    (tmp_path / "elsewhere").mkdir()
    whole = _fake_checkpoint(tmp_path / "elsewhere" / "whole.ckpt", "depth", extra_bytes=40_000).read_bytes()
    last = folder / "last.ckpt"
    last.write_bytes(whole[: len(whole) // 2])  # a write cut short: no zip central directory
    other_truncated = folder / "epoch=1.ckpt"
    other_truncated.write_bytes(whole[:1000])
    cfg = make_cfg(["task=depth", "ckpt_path=last", f"paths.output_dir={tmp_path / 'out'}"])
    with pytest.raises(DamagedCheckpointError) as info:
        train(cfg)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"checkpoint '{last}' is damaged or incomplete (")
    assert "no central directory" in lines[0]
    assert "cut short" in lines[1]
    assert lines[2] == f"Complete checkpoints in '{folder}' (newest first; use one with ckpt_path=...):"
    assert len(lines) == 4 and lines[3].startswith(f"  {best}  (")  # the other truncated one is not offered
    # the same message when Lightning reads it (e.g. trainer.test(ckpt_path=...)) and for predict/export
    with pytest.raises(DamagedCheckpointError, match="is damaged or incomplete"):
        AtomicCheckpointIO().load_checkpoint(last)
    with pytest.raises(DamagedCheckpointError, match=f"No other complete checkpoint in '{tmp_path}'"):
        (tmp_path / "lone.ckpt").write_bytes(whole[:3000])
        read_checkpoint(tmp_path / "lone.ckpt")


def _save_twice_second_failing(tmp_path, monkeypatch, fail) -> tuple[Path, dict]:
    import vpd_lightning.checkpoint as checkpoint_module

    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)
    second = {"step": 2, "w": torch.zeros(2000), "opt": {"m": torch.zeros(500, dtype=torch.float64)}}
    fail(monkeypatch, checkpoint_module)
    with pytest.raises(CheckpointWriteError) as info:
        io.save_checkpoint(second, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1  # the previous checkpoint is whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # nothing half-written
    return path, {"message": str(info.value), "error": info.value, "previous": path.stat().st_size}


def test_full_disk_while_writing_names_the_path_free_space_and_size_needed(tmp_path, monkeypatch):
    def torch_enforce_fail(monkeypatch, module):
        def save(obj, f, *args, **kwargs):
            f.write(b"PK\x03\x04 partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

        monkeypatch.setattr(module.torch, "save", save)
        monkeypatch.setattr(module.shutil, "disk_usage", lambda p: _usage(1000))

    path, result = _save_twice_second_failing(tmp_path, monkeypatch, torch_enforce_fail)
    lines = result["message"].splitlines()
    assert lines[0] == (
        f"no space left to write checkpoint '{path}' (RuntimeError: [enforce fail at inline_container.cc:672] . "
        "unexpected pos 704 vs 598)."
    )
    # 2000 float32 + 500 float64 = 8000 + 4000 bytes = 11.7 KiB
    previous = f"{result['previous'] / 1024:.1f} KiB"
    assert lines[1] == (
        f"Free space in '{path.parent}': 1000 B; the checkpoint needs about 11.7 KiB (the bytes of its tensors), "
        f"beside the previous last.ckpt ({previous}) until it replaces it."
    )
    assert lines[2] == "Nothing half-written was left: the previous last.ckpt is intact."


def _usage(free: int):
    import shutil

    return shutil._ntuple_diskusage(10**9, 10**9 - free, free)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_real_enospc_from_torch_is_reported(tmp_path, monkeypatch):
    """torch.save into /dev/full: the genuine error torch raises when the disk fills during a write."""
    import builtins

    def dev_full(monkeypatch, module):
        monkeypatch.setattr(module, "open", lambda path, mode: builtins.open("/dev/full", mode), raising=False)

    path, result = _save_twice_second_failing(tmp_path, monkeypatch, dev_full)
    assert result["error"].errno == 28
    assert result["message"].startswith(f"no space left to write checkpoint '{path}' (")
    assert "Free space in" in result["message"] and "about 11.7 KiB" in result["message"]


# ------------------------------------------------------------------------------ 11: no empty folders left
def _as_run(tmp_path: Path, run_dir: Path, multirun: bool = False) -> None:
    cfg = make_cfg(["task=depth", f"hydra.run.dir={run_dir}"])
    with read_write(cfg.hydra), open_dict(cfg.hydra), read_write(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(run_dir)
        if multirun:
            from hydra.types import RunMode

            cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("a: 1\n")
    (run_dir / "train.log").write_text("[INFO] - output folder: ...\n")


def test_only_run_folders_without_progress_are_removed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "outputs" / "depth" / "runs" / "2026-01-01_00-00-00"
    _as_run(tmp_path, run)
    (run / "checkpoints").mkdir()  # empty folders and hparams files are no progress
    (run / "csv" / "version_0").mkdir(parents=True)
    (run / "csv" / "version_0" / "hparams.yaml").write_text("lr: 1\n")
    assert remove_empty_run_folder() == run.resolve()
    assert not (tmp_path / "outputs").exists()  # the parents it left empty went too, up to the working dir
    kept = tmp_path / "kept"
    _as_run(tmp_path, kept)
    (kept / "checkpoints").mkdir()
    (kept / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert remove_empty_run_folder() is None and (kept / "train.log").is_file()
    job = tmp_path / "multirun" / "0"
    _as_run(tmp_path, job, multirun=True)
    assert remove_empty_run_folder() is None and job.is_dir()  # the sweep records its failure there


def test_predict_and_export_leave_no_output_folder_when_nothing_was_written(tmp_path, monkeypatch):
    import types

    import vpd_lightning.predict as predict_module
    from vpd_lightning.export import export_checkpoint
    from vpd_lightning.predict import NothingPredictedError, predict
    from vpd_lightning.utils.errors import MissingFileError

    out = tmp_path / "predictions"
    cfg = make_cfg([f"ckpt_path={tmp_path / 'none.ckpt'}", f"input={tmp_path}", f"output={out}"], "predict")
    with pytest.raises(CheckpointNotFoundError, match="none.ckpt"):
        export_checkpoint(cfg)
    assert not out.exists()
    monkeypatch.setattr(predict_module, "load_model", lambda *a, **k: None)
    monkeypatch.setattr(predict_module, "Predictor", lambda *a, **k: types.SimpleNamespace(task="depth", scene=-1))
    cfg = make_cfg([f"ckpt_path={tmp_path}", f"input={tmp_path / 'missing'}", f"output={out}"], "predict")
    with pytest.raises(MissingFileError, match="missing"):
        predict(cfg)
    assert not out.exists()
    broken = tmp_path / "images"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    cfg = make_cfg([f"ckpt_path={tmp_path}", f"input={broken}", f"output={out}", "progress=false"], "predict")
    with pytest.raises(NothingPredictedError, match="all 1 input image"):
        predict(cfg)
    assert not out.exists()
    out.mkdir()  # a folder that was there before is left as it was
    (out / "mine.txt").write_text("x")
    with pytest.raises(NothingPredictedError):
        predict(cfg)
    assert (out / "mine.txt").is_file()


# ------------------------------------------------------------------------- 14: stale checkpoint temp files
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path, monkeypatch):
    from vpd_lightning.checkpoint import FOREIGN_TEMP_AGE_S

    host, dead = socket.gethostname(), _dead_pid()
    folder = tmp_path / "out" / "checkpoints"
    folder.mkdir(parents=True)
    stale = [folder / f".last.ckpt.tmp-{host}-{dead}", folder / f".last.ckpt.tmp-{dead}"]  # this and old naming
    old_foreign = folder / ".last.ckpt.tmp-elsewhere-7"
    live = [
        folder / f".best.ckpt.tmp-{host}-{os.getpid()}",  # this process
        folder / f".last.ckpt.tmp-{host}-{os.getppid()}",  # another live process
        folder / ".last.ckpt.tmp-elsewhere-8",  # another host's, still being written
        folder / "last.ckpt",
        folder / ".notes.tmp-x",
    ]
    for path in [*stale, old_foreign, *live]:
        path.write_bytes(b"partial")
    then = time.time() - FOREIGN_TEMP_AGE_S - 60
    os.utime(old_foreign, (then, then))
    assert sorted(remove_stale_temp_files(folder)) == sorted([*stale, old_foreign])
    assert all(p.exists() for p in live)
    # at the start of a run (before anything is built) and before the first write into a folder
    from vpd_lightning.train import train

    _no_build(monkeypatch)
    stale[0].write_bytes(b"partial")
    with pytest.raises(AssertionError, match="were built"):
        train(make_cfg(["task=depth", f"paths.output_dir={tmp_path / 'out'}"]))
    assert not stale[0].exists()
    stale[1].write_bytes(b"partial")
    AtomicCheckpointIO().save_checkpoint({"step": 1}, folder / "last.ckpt")
    assert not stale[1].exists() and live[0].exists()


def test_run_folder_cleanup_ignores_a_composed_config_without_a_run():
    """A HydraConfig set by the Compose API (tests, notebooks) has no runtime output folder: nothing to remove."""
    from tiny_config import make_cfg

    from vpd_lightning.utils.errors import remove_empty_run_folder

    make_cfg(["task=depth"])
    assert remove_empty_run_folder() is None
