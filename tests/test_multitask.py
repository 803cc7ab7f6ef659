"""task=multitask: one backbone for several tasks; per-task backward; one checkpoint serving every task."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from tiny_config import make_cfg, tiny_multitask
from tolerance import EPS32, float32_rtol

from vpd_lightning.utils.errors import ConfigError, find_user_error


@pytest.fixture
def roots(nyu_root, ade_root, refer_root):
    return {"depth": nyu_root, "segmentation": ade_root, "referring": refer_root}


def _cfg(tasks, roots, tiny_sd_dir, tmp_path, *extra):
    return make_cfg(
        [*tiny_multitask(tasks, roots, tiny_sd_dir, tmp_path), f"paths.output_dir={tmp_path / 'run'}", *extra]
    )


def _depth_batch(n=2, size=48):
    g = torch.Generator().manual_seed(1)
    return {
        "image": torch.rand(n, 3, size, size, generator=g),
        "class_id": torch.tensor([0, 3][:n]),
        "depth": torch.rand(n, 1, size, size, generator=g) * 5 + 0.5,
    }


def _seg_batch(n=2, size=48):
    g = torch.Generator().manual_seed(2)
    return {
        "image": torch.rand(n, 3, size, size, generator=g),
        "label": torch.randint(0, 150, (n, size, size), generator=g),
    }


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_task_lists_and_weights_are_one_line_errors_naming_the_tasks(roots, tiny_sd_dir, tmp_path):
    from vpd_lightning.data.multitask import MultiTaskDataModule, check_task_list

    with pytest.raises(ConfigError, match=r"task 'depth' is listed twice .*depth, segmentation, referring") as err:
        check_task_list(["depth", "segmentation", "depth"])
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"unknown task 'normals'; the tasks are depth, segmentation, referring"):
        check_task_list(["normals"])
    with pytest.raises(ConfigError, match=r"lists 'segmentation' but data.segmentation is missing; .* for: depth"):
        MultiTaskDataModule(["depth", "segmentation"], depth={"_target_": "builtins.dict"})
    from vpd_lightning.data.multitask import check_accumulate

    # per-task accumulation: 1 by default; a memory preset's entries for tasks not trained are ignored
    assert check_accumulate({"segmentation": 2, "referring": 4}, ["depth", "segmentation"]) == {
        "depth": 1,
        "segmentation": 2,
    }
    with pytest.raises(ConfigError, match=r"^multitask.accumulate: unknown task 'normals'; the tasks are depth, "):
        check_accumulate({"normals": 2}, ["depth"])
    with pytest.raises(ConfigError, match=r"accumulate.depth must be an integer >= 1, got 0 \(the trained tasks are d"):
        check_accumulate({"depth": 0}, ["depth", "segmentation"])

    cfg = _cfg(["depth", "segmentation"], roots, tiny_sd_dir, tmp_path, "multitask.loss_weights={referring: 2.0}")
    with pytest.raises(Exception) as err:
        instantiate(cfg.model, _convert_="all")
    message = str(find_user_error(err.value))
    assert (
        message
        == "multitask.loss_weights: 'referring' is not trained in this run; the trained tasks are depth, segmentation"
    )


# ------------------------------------------------------------------------------------------------ the model
@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("multitask")


@pytest.fixture(scope="module")
def model_cfg(nyu_root, ade_root, refer_root, tiny_sd_dir, module_dir):
    roots = {"depth": nyu_root, "segmentation": ade_root, "referring": refer_root}
    return _cfg(["depth", "segmentation"], roots, tiny_sd_dir, module_dir)


@pytest.fixture(scope="module")
def two_task_model(model_cfg):
    """A depth + segmentation model (built once: the tests below leave it as they found it)."""
    torch.manual_seed(0)
    return instantiate(model_cfg.model, _convert_="all")


def test_one_backbone_and_each_task_keeps_its_variant_head_and_lr_rules(two_task_model):
    model = two_task_model
    depth, seg = model.tasks["depth"], model.tasks["segmentation"]
    assert depth.backbone is seg.backbone is model.backbone
    keys = model.state_dict().keys()
    assert not any(k.startswith("tasks.") and ".backbone." in k for k in keys)  # the UNet is stored once
    unet = sum(p.numel() for p in model.backbone.parameters())
    assert sum(p.numel() for p in model.parameters()) < 2 * unet
    # depth's head sees the features without attention maps, segmentation's with 150 A32 maps
    assert model.attention == {"depth": "none", "segmentation": "a32"}
    with model.variant("depth"):
        depth_in = model.backbone.out_channels(1)
    assert depth_in == list(model.backbone.unet.config.block_out_channels)
    with model.variant("segmentation"):
        feats = model.backbone(torch.zeros(1, 3, 48, 48), seg.context(1))
    assert [f.shape[1] for f in feats] == model.backbone.out_channels(150)
    assert model.backbone.attention == "a32"  # restored after each context

    groups = {g["name"]: g for g in model.parameter_groups()}
    # the shared UNet follows the first task (depth: 5e-4 x 0.01); each head its own task's optimiser
    assert groups["depth_x0.01"]["lr"] == pytest.approx(5e-4 * 0.01)
    assert groups["segmentation_x1"]["lr"] == pytest.approx(8e-5) and groups["segmentation_x1"]["weight_decay"] == 1e-3
    by_param = {id(p): g["task"] for g in groups.values() for p in g["params"]}
    assert all(by_param[id(p)] == "segmentation" for p in seg.head.parameters() if p.requires_grad)
    assert all(by_param[id(p)] == "depth" for p in model.backbone.parameters() if p.requires_grad)


def test_per_task_backward_accumulates_the_joint_gradient(two_task_model):
    model = two_task_model
    batches = {"depth": _depth_batch(), "segmentation": _seg_batch()}

    def grads(per_task: bool) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(5)  # the same dropout masks in both passes
        losses = []
        for task, batch in batches.items():
            with model.variant(task):
                loss = model.weighted_loss(task, model.tasks[task].training_loss(batch))
            if per_task:
                loss.backward()  # the graph of this task is freed before the next one runs
            losses.append(loss)
        if not per_task:
            sum(losses).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    separate, joint = grads(True), grads(False)
    model.zero_grad(set_to_none=True)
    assert separate.keys() == joint.keys() and any(k.startswith("tasks.depth.head") for k in joint)
    for name in joint:  # one extra float32 addition of two partial gradients
        scale = joint[name].abs().max().item()
        assert torch.allclose(separate[name], joint[name], rtol=0, atol=4 * float32_rtol(2) * scale + 1e-30), name


def test_accumulation_backwards_micro_batches_with_the_whole_batch_gradient(two_task_model):
    """accumulate={segmentation: 2, depth: 2}: four backward passes of one image each. Segmentation's
    cross-entropy (a mean over equally many labelled pixels per image) gets the gradient of the whole batch;
    depth's SiLog the mean of its micro-batch losses' gradients (as Lightning's accumulate_grad_batches). Eval
    mode: batch norm with running statistics, no dropout, so that a sample's output does not depend on the rest of
    its batch."""
    model = copy.copy(two_task_model)  # a shallow copy: `accumulate` set below stays on the copy
    batches = {"depth": _depth_batch(), "segmentation": _seg_batch()}
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        model.accumulate = {"depth": 2, "segmentation": 2}
        micro = model.micro_batches("depth", batches["depth"])
        assert [(m["image"].shape[0], share) for m, share in micro] == [(1, 0.5), (1, 0.5)]
        assert torch.equal(micro[1][0]["depth"], batches["depth"]["depth"][1:])
        model.zero_grad(set_to_none=True)
        total, losses = model.backward_tasks(batches, ["depth", "segmentation"])
        accumulated = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

        model.zero_grad(set_to_none=True)  # the reference: segmentation's whole batch, depth's two halves
        with model.variant("segmentation"):
            seg = model.tasks["segmentation"].training_loss(batches["segmentation"])
        with model.variant("depth"):
            depth = [model.tasks["depth"].training_loss(m) for m, _ in micro]
        (seg + (depth[0] + depth[1]) / 2).backward()
        reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    finally:
        model.zero_grad(set_to_none=True)
        for module, mode in modes.items():
            module.training = mode
    assert losses["segmentation"].item() == pytest.approx(seg.item(), rel=float32_rtol(2 * 48 * 48, passes=5))
    assert total.item() == pytest.approx((seg + (depth[0] + depth[1]) / 2).item(), rel=1e-5)
    assert accumulated.keys() == reference.keys() and any(k.startswith("tasks.segmentation.head") for k in reference)
    # the same sums over the two images' pixels, split in two and added (as one process against two): the
    # tolerance of test_two_process_ddp_multitask_matches_one_process. A gradient that is zero in exact arithmetic
    # (the mid block's self-attention q/k: softmax over its one token) is rounding noise of the model's gradients,
    # below float32's resolution of the largest one: both sides must stay at that noise level.
    rtol = float32_rtol(2 * 48 * 48, passes=5)
    top = max(g.abs().max().item() for g in reference.values())
    for name, want in reference.items():
        scale = want.abs().max().item()
        scale = top if scale < EPS32 * top else scale
        assert (accumulated[name] - want).abs().max().item() <= rtol * scale, name


def test_task_sampling_is_a_function_of_seed_and_step(two_task_model):
    from vpd_lightning.tasks import MultiTaskModel

    model = copy.copy(two_task_model)  # a shallow copy: the options set below stay on the copy
    assert [model.step_tasks(s) for s in range(3)] == [["depth", "segmentation"]] * 3
    model.sampling = "round_robin"
    assert [model.step_tasks(s) for s in range(4)] == [["depth"], ["segmentation"], ["depth"], ["segmentation"]]
    model.sampling, model.sampling_weights = "weights", {"depth": 1.0, "segmentation": 0.0}
    assert all(model.step_tasks(s) == ["depth"] for s in range(20))
    model.sampling = "uniform"
    draws = [tuple(model.step_tasks(s)) for s in range(200)]
    assert draws == [tuple(model.step_tasks(s)) for s in range(200)]  # the same on every process / after a resume
    assert 60 < draws.count(("depth",)) < 140
    model.sampling, model._sizes = "proportional", {"depth": 9, "segmentation": 1}
    assert sum(model.step_tasks(s) == ["depth"] for s in range(200)) > 160
    assert MultiTaskModel.monitor == "val/multitask_score"
    from vpd_lightning.callbacks.throughput import _batch_size

    # a multi-task step's images: every task's batch (an exhausted task under mode=max_size gives None)
    step = {"depth": {"image": torch.zeros(2, 3, 8, 8)}, "segmentation": {"image": torch.zeros(3, 3, 8, 8)}}
    assert _batch_size(step) == 5 and _batch_size({**step, "referring": None}) == 5


def test_uncertainty_weighting_follows_kendall(model_cfg):
    cfg = copy.deepcopy(model_cfg)
    cfg.model.weighting = "uncertainty"
    model = instantiate(cfg.model, _convert_="all")
    with torch.no_grad():
        model.log_vars["depth"].fill_(0.5)
        model.log_vars["segmentation"].fill_(-1.0)
    loss = torch.tensor(2.0)
    # regression: L / (2 sigma^2) + log sigma; classification: L / sigma^2 + log sigma (s = log sigma^2)
    assert model.weighted_loss("depth", loss).item() == pytest.approx(0.5 * (np.exp(-0.5) * 2.0 + 0.5))
    assert model.weighted_loss("segmentation", loss).item() == pytest.approx(np.exp(1.0) * 2.0 - 0.5)
    assert any(g["name"].startswith("depth_x1_no_wd") for g in model.parameter_groups())


# ------------------------------------------------------------------------------------- fit -> evaluate -> predict
def _fit(tasks, roots, tiny_sd_dir, tmp_path, *extra):
    from vpd_lightning.train import train

    args = [
        "trainer=cpu",
        "trainer.max_steps=-1",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        "callbacks.prediction_panels.attention=false",
        "test=false",
        *[f"data.{t}.batch_size=2" for t in tasks],
        *extra,
    ]
    cfg = _cfg(tasks, roots, tiny_sd_dir, tmp_path, *args)
    metrics, objects = train(cfg)
    return cfg, metrics, objects


def test_two_tasks_fit_evaluate_predict_export_and_cut(roots, tiny_sd_dir, tmp_path):
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.export import (
        TaskNotInCheckpointError,
        cut_checkpoint,
        export_model,
        load_checkpoint,
        load_model,
        read_checkpoint,
    )
    from vpd_lightning.predict import Predictor

    cfg, metrics, objects = _fit(
        ["depth", "segmentation"], roots, tiny_sd_dir, tmp_path, "multitask.sampling=round_robin"
    )
    # each task's metrics under its prefix, and the documented score: mean of d1 and mIoU
    assert {"val/depth/rmse", "val/depth/d1", "val/segmentation/miou", "val/multitask_score"} <= metrics.keys()
    expected = (metrics["val/depth/d1"] + metrics["val/segmentation/miou"]) / 2
    assert metrics["val/multitask_score"] == pytest.approx(expected, rel=1e-6)
    assert (tmp_path / "run" / "panels" / "depth").is_dir() and (tmp_path / "run" / "panels" / "segmentation").is_dir()

    # round robin: step 0 trained depth, step 1 segmentation. AdamW counts a parameter's steps only when it has a
    # gradient: each head 1 step (it sat the other step out), the shared UNet 2
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    optimizer = read_checkpoint(ckpt)["optimizer_states"][0]
    steps = {}
    for group in optimizer["param_groups"]:
        steps[group["name"]] = {int(optimizer["state"][i]["step"]) for i in group["params"]}
    assert steps["depth_x0.01"] == {2}  # backbone.unet (depth's UNet multiplier)
    assert steps["segmentation_x1"] == {1} and steps["depth_x1"] == {1}

    # evaluate: each task's test protocol on the checkpoint, the same numbers as the validation of these weights
    result = evaluate(
        _cfg(
            ["depth", "segmentation"],
            roots,
            tiny_sd_dir,
            tmp_path,
            "train=false",
            f"ckpt_path={ckpt}",
            "trainer=cpu",
            "logger=csv",
            "trainer.limit_test_batches=1",
            "trainer.enable_progress_bar=false",
        )
    )
    assert result["test/depth/rmse"] == pytest.approx(metrics["val/depth/rmse"], rel=1e-5)
    assert result["test/segmentation/miou"] == pytest.approx(metrics["val/segmentation/miou"], abs=1e-6)

    # predict by task name: the single-task model cut from the checkpoint predicts what the multi-task one does
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    trained = load_checkpoint(ckpt)  # the whole multi-task model
    assert type(trained).__name__ == "MultiTaskModel"
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad(), trained.variant("segmentation"):
        logits = trained.tasks["segmentation"].predict_logits(x)[0]
    want = logits.argmax(0).numpy()
    got = Predictor.from_pretrained(ckpt, task="segmentation")(image)
    # The two paths run the same weights through the same layers, but the kernels may sum in another order (the
    # cut model is a new module on other memory), so a label may flip only where two classes tie to rounding: the
    # gap between the multi-task model's best logit and the Predictor's choice must stay within float32's bound
    # for every layer's largest reduction, passed through all of them (a real mismatch flips many pixels by far
    # more).
    layers = [m for m in trained.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    reduction = max(m.in_features if isinstance(m, torch.nn.Linear) else m.weight[0].numel() for m in layers)
    bound = float32_rtol(reduction, passes=len(layers)) * float(logits.abs().max())

    def assert_same_labels(got: np.ndarray) -> None:
        chosen = logits.gather(0, torch.from_numpy(got).long()[None])[0]
        gap = (logits.max(0).values - chosen).numpy()
        assert (got != want).mean() <= 0.01 and gap.max() <= bound, ((got != want).sum(), gap.max(), bound)

    assert_same_labels(got)
    with torch.no_grad(), trained.variant("depth"):
        depth_ref = trained.tasks["depth"](torch.zeros(1, 3, 48, 48), torch.tensor([0]))
    depth_model = load_model(ckpt, task="depth")
    assert type(depth_model).__name__ == "DepthEstimationTask" and depth_model.backbone.attention == "none"
    with torch.no_grad():  # SDPA against the captured softmax of the A32 backbone: the same to float rounding
        assert torch.allclose(
            depth_model(torch.zeros(1, 3, 48, 48), torch.tensor([0])), depth_ref, rtol=1e-4, atol=1e-5
        )
    with pytest.raises(TaskNotInCheckpointError, match=r"holds no referring model; its tasks are: depth, segmentation"):
        load_model(ckpt, task="referring")
    with pytest.raises(TaskNotInCheckpointError, match=r"multi-task model \(depth, segmentation\).*task=<name>"):
        Predictor.from_pretrained(ckpt)

    # one exported folder serves both tasks
    folder = export_model(trained, tmp_path / "export")
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in folder.iterdir()}
    assert_same_labels(Predictor.from_pretrained(folder, task="segmentation")(image))
    assert Predictor.from_pretrained(folder, task="depth")(image).shape == (48, 64)

    # cut down to a single-task checkpoint: the segmentation model alone, predicting the same
    cut = cut_checkpoint(ckpt, tmp_path / "seg.ckpt", "segmentation")
    assert not any(k.startswith(("tasks.", "log_vars")) for k in read_checkpoint(cut)["state_dict"])
    assert_same_labels(Predictor.from_pretrained(cut)(image))


def test_three_tasks_fit_evaluate_predict_export(roots, tiny_sd_dir, tmp_path):
    """All three tasks, every task in every step, uncertainty weighting and one shared text adapter: fit, evaluate
    (each task's protocol), predict each task from the checkpoint and from one exported folder."""
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.export import export_model, load_checkpoint, read_checkpoint
    from vpd_lightning.predict import Predictor

    tasks = ["depth", "segmentation", "referring"]
    extra = ["multitask.weighting=uncertainty", "multitask.shared_text_adapter=true"]
    _, metrics, _ = _fit(tasks, roots, tiny_sd_dir, tmp_path, *extra)
    assert {"val/depth/d1", "val/segmentation/miou", "val/referring/oiou", "train/referring/log_var"} <= metrics.keys()
    score = (metrics["val/depth/d1"] + metrics["val/segmentation/miou"] + metrics["val/referring/oiou"]) / 3
    assert metrics["val/multitask_score"] == pytest.approx(score, rel=1e-6)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = read_checkpoint(ckpt)["state_dict"]
    assert not any(".text_adapter." in k for k in state) and any(k.startswith("text_adapter.") for k in state)
    assert all(state[f"log_vars.{t}"].item() != 0.0 for t in tasks)  # learned
    result = evaluate(
        _cfg(tasks, roots, tiny_sd_dir, tmp_path, *extra, "train=false", f"ckpt_path={ckpt}", "trainer=cpu",
             "logger=csv", "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false")
    )  # fmt: skip
    for key in ("depth/rmse", "segmentation/miou", "referring/oiou"):
        assert result[f"test/{key}"] == pytest.approx(metrics[f"val/{key}"], rel=1e-5, abs=1e-6), key
    model = load_checkpoint(ckpt)
    folder = export_model(model, tmp_path / "export")
    assert (folder / "tokenizer").is_dir()
    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    for source in (ckpt, folder):
        assert Predictor.from_pretrained(source, task="depth")(image).dtype == np.float32
        assert Predictor.from_pretrained(source, task="segmentation")(image).shape == (64, 80)
        mask = Predictor.from_pretrained(source, task="referring")(image, sentence="the red square")
        assert mask.dtype == bool and mask.shape == (64, 80)
    # the referring model cut from the checkpoint masks what the multi-task model masks (Predictor's protocol)
    from vpd_lightning.predict import _resize_uint8, _tensor

    sub = model.tasks["referring"]
    predictor = Predictor.from_pretrained(ckpt, task="referring")
    tokens = predictor.tokenizer(
        ["the red square"], padding="max_length", truncation=True, max_length=sub.max_tokens, return_tensors="pt"
    )
    size = predictor.image_size
    x = _tensor([_resize_uint8(image, size, size)], torch.device("cpu"))
    with torch.no_grad(), model.variant("referring"):
        logits = sub(x, tokens.input_ids, tokens.attention_mask)
    want = torch.nn.functional.interpolate(logits, size=(64, 80), mode="bilinear", align_corners=False).argmax(1)[0]
    got = predictor(image, sentence="the red square")
    assert np.array_equal(got, want.numpy())


# ------------------------------------------------------------------------------------------------ scale (slow)
def _cli_args(tasks, roots, tiny_sd_dir, tmp_path, run: str, *extra: str) -> list[str]:
    return [
        *tiny_multitask(tasks, roots, tiny_sd_dir, tmp_path),
        *[f"data.{t}.sample_seeding=true" for t in tasks],
        "trainer.log_every_n_steps=1",
        "logger=csv",
        "callbacks.prediction_panels.attention=false",
        "test=false",
        f"hydra.run.dir={tmp_path / run}",
        *extra,
    ]


@pytest.mark.slow
def test_two_process_ddp_multitask_matches_one_process(roots, tiny_sd_dir, tmp_path):
    """2 CPU processes (gloo) x 2 images per task against 1 process x 4, round robin: steps that hold only one task
    (the other task's head has no gradient) run under DDP without unused-parameter errors and give the same
    validation metrics and weights as one process (tolerances as in test_distributed)."""
    from test_distributed import _rows
    from tiny_config import cli_env, run_train
    from tolerance import adamw_noise_atol

    tasks = ["depth", "segmentation"]
    env = cli_env(OMP_NUM_THREADS="1")
    common = ["multitask.sampling=round_robin", "model.depth.silog_sync=true", "trainer.max_steps=4"]
    runs = {
        "one": ["trainer=cpu", "trainer.devices=1", *[f"data.{t}.batch_size=4" for t in tasks]],
        "two": ["trainer=ddp_cpu", *[f"data.{t}.batch_size=2" for t in tasks]],
    }
    for name, extra in runs.items():
        result = run_train(_cli_args(tasks, roots, tiny_sd_dir, tmp_path, name, *common, *extra), env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = _rows(tmp_path / "one", "val/"), _rows(tmp_path / "two", "val/")
    assert len(one) == len(two) == 2 and {"val/depth/rmse", "val/segmentation/miou"} <= one[0].keys()
    rtol = float32_rtol(4 * 48 * 48, passes=5)
    pixel = 1.0 / (4 * 64 * 96)
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key in a:
            tol = 1.0 / (3 * 64 * 64) if "segmentation" in key else pixel
            assert float(a[key]) == pytest.approx(float(b[key]), rel=rtol, abs=tol), key
    sa = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    sb = torch.load(tmp_path / "two" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert sa["global_step"] == sb["global_step"] == 4
    lrs = [max(float(v) for v in row.values()) for row in _rows(tmp_path / "one", "lr-")]
    atol = adamw_noise_atol(lrs)
    for key, value in sa["state_dict"].items():
        a, b = value.float(), sb["state_dict"][key].float()
        if a.numel() == 0:
            continue
        scale = max(a.abs().max().item(), b.abs().max().item())
        assert (a - b).abs().max().item() <= rtol * scale + atol, key


@pytest.mark.slow
def test_a_killed_multitask_run_resumes_to_the_same_weights(roots, tiny_sd_dir, tmp_path):
    """SIGKILL after the first interval checkpoint (step 3: mid-epoch, the shorter depth loader in its second
    pass), resume with auto_resume: the same weights, AdamW moments and schedules as the uninterrupted run."""
    import os
    import signal
    import subprocess
    import time

    from test_resume import _assert_same_training_state, _kill_children_outside_the_group
    from tiny_config import cli_env, run_train, train_cmd

    tasks = ["depth", "segmentation"]
    extra = [
        "trainer=cpu",
        "data.depth.batch_size=4",  # 2 steps per pass: cycled by max_size_cycle within each 4-step epoch
        "data.segmentation.batch_size=2",
        "trainer.max_steps=8",
        "callbacks.last_checkpoint.every_n_train_steps=3",
    ]
    full, killed = "full", "killed"
    result = run_train(_cli_args(tasks, roots, tiny_sd_dir, tmp_path, full, *extra))
    assert result.returncode == 0, result.stderr[-3000:]
    proc = subprocess.Popen(
        train_cmd(_cli_args(tasks, roots, tiny_sd_dir, tmp_path, killed, *extra)),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    last = tmp_path / killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    _kill_children_outside_the_group(proc.pid)
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert 3 <= state["global_step"] < 8
    depth_state, seg_state = state["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    if state["global_step"] == 3:  # depth: one batch into its second pass; segmentation: 3 of 4 batches
        assert depth_state["consumed"] == 4 and seg_state["consumed"] == 6
    result = run_train(_cli_args(tasks, roots, tiny_sd_dir, tmp_path, killed, *extra, "auto_resume=true"))
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_training_state(tmp_path / full / "checkpoints" / "last.ckpt", last, steps=8)
