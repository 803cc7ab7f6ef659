"""Entry points: Hydra composition, in-process fast_dev_run, a short fit + evaluate, and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from tiny_config import make_cfg, run_train, tiny_task

from vpd_lightning.config import CONFIG_DIR


def common(nyu_root, tiny_sd_dir, tmp_path) -> list[str]:
    return [
        *tiny_task("depth", nyu_root, tiny_sd_dir, tmp_path),
        "trainer=cpu",
        "data.batch_size=2",
        f"paths.output_dir={tmp_path / 'out'}",
    ]


def test_default_config_is_the_paper_recipe():
    cfg = make_cfg(["task=depth", "data.root=/nonexistent"])
    assert cfg.model.optimizer.lr == 5e-4 and cfg.model.optimizer.weight_decay == 0.1
    assert cfg.model.scheduler.min_lr == 3e-5 and cfg.model.unet_lr_mult == 0.01
    assert cfg.trainer.max_epochs == 25 and cfg.data.batch_size == 3 and list(cfg.data.crop_size) == [480, 480]
    assert cfg.backbone.timestep == 1 and cfg.backbone.attention == "none" and cfg.backbone.scale_latents is False
    assert cfg.model.class_embeddings.templates == "imagenet80" and cfg.model.class_embeddings.max_length == 20
    assert cfg.model.input_padding == 64 and cfg.model.shift_size == 2 and cfg.model.flip_test
    assert cfg.sd_path.endswith("stable-diffusion-v1-5") and cfg.monitor == "val/rmse"
    assert len(cfg.data.class_names) == 27 and cfg.data.cutdepth
    assert cfg.finetune.mode == "full" and cfg.backbone.finetune.mode == "full"  # VPD fine-tunes the whole UNet


def test_fast_dev_run_in_process(nyu_root, tiny_sd_dir, tmp_path):
    from vpd_lightning.train import train

    cfg = make_cfg([*common(nyu_root, tiny_sd_dir, tmp_path), "debug=fdr"])
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 1
    assert metrics["train/loss"] > 0
    assert 0 < metrics["val/rmse"] < 10 and 0 <= metrics["val/d1"] <= 1
    # the class embeddings were computed with the CLIP text encoder and cached on disk
    assert len(list((tmp_path / "cache" / "prompts").glob("*.pt"))) == 1


def test_fit_then_evaluate_checkpoint(nyu_root, tiny_sd_dir, tmp_path, capsys):
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.train import train

    overrides = [*common(nyu_root, tiny_sd_dir, tmp_path), "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    metrics, objects = train(make_cfg(overrides))
    best = Path(objects["trainer"].checkpoint_callback.best_model_path)
    assert best.is_file() and (best.parent / "last.ckpt").is_file()
    assert (tmp_path / "out" / "csv" / "metrics.csv").is_file()
    out = capsys.readouterr().out
    assert "test/rmse" in out
    evaluated = evaluate(make_cfg([*overrides, "train=false", f"ckpt_path={best}"]))
    assert evaluated["test/rmse"] == pytest.approx(metrics["test/rmse"], rel=1e-5)


def test_cli_fast_dev_run(nyu_root, tiny_sd_dir, tmp_path):
    args = [a for a in common(nyu_root, tiny_sd_dir, tmp_path) if not a.startswith("paths.output_dir")]
    result = run_train([*args, "debug=fdr", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "val/rmse" in output
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
    # the run's folder is printed when it starts and when it ends
    assert output.count(f"output folder: {tmp_path / 'run'}") == 2


def test_cli_missing_data_root_stops_at_once(tmp_path):
    result = run_train(
        ["task=depth", f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path
    )
    assert result.returncode != 0
    assert "NYUv2 test split not found" in result.stderr and "Expected layout" in result.stderr
    assert "official_splits/test" in result.stderr


def test_evaluate_requires_a_checkpoint(tmp_path):
    from vpd_lightning.evaluate import evaluate

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=["task=depth", f"ckpt_path={tmp_path / 'x.ckpt'}"])
    assert cfg.train is False and cfg.test is True
    with pytest.raises(FileNotFoundError, match="x.ckpt"):
        evaluate(cfg)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=["task=depth"])
    with pytest.raises(ValueError, match="ckpt_path="):
        evaluate(cfg)


def test_segmentation_fast_dev_run_in_process(ade_root, tiny_sd_dir, tmp_path):
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.train import train

    overrides = [
        *tiny_task("segmentation", ade_root, tiny_sd_dir, tmp_path),
        "trainer=cpu",
        "data.batch_size=2",
        f"paths.output_dir={tmp_path / 'out'}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
    ]
    metrics, objects = train(make_cfg(overrides))
    model = objects["model"]
    assert model.num_classes == 150 and model.context(1).shape == (1, 150, 32)
    assert 0 <= metrics["val/miou"] <= 1 and 0 <= metrics["test/aacc"] <= 1
    assert model.per_class_table and "wall" in model.per_class_table
    best = objects["trainer"].checkpoint_callback.best_model_path
    evaluated = evaluate(make_cfg([*overrides, "train=false", f"ckpt_path={best}"]))
    assert evaluated["test/miou"] == pytest.approx(metrics["test/miou"], abs=1e-6)


def test_referring_fit_and_evaluate_in_process(refer_root, tiny_sd_dir, tmp_path):
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.train import train

    overrides = [
        *tiny_task("referring", refer_root, tiny_sd_dir, tmp_path),
        "trainer=cpu",
        "data.batch_size=4",
        f"paths.output_dir={tmp_path / 'out'}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
    ]
    metrics, objects = train(make_cfg(overrides))
    model = objects["model"]
    assert model.head.conv1_4.in_channels == 64 + 64 + 12  # c4 + (c3 + 12 token maps)
    assert 0 <= metrics["val/oiou"] <= 1 and 0 <= metrics["test/precision@0.5"] <= 1
    best = objects["trainer"].checkpoint_callback.best_model_path
    evaluated = evaluate(make_cfg([*overrides, "train=false", f"ckpt_path={best}"]))
    assert evaluated["test/oiou"] == pytest.approx(metrics["test/oiou"], abs=1e-6)


@pytest.mark.parametrize("task", ["depth", "segmentation", "referring"])
def test_every_task_composes_with_the_paper_recipe(task):
    cfg = make_cfg([f"task={task}"])
    expected = {
        "depth": ("val/rmse", 5e-4, 0.01),
        "segmentation": ("val/miou", 8e-5, 0.1),
        "referring": ("val/oiou", 5e-5, 1.0),
    }[task]
    assert (cfg.monitor, cfg.model.optimizer.lr, cfg.model.unet_lr_mult) == expected
    assert cfg.backbone.attention == ("none" if task == "depth" else "a32")


@pytest.mark.slow  # 15 s; tests/test_sweeps.py runs multiruns in the default suite
def test_sweep_config_runs_a_multirun(nyu_root, tiny_sd_dir, tmp_path):
    args = [a for a in common(nyu_root, tiny_sd_dir, tmp_path) if not a.startswith("paths.output_dir")]
    result = run_train([*args, "debug=fdr", "sweep=latent_scaling", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    from omegaconf import OmegaConf

    values = [
        OmegaConf.load(tmp_path / "sweep" / str(i) / ".hydra" / "config.yaml").backbone.scale_latents for i in (0, 1)
    ]
    assert values == [False, True]
