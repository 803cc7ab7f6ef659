"""Hydra multiruns: Optuna search with the monitored metric as objective, failing jobs, W&B grouping."""

from __future__ import annotations

import csv
import glob
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tiny_config import REPO, TINY_MODEL, cli_env, run_train, tiny_task, wandb_run_bytes


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


def readme_optuna_space() -> list[str]:
    """The search-space overrides of the README's Optuna example, as the shell passes them to the program."""
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if "sweep=optuna" in line and "(" in line]
    assert len(lines) == 1, lines
    args = shlex.split(lines[0])
    return [a for a in args[args.index("vpd_lightning.train") + 1 :] if "(" in a]


@pytest.mark.slow  # 15 s; a failing job in a grid multirun stays in the default suite
def test_a_failed_trial_is_recorded_and_the_search_goes_on(nyu_root, tiny_sd_dir, tmp_path):
    """Trial 1 of 3 fails (a test callback raises in its training step): the search runs the other two, exits 0
    and writes the best completed trial and the failed one. The search space narrowed with the README's form."""
    space = readme_optuna_space()
    assert space == ["backbone.timestep=choice(1,100)"]
    sweep = tmp_path / "optuna"
    args = [*depth_args(nyu_root, tiny_sd_dir, tmp_path), "debug=fdr", "sweep=optuna", "hydra.sweeper.n_trials=3"]
    args += [*space, "+callbacks.fail._target_=train_hooks.FailAt", "+callbacks.fail.job=1"]
    result = run_train([*args, f"hydra.sweep.dir={sweep}"], tmp_path, env=cli_env(REPO / "tests"))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _summary(sweep / "summary.csv")
    assert [r["status"] for r in rows] == ["completed", "failed", "completed"]
    assert "injected failure at step 0" in rows[1]["error"]
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert results.status == "finished" and (results.n_trials, results.n_completed, results.n_failed) == (3, 2, 1)
    objectives = {int(r["job"]): float(r["objective"]) for r in rows if r["status"] == "completed"}
    assert results.best_value == pytest.approx(min(objectives.values()))
    assert results.best_trial == min(objectives, key=objectives.get)  # trial n is job n (one job per trial)
    [failed] = results.failed_trials
    assert (failed.trial, failed.job) == (1, 1) and "RuntimeError: injected failure at step 0" in failed.error
    assert (
        set(failed.params)
        == set(results.best_params)
        == {"model.optimizer.lr", "model.unet_lr_mult", "backbone.timestep"}
    )
    # the command-line range replaced the config's choice(1, 50, 100, 200)
    timesteps = [OmegaConf.load(sweep / str(i) / ".hydra" / "config.yaml").backbone.timestep for i in range(3)]
    assert set(timesteps) <= {1, 100} and results.best_params["backbone.timestep"] in (1, 100)


@pytest.mark.slow  # 10 s; the failed-trial test covers the bookkeeping in the default suite
def test_a_search_that_fails_too_often_stops_and_still_writes_its_results(nyu_root, tiny_sd_dir, tmp_path):
    """Every trial fails: with max_failure_rate=0.5 of 4 trials the search stops at the third failure, exits
    non-zero with a message saying why, and its results file lists the failures (no best trial)."""
    sweep = tmp_path / "optuna"
    args = [*depth_args(nyu_root, tiny_sd_dir, tmp_path), "debug=fdr", "sweep=optuna", "hydra.sweeper.n_trials=4"]
    args += ["+callbacks.fail._target_=train_hooks.FailAt", f"hydra.sweep.dir={sweep}"]
    result = run_train(args, tmp_path, env=cli_env(REPO / "tests"))
    assert result.returncode == 1
    assert "Optuna search stopped after 3 of 4 trials: 3 of 3 trials failed" in result.stderr
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert results.status.startswith("stopped early") and results.best_params is None and results.best_value is None
    assert (results.n_trials, results.n_completed, results.n_failed) == (3, 0, 3)
    assert [f.job for f in results.failed_trials] == [0, 1, 2]


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
        "model.optimizer.lr=2.0e-3,1.0e-3",
        "+callbacks.fail._target_=train_hooks.FailAt",  # job 0 fails in its first training step, job 1 runs
        "+callbacks.fail.job=0",
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_train(args, tmp_path, env=cli_env(REPO / "tests"))
    assert result.returncode != 0  # the sweep reports the failure...
    rows = _summary(sweep / "summary.csv")
    assert [r["status"] for r in rows] == ["failed", "completed"]  # ...after running every job
    assert "injected failure at step 0" in rows[0]["error"] and rows[0]["objective"] == ""
    assert 0 < float(rows[1]["objective"]) < 10
    assert (sweep / "1" / "checkpoints" / "last.ckpt").is_file()
    # one W&B run per job, both in the sweep's group
    runs = [sorted(glob.glob(str(sweep / str(i) / "wandb" / "offline-run-*"))) for i in (0, 1)]
    assert [len(r) for r in runs] == [1, 1]
    group = f"depth-sweep-{sweep.name}".encode()
    for run, name in zip(runs, [b"0:lr=0.002", b"1:lr=0.001"]):
        data = wandb_run_bytes(Path(run[0]), group, name, b"overrides")
        assert group in data
        # named by the swept key only; the whole override list is in the run's config
        assert name in data and b"0:data." not in data and b"1:data." not in data
        assert b"overrides" in data and b"data.num_workers=0" in data and b"trainer.max_steps=1" in data
    assert b"val/rmse" in wandb_run_bytes(Path(runs[1][0]), b"val/rmse")


