"""Hydra multiruns: Optuna search with the monitored metric as objective, failing jobs, W&B grouping."""

from __future__ import annotations

import csv
import glob
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tiny_config import run_train, tiny_task, wandb_run_bytes


def depth_args(nyu_root, tiny_sd_dir, tmp_path) -> list[str]:
    return [*tiny_task("depth", nyu_root, tiny_sd_dir, tmp_path), "trainer=cpu", "data.batch_size=2"]


def _summary(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_optuna_search_minimises_the_monitored_metric(nyu_root, tiny_sd_dir, tmp_path):
    sweep = tmp_path / "optuna"
    args = [*depth_args(nyu_root, tiny_sd_dir, tmp_path), "debug=fdr", "sweep=optuna", "hydra.sweeper.n_trials=3"]
    result = run_train([*args, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _summary(sweep / "summary.csv")
    assert [r["status"] for r in rows] == ["completed"] * 3
    objectives = [float(r["objective"]) for r in rows]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    # depth monitors val/rmse with mode min: the study minimised exactly what the jobs returned
    assert best.best_value == pytest.approx(min(objectives))
    assert set(best.best_params) == {"model.optimizer.lr", "model.unet_lr_mult", "backbone.timestep"}
    job = rows[objectives.index(min(objectives))]
    cfg = OmegaConf.load(Path(job["output_dir"]) / ".hydra" / "config.yaml")
    assert cfg.model.optimizer.lr == pytest.approx(best.best_params["model.optimizer.lr"])
    assert 1e-5 <= cfg.model.optimizer.lr <= 2e-3 and cfg.backbone.timestep in (1, 50, 100, 200)


def test_a_failing_job_does_not_lose_the_others_and_each_job_is_its_own_wandb_run(nyu_root, tiny_sd_dir, tmp_path):
    sweep = tmp_path / "grid"
    args = [
        "-m",
        *depth_args(nyu_root, tiny_sd_dir, tmp_path),
        "logger=wandb",
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        "trainer.limit_val_batches=1",
        "test=false",
        "model.optimizer.lr=-1.0,1.0e-3",  # job 0 fails (AdamW rejects a negative lr), job 1 runs
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_train(args, tmp_path)
    assert result.returncode != 0  # the sweep reports the failure...
    rows = _summary(sweep / "summary.csv")
    assert [r["status"] for r in rows] == ["failed", "completed"]  # ...after running every job
    assert "Invalid learning rate" in rows[0]["error"] and rows[0]["objective"] == ""
    assert 0 < float(rows[1]["objective"]) < 10
    assert (sweep / "1" / "checkpoints" / "last.ckpt").is_file()
    # one W&B run per job, both in the sweep's group
    runs = [sorted(glob.glob(str(sweep / str(i) / "wandb" / "offline-run-*"))) for i in (0, 1)]
    assert [len(r) for r in runs] == [1, 1]
    group = f"depth-sweep-{sweep.name}".encode()
    for run in runs:
        assert group in wandb_run_bytes(Path(run[0]), group)
    assert b"val/rmse" in wandb_run_bytes(Path(runs[1][0]), b"val/rmse")


def test_submitit_launcher_runs_a_job_in_its_own_process(nyu_root, tiny_sd_dir, tmp_path):
    """cluster=slurm uses Hydra's submitit launcher; its local executor runs the same pickled job code path."""
    sweep = tmp_path / "submitit"
    args = ["-m", "hydra/launcher=submitit_local", *depth_args(nyu_root, tiny_sd_dir, tmp_path), "debug=fdr"]
    result = run_train([*args, "backbone.timestep=100", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _summary(sweep / "summary.csv")
    assert [(r["job"], r["status"]) for r in rows] == [("0", "completed")] and 0 < float(rows[0]["objective"]) < 10
    # the job ran in a submitit-managed process (its own id folder with the pickled job and its logs)
    jobs = [p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 1 and any(f.name.endswith("_result.pkl") for f in jobs[0].iterdir())
    assert OmegaConf.load(sweep / "0" / ".hydra" / "config.yaml").backbone.timestep == 100


@pytest.mark.parametrize("task", ["segmentation", "referring"])
def test_grid_multirun_for_the_other_tasks(task, ade_root, refer_root, tiny_sd_dir, tmp_path):
    """The attention-variant grid (sweep=attention minus `none`) on the segmentation and referring tasks: the
    heads adapt to the A32 and A64 channel counts and each job returns its task's monitored metric."""
    root = ade_root if task == "segmentation" else refer_root
    common = [*tiny_task(task, root, tiny_sd_dir, tmp_path), "trainer=cpu", "data.batch_size=2", "debug=fdr"]
    sweep = tmp_path / "grid"
    result = run_train(["-m", *common, "backbone.attention=a32,a64", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _summary(sweep / "summary.csv")
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert all(0 <= float(r["objective"]) <= 1 for r in rows)  # val/miou, val/oiou
    variants = [OmegaConf.load(sweep / str(i) / ".hydra" / "config.yaml").backbone.attention for i in (0, 1)]
    assert variants == ["a32", "a64"]
