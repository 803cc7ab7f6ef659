"""Multi-process training: samplers, synchronised batch norm, a 2-process CPU DDP run against 1 process,
and the FSDP / SLURM configs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from tiny_config import REPO, cli_env, make_cfg, run_train, tiny_task
from tolerance import adamw_noise_atol, float32_rtol
from torch import nn

from vpd_lightning.data.sampling import ResumableDataLoader, SeededDataset, VPDSampler


def _batches(world: int, batch: int, n: int = 10, epoch: int = 0) -> list[list[list[int]]]:
    out = []
    for rank in range(world):
        sampler = VPDSampler(range(n), shuffle=True, seed=7, drop_last=True, num_replicas=world, rank=rank)
        sampler.set_epoch(epoch)
        idx = list(sampler)
        out.append([idx[i : i + batch] for i in range(0, len(idx) - batch + 1, batch)])
    return out


def test_one_process_and_two_processes_see_the_same_global_batches():
    (one,) = _batches(1, 4)
    two = _batches(2, 2)
    for step, global_batch in enumerate(one):
        assert sorted(global_batch) == sorted(two[0][step] + two[1][step])
    assert _batches(1, 4, epoch=1) != _batches(1, 4, epoch=0)  # a new permutation every epoch


def test_evaluation_split_is_unpadded_and_complete():
    shares = [list(VPDSampler(range(7), shuffle=False, pad=False, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(sum(shares, [])) == list(range(7))  # every image exactly once (DistributedSampler pads)
    assert [len(VPDSampler(range(7), shuffle=False, pad=False, num_replicas=3, rank=r)) for r in range(3)] == [3, 2, 2]


def test_loader_state_skips_the_consumed_samples():
    data = list(range(12))
    make = lambda: ResumableDataLoader(  # noqa: E731
        data, batch_size=2, sampler=VPDSampler(data, shuffle=True, seed=3, drop_last=True), drop_last=True
    )
    full = [b.tolist() for b in make()]
    loader = make()
    it = iter(loader)
    seen = [next(it).tolist(), next(it).tolist()]
    state = loader.state_dict()
    assert state == {"epoch": 0, "consumed": 4}
    resumed = make()
    resumed.load_state_dict(state)
    assert seen + [b.tolist() for b in resumed] == full
    assert [b.tolist() for b in resumed] == full  # the offset applies to one epoch only


def test_seeded_dataset_draws_depend_on_the_key_only():
    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.rand(()).item()

    data = SeededDataset(Noise(), seed=1)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = [data[k] for k in (0, 3, 7)]
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is left alone
    assert [data[k] for k in (7, 3, 0)] == first[::-1]
    assert data[2] != data[7]  # key 7 = epoch 1, index 2: a fresh draw


def test_allreduce_batchnorm_is_plain_batchnorm_in_one_process_and_reverts():
    from vpd_lightning.distributed import AllReduceBatchNorm

    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    ref = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    ref.load_state_dict(model.state_dict())
    AllReduceBatchNorm().apply(model)
    assert type(model[1]).__name__ == "AllReduceBatchNorm2d" and isinstance(model[1], nn.BatchNorm2d)
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(model(x), ref(x))
    AllReduceBatchNorm().revert(model)
    assert type(model[1]) is nn.BatchNorm2d


def _args(task: str, root, tiny_sd_dir, tmp_path, run: str, *extra: str) -> list[str]:
    if task == "segmentation":
        task_args = ["callbacks.prediction_panels.attention=false"]
    else:  # depth, the embedded default; SiLog over the global batch (per process by default, as VPD)
        task_args = ["model.silog_sync=true"]
    return [
        *tiny_task(task, root, tiny_sd_dir, tmp_path),
        "data.sample_seeding=true",
        *task_args,
        "trainer.max_steps=4",
        "trainer.val_check_interval=1.0",
        "trainer.log_every_n_steps=1",
        "test=false",
        f"hydra.run.dir={tmp_path / run}",
        *extra,
    ]


def _rows(run_dir: Path, prefix: str) -> list[dict]:
    with (run_dir / "csv" / "metrics.csv").open() as f:
        rows = [{k: v for k, v in r.items() if k.startswith(prefix) and v} for r in csv.DictReader(f)]
    return [r for r in rows if r]


# segmentation: slow (54 s on a 2.0 GHz 2-core host); depth keeps the DDP contract in the default suite
@pytest.mark.parametrize("task", ["depth", pytest.param("segmentation", marks=pytest.mark.slow)])
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(
    task, nyu_root, ade_root, tiny_sd_dir, tmp_path
):
    """2 CPU processes (gloo) x 2 images against 1 process x 4 images, same data and seed: the same global
    batches (VPDSampler), augmentations (data.sample_seeding), batch statistics (synchronised BN) and, for
    depth, loss (model.silog_sync); segmentation's cross-entropy over equal crops needs no option."""
    root = nyu_root if task == "depth" else ade_root
    # one thread per process in both runs: image resizing rounds differently with 1 and 2 threads
    env = cli_env(OMP_NUM_THREADS="1")
    runs = {
        "one": ["trainer=cpu", "trainer.devices=1", "data.batch_size=4"],
        "two": ["trainer=ddp_cpu", "data.batch_size=2"],
    }
    for name, extra in runs.items():
        result = run_train(_args(task, root, tiny_sd_dir, tmp_path, name, *extra), env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = _rows(tmp_path / "one", "val/"), _rows(tmp_path / "two", "val/")
    # validations after epochs 1 and 2; the evaluation split is uneven across the 2 ranks for segmentation (2 + 1)
    assert len(one) == len(two) == 2 and len(one[0]) >= 3
    # The two runs sum each step's gradients over the global batch's pixels in another order (one process vs two
    # all-reduced halves): 4 steps + the validation forward = 5 passes through sums of 4 x 48 x 48 terms. A
    # thresholded metric (depth's d1, segmentation's argmax) may also flip one evaluated pixel.
    rtol = float32_rtol(4 * 48 * 48, passes=5)
    pixel = 1.0 / (3 * 64 * 64 if task == "segmentation" else 4 * 64 * 96)
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key in a:
            assert float(a[key]) == pytest.approx(float(b[key]), rel=rtol, abs=pixel), key
    if task == "depth":  # the logged loss is the global-batch SiLog in both runs
        la = [float(r["train/loss"]) for r in _rows(tmp_path / "one", "train/loss")]
        lb = [float(r["train/loss"]) for r in _rows(tmp_path / "two", "train/loss")]
        assert la == pytest.approx(lb, rel=rtol)
    sa = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    sb = torch.load(tmp_path / "two" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert sa["global_step"] == sb["global_step"] == 4
    # weights and the heads' BN running statistics. Tolerance: a conv bias followed by batch norm has a zero
    # gradient in exact arithmetic, so AdamW turns the rounding noise of the two summation orders into updates of
    # up to ~lr per step (adamw_noise_atol: Adam's step bound summed over the steps' lrs); a real mismatch (another
    # sample order, unsynchronised statistics) moves every weight and shows in the loss and metrics above.
    lrs = [max(float(v) for v in row.values()) for row in _rows(tmp_path / "one", "lr-")]  # each step's largest
    assert len(lrs) == 4
    atol = adamw_noise_atol(lrs)
    for key, value in sa["state_dict"].items():
        # norm-wise: a sum's rounding error scales with its terms, not with the (possibly cancelled) result, so
        # an element near zero (a BN running mean of 0.02) is compared on the scale of its tensor
        a, b = value.float(), sb["state_dict"][key].float()
        if a.numel() == 0:
            continue
        scale = max(a.abs().max().item(), b.abs().max().item())
        assert (a - b).abs().max().item() <= rtol * scale + atol, key


def test_fsdp_config_wraps_each_unet_block(tiny_sd_dir):
    from diffusers import UNet2DConditionModel
    from hydra.utils import instantiate

    cfg = make_cfg(["trainer=fsdp"])
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.strategy.use_orig_params
    strategy = instantiate(cfg.trainer.strategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet")
    wrapped = [m for m in unet.modules() if type(m) in policy._module_classes]
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    assert len(wrapped) == len(blocks) and all(any(w is b for b in blocks) for w in wrapped)


def test_slurm_cluster_config_matches_the_trainer():
    cfg = make_cfg(["cluster=slurm", "trainer.num_nodes=2", "trainer.devices=4"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert cfg.trainer.strategy._target_.endswith("DDPStrategy") and cfg.trainer.sync_batchnorm
    assert cfg.auto_resume is True
    targets = [p._target_ for p in cfg.trainer.plugins]
    assert targets == [
        "vpd_lightning.checkpoint.AtomicCheckpointIO",
        "lightning.pytorch.plugins.environments.SLURMEnvironment",
    ]


def test_silog_sync_is_the_plain_loss_in_one_process_and_cutdepth_schedule_is_checked(nyu_root):
    from vpd_lightning.data.nyuv2 import NYUv2Dataset
    from vpd_lightning.losses import SiLogLoss

    pred = torch.rand(2, 1, 8, 8) * 5 + 0.5
    target = torch.rand(2, 1, 8, 8) * 5
    assert torch.equal(SiLogLoss(sync=True)(pred, target), SiLogLoss()(pred, target))
    with pytest.raises(ValueError, match="cutdepth_schedule"):
        NYUv2Dataset(nyu_root, "train", cutdepth_schedule="sometimes")


# lora under FSDP: only with `make test-full` (test_finetune covers lora under DDP in the default suite)
@pytest.mark.parametrize("finetune", ["full", pytest.param("lora", marks=pytest.mark.slow)])
def test_fsdp_trains_the_vpd_model_and_its_checkpoint_evaluates_alone(finetune, nyu_root, tiny_sd_dir, tmp_path):
    """trainer=fsdp's wrapping (one unit per UNet block, frozen VAE, forward hooks, attention processors; with
    finetune=lora, peft-wrapped projections and a frozen base in every unit) on 2 CPU processes through a
    test-only strategy subclass (Lightning runs FSDP on GPUs only); the full checkpoint it writes is then
    evaluated in one process (taking the checkpoint's finetune mode) and reproduces the last validation."""
    from vpd_lightning.evaluate import evaluate

    common = tiny_task("depth", nyu_root, tiny_sd_dir, tmp_path)
    train_args = [
        "trainer=fsdp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "trainer.sync_batchnorm=false",
        "trainer.strategy._target_=fsdp_cpu.CPUFSDPStrategy",
        "trainer.strategy.sync_module_states=false",  # a CPU module: every rank has the same seed instead
        "trainer.plugins=[{_target_: vpd_lightning.distributed.AllReduceBatchNorm}]",
        "data.batch_size=2",
        "trainer.max_steps=4",
        "test=false",
        f"hydra.run.dir={tmp_path / 'fsdp'}",
        f"finetune={finetune}",
    ]
    result = run_train([*common, *train_args], env=cli_env(REPO / "tests"))
    assert result.returncode == 0, result.stderr[-3000:]
    # the root, one unit per UNet block (torch also wraps each batch norm alone, to keep it in fp32)
    unet = json.loads((Path(tiny_sd_dir) / "unet" / "config.json").read_text())
    line = next(x for x in result.stdout.splitlines() if x.startswith("FSDP units:"))
    units = line.split()[2:]
    expected = [*unet["down_block_types"], unet["mid_block_type"], *unet["up_block_types"]]
    assert units[0] == "DepthEstimationTask"
    assert sorted(u for u in units[1:] if not u.endswith("BatchNorm2d")) == sorted(expected)
    last = tmp_path / "fsdp" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["global_step"] == 4
    # full (unsharded) tensors under the plain parameter names
    assert state["state_dict"]["head.last_layer_depth.2.weight"].shape == (1, 16, 3, 3)
    assert not any("_fsdp_wrapped_module" in k or "flat_param" in k for k in state["state_dict"])
    lora_b = [v for k, v in state["state_dict"].items() if ".lora_B." in k]
    assert (len(lora_b) > 0) == (finetune == "lora") and all(v.abs().sum() > 0 for v in lora_b)  # B trained
    last_val = _rows(tmp_path / "fsdp", "val/")[-1]
    overrides = [*common, "trainer=cpu", f"ckpt_path={last}", f"paths.output_dir={tmp_path / 'eval'}"]
    metrics = evaluate(make_cfg(overrides, "evaluate"))
    # the same weights; the two ranks' batches of 2 against one batch of 4 round the forward's sums (and the
    # metric's sum over the 4 x 64 x 96 evaluated pixels) in another order
    assert metrics["test/rmse"] == pytest.approx(float(last_val["val/rmse"]), rel=float32_rtol(4 * 64 * 96, passes=2))


@pytest.mark.slow  # 2 CPU processes per case: 22-36 s each on an idle 2-core host
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
@pytest.mark.parametrize("family", ["sd21", "sdxl"])
def test_ddp_and_fsdp_train_each_family(family, strategy, ade_root, tiny_family_dir, tmp_path):
    """Segmentation (class-embedding context, A32 attention maps) on the tiny SD 2.x and SDXL topologies under
    2-process DDP and FSDP (CPU): FSDP wraps every UNet block of the family (SDXL: 3 levels, the same diffusers
    block classes), the added conditioning of SDXL (time ids through add_embedding) is trained through the
    wrapped model, and the checkpoint records the family."""
    from safetensors.torch import load_file

    root = tiny_family_dir(family)
    run = tmp_path / "run"
    args = [
        *tiny_task("segmentation", ade_root, root, tmp_path),
        f"backbone={family}",
        "callbacks.prediction_panels.attention=false",
        "data.batch_size=2",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=1",
        "test=false",
        f"hydra.run.dir={run}",
    ]
    if strategy == "ddp":
        args.append("trainer=ddp_cpu")
    else:
        args += [
            "trainer=fsdp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.precision=32-true",
            "trainer.sync_batchnorm=false",
            "trainer.strategy._target_=fsdp_cpu.CPUFSDPStrategy",
            "trainer.strategy.sync_module_states=false",
            "trainer.plugins=[{_target_: vpd_lightning.distributed.AllReduceBatchNorm}]",
        ]
    result = run_train(args, env=cli_env(REPO / "tests"))
    assert result.returncode == 0, result.stderr[-3000:]
    unet = json.loads((root / "unet" / "config.json").read_text())
    if strategy == "fsdp":
        line = next(x for x in result.stdout.splitlines() if x.startswith("FSDP units:"))
        units = line.split()[2:]
        expected = [*unet["down_block_types"], unet["mid_block_type"], *unet["up_block_types"]]
        assert units[0] == "SemanticSegmentationTask"
        assert sorted(u for u in units[1:] if not u.endswith("BatchNorm2d")) == sorted(expected)
        assert len(expected) == (7 if family == "sdxl" else 9)
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 2 and state["vpd_config"]["backbone"]["family"] == family
    weights = state["state_dict"]
    assert not any("_fsdp_wrapped_module" in k or "flat_param" in k for k in weights)
    initial = load_file(root / "unet" / "diffusion_pytorch_model.safetensors")
    trained = "add_embedding.linear_1.weight" if family == "sdxl" else "conv_in.weight"
    assert (family == "sdxl") == ("add_embedding.linear_1.weight" in initial)
    # full fine-tuning: the UNet (SDXL: the added time/text embedding too) moved from the loaded weights
    assert not torch.equal(weights[f"backbone.unet.{trained}"], initial[trained])