@pytest.mark.slow  # 18 s: a job in its own process through submitit's local executor
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


@pytest.mark.slow  # 10 s per task; depth's grid multirun stays in the default suite (tests/test_train.py)
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


def test_sweep_run_names_show_the_swept_keys_only(tmp_path):
    """An Optuna job: its name holds the keys of the sweeper's params and of the command line's sweeps (short,
    long floats to 4 digits), job number first; the fixed overrides are left out."""
    from tiny_config import make_cfg

    from vpd_lightning.config import _run_name, _short_names

    multirun = {
        "hydra": {
            "overrides": {"task": ["task=depth", "sweep=optuna", "backbone.timestep=choice(1,100)"]},
            "sweeper": {"params": {"model.optimizer.lr": "tag(log, interval(1e-5, 2e-3))", "model.unet_lr_mult": "x"}},
        }
    }
    OmegaConf.save(OmegaConf.create(multirun), tmp_path / "multirun.yaml")
    job = ["task=depth", "sweep=optuna", "model.optimizer.lr=0.00031415926535", "model.unet_lr_mult=0.5"]
    make_cfg([*job, "backbone.timestep=100", f"hydra.sweep.dir={tmp_path}", "hydra.job.num=3"])
    assert _run_name() == "3:lr=0.0003142,unet_lr_mult=0.5,timestep=100"
    assert _short_names(["model.head.channels", "model.neck.channels", "backbone.timestep"]) == {
        "model.head.channels": "head.channels",
        "model.neck.channels": "neck.channels",
        "backbone.timestep": "timestep",
    }


@pytest.mark.slow  # three tiny trainings in one process: 19 s on an idle 2-core host
def test_sweep_over_backbone_families(nyu_root, tmp_path):
    """sweep=backbones with the family list narrowed on the command line to the tiny topologies (as a user would
    write `-m backbone=...`): one job per family, each finished, each checkpoint recording its family and holding
    that family's UNet (SDXL: the added time/text embedding; three feature levels)."""
    sweep = tmp_path / "families"
    args = [
        "sweep=backbones",
        "backbone=tiny,tiny_sd21,tiny_sdxl",  # replaces the config's sd15,sd21,sd21_base,sdxl
        "task=depth",
        f"data.root={nyu_root}",
        "data.num_workers=0",
        f"paths.cache_dir={tmp_path / 'cache'}",
        *TINY_MODEL["depth"],
        "trainer=cpu",
        "data.batch_size=2",
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        "trainer.limit_val_batches=1",
        "test=false",
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_train(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _summary(sweep / "summary.csv")
    assert [r["status"] for r in rows] == ["completed"] * 3
    assert all(0 < float(r["objective"]) < 10 for r in rows)  # val/rmse
    import torch

    for job, (name, family) in enumerate([("tiny", "sd15"), ("tiny_sd21", "sd21"), ("tiny_sdxl", "sdxl")]):
        assert f"backbone={name} " in rows[job]["overrides"]
        state = torch.load(sweep / str(job) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert state["global_step"] == 1 and state["vpd_config"]["backbone"]["family"] == family
        keys = state["state_dict"]
        assert any(k.startswith("backbone.unet.add_embedding.") for k in keys) == (family == "sdxl")
        assert any(k.startswith("backbone.unet.up_blocks.3.") for k in keys) == (family != "sdxl")


def test_backbones_sweep_config_lists_every_family():
    from tiny_config import make_cfg

    from vpd_lightning.backbone.families import FAMILIES

    cfg = make_cfg(["sweep=backbones"])
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper.params.backbone.split(",") == list(FAMILIES)


@pytest.mark.slow
def test_multitask_weight_sweep_runs_each_weight_and_returns_the_score(nyu_root, ade_root, tiny_sd_dir, tmp_path):
    """The README's `experiment=multitask_depth_segmentation sweep=multitask_weights`, narrowed on the command line
    to two segmentation weights, on the tiny model (1 step + 1 validation batch per job): each job trains with its
    weight (its logged train/loss is depth's loss + weight x segmentation's) and returns val/multitask_score, which
    the summary records as its objective."""
    from test_distributed import _rows
    from tiny_config import tiny_multitask

    roots = {"depth": nyu_root, "segmentation": ade_root}
    sweep = tmp_path / "weights"
    args = [
        *tiny_multitask(["depth", "segmentation"], roots, tiny_sd_dir, tmp_path),
        "experiment=multitask_depth_segmentation",
        "sweep=multitask_weights",
        "+multitask.loss_weights.segmentation=0.5,2.0",  # replaces the sweep's 0.5,1.0,2.0
        "trainer=cpu",
        "data.depth.batch_size=2",
        "data.segmentation.batch_size=2",
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        "logger=csv",
        "callbacks=none",
        "test=false",
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_train(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _summary(sweep / "summary.csv")
    assert [(r["job"], r["status"]) for r in rows] == [("0", "completed"), ("1", "completed")]
    for row, weight in zip(rows, (0.5, 2.0)):
        job = Path(row["output_dir"])
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert cfg.multitask.loss_weights.segmentation == weight and cfg.monitor == "val/multitask_score"
        [train] = _rows(job, "train/")
        want = float(train["train/depth/loss"]) + weight * float(train["train/segmentation/loss"])
        assert float(train["train/loss"]) == pytest.approx(want, rel=1e-6)
        [val] = _rows(job, "val/multitask_score")
        score = float(val["val/multitask_score"])
        assert 0 <= score <= 1 and float(row["objective"]) == pytest.approx(score, rel=1e-6)
