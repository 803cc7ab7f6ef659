"""Speed options give the results of the default path within tolerances derived from the arithmetic.

- bf16 autocast vs fp32 on the same weights (features, depth, logits), and the parts kept in fp32;
- regional compilation vs eager;
- the depth test protocol as one batch, and segmentation's sliding windows in batches, vs one pass each;
- the data-wait / step-time split of the throughput callback, and the loader options.

Tolerances. bf16 keeps 8 significant bits: rounding an operand costs a relative error of at most u = 2^-8 (we
take the spacing, twice the round-to-nearest bound). Each autocast op (convolution, linear, matmul) rounds its
two operands and accumulates in fp32, so its output carries an independent relative error of RMS <= sqrt(2) u;
normalisation layers (GroupNorm, LayerNorm) keep activations at unit scale, so relative errors neither grow nor
shrink through the network, and independent errors add in quadrature: after L rounding ops the relative RMS error
of an output is <= u sqrt(2 L). L is counted, not guessed: the convolutions and linear layers a forward runs.
fp32 paths that differ only in summation order (batched vs single kernels, compiled vs eager fusions) differ per
op by at most sqrt(n) eps_32 relatively (a random walk over a fan-in of n terms, eps_32 = 2^-23), so after L ops
by <= eps_32 sqrt(n L), n the largest fan-in.
"""

from __future__ import annotations

import copy
import functools
import math
import time

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from vpd_lightning.backbone import DiffusionBackbone
from vpd_lightning.heads import FPN, FPNHead, VPDDepthHead
from vpd_lightning.inference import slide_inference
from vpd_lightning.losses import SiLogLoss
from vpd_lightning.tasks import DepthEstimationTask, SemanticSegmentationTask

U_BF16 = 2.0**-8
EPS_32 = 2.0**-23


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative L2 difference of ``a`` to the reference ``b``."""
    return float((a.float() - b.float()).norm() / b.float().norm())


def rounding_ops(model: nn.Module, run) -> tuple[int, int]:
    """(number of conv/linear calls, largest fan-in) of ``run()``: the L and n of the module docstring."""
    calls, fan_in = [0], [1]

    def hook(module, args, out):
        calls[0] += 1
        w = module.weight
        fan_in[0] = max(fan_in[0], w[0].numel() if not isinstance(module, nn.ConvTranspose2d) else w[:, 0].numel())

    kinds = (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return calls[0], fan_in[0]


def _build_task(kind: str, tiny_sd_dir, **backbone_options):
    """The tiny depth (attention none) or segmentation (A32) task of these tests, seeded."""
    torch.manual_seed(0)
    if kind == "depth":
        backbone = DiffusionBackbone.from_pretrained(tiny_sd_dir, attention="none", **backbone_options)
        return DepthEstimationTask(
            backbone,
            functools.partial(VPDDepthHead, fusion_channels=32, head_channels=16),
            torch.randn(5, 32),
            functools.partial(torch.optim.AdamW),
        )
    backbone = DiffusionBackbone.from_pretrained(tiny_sd_dir, attention="a32", **backbone_options)
    return SemanticSegmentationTask(
        backbone,
        functools.partial(FPN, out_channels=16),
        functools.partial(FPNHead, channels=16),
        class_embeddings=torch.randn(6, 32),
        optimizer=functools.partial(torch.optim.AdamW),
        crop_size=(64, 64),
        stride=(40, 40),
        test_scale=(256, 64),
    )


@pytest.fixture(scope="module")
def depth_task(tiny_sd_dir):
    task = _build_task("depth", tiny_sd_dir)
    # VPD initialises the head's last layers with std 1e-3 (an output of ~5 m everywhere); torch's default
    # initialisation instead, so the depth map varies and the comparisons below test something
    torch.manual_seed(1)
    for m in task.head.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.reset_parameters()
    return task.eval()


@pytest.fixture(scope="module")
def seg_task(tiny_sd_dir):
    task = _build_task("segmentation", tiny_sd_dir)
    for m in task.modules():  # non-trivial BatchNorm statistics, so batching in eval mode is really tested
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return task.eval()


# --------------------------------------------------------------------------------------------------------- bf16
def test_bf16_autocast_matches_fp32_within_rounding_bound(depth_task, seg_task):
    torch.manual_seed(1)
    image, ids = torch.rand(2, 3, 64, 64), torch.tensor([0, 3])
    autocast = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16)
    with torch.no_grad():
        f32 = depth_task.backbone(image * 2 - 1, depth_task.context(ids))
        d32 = depth_task(image, ids)
        l32 = seg_task(image)
        with autocast():
            f16 = depth_task.backbone(image * 2 - 1, depth_task.context(ids))
            d16 = depth_task(image, ids)
            l16 = seg_task(image)
    assert all(f.dtype == torch.bfloat16 for f in f16)  # autocast really ran the UNet in bf16
    assert d16.dtype == torch.float32  # the depth head's output is fp32
    for model, run, pairs in (
        (depth_task.backbone, lambda: depth_task.backbone(image * 2 - 1, depth_task.context(ids)), zip(f16, f32)),
        (depth_task, lambda: depth_task(image, ids), [(d16, d32)]),
        (seg_task, lambda: seg_task(image), [(l16, l32)]),
    ):
        num_ops, _ = rounding_ops(model, run)
        bound = U_BF16 * math.sqrt(2 * num_ops)
        for low, ref in pairs:
            assert 1e-4 < rel(low, ref) <= bound, (rel(low, ref), bound, num_ops)


class DtypeLog(TorchDispatchMode):
    """Records the dtype of the inputs of chosen aten ops (after autocast has cast them)."""

    def __init__(self, ops: set[str]) -> None:
        super().__init__()
        self.ops, self.seen = ops, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.ops:
            self.seen.append((name, args[0].dtype))
        return func(*args, **(kwargs or {}))


def test_sensitive_parts_run_in_fp32_under_bf16_autocast(seg_task):
    # SiLog: logs, mean of d^2 and the variance term in fp32, the bf16 prediction upcast first
    pred = (torch.rand(2, 1, 16, 16) * 9 + 0.5).to(torch.bfloat16)
    target = torch.rand(2, 1, 16, 16) * 9 + 0.5
    with torch.autocast("cpu", dtype=torch.bfloat16), DtypeLog({"log", "mean", "sqrt", "pow"}) as log:
        loss = SiLogLoss(0.5)(pred, target)
    assert log.seen and {d for _, d in log.seen} == {torch.float32}
    d = target.double().log() - pred.double().log()
    expected = torch.sqrt((d**2).mean() - 0.5 * d.mean() ** 2)
    assert loss.dtype == torch.float32 and abs(loss.item() - expected.item()) <= 64 * EPS_32 * expected.item()

    # the captured cross-attention maps: softmax in fp32, stored in fp32, rows summing to 1 in fp32
    store = seg_task.backbone.store
    stored = []
    original = type(store).add

    def spy(self, level, probs, cross=True):
        stored.append(probs)
        return original(self, level, probs, cross)

    type(store).add = spy
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), DtypeLog({"_softmax"}) as log:
            seg_task(torch.rand(1, 3, 64, 64))
    finally:
        type(store).add = original
    captured = [d for name, d in log.seen]
    assert stored and all(p.dtype == torch.float32 for p in stored)
    assert torch.float32 in captured  # the capture processors' softmax
    for p in stored:
        torch.testing.assert_close(p.sum(-1), torch.ones_like(p.sum(-1)), rtol=0, atol=64 * EPS_32)

    # metric accumulation: a bf16 prediction goes into float64 sums
    from vpd_lightning.metrics import DepthMetrics

    metric = DepthMetrics(eigen_crop=False)
    metric.update(pred.float().to(torch.bfloat16), target)
    float_states = [v for v in metric.metric_state.values() if torch.is_tensor(v) and v.is_floating_point()]
    assert float_states and all(v.dtype == torch.float64 for v in float_states)


# ------------------------------------------------------------------------------------------------- compilation
# slow: dynamo traces every block of the tiny UNet (24 s with aot_eager; inductor also compiles C++ for long)
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_regional_compile_matches_eager_with_capture_and_taps(tiny_sd_dir, backend):
    """Capture maps and feature taps survive compilation; outputs and gradients equal eager's within the
    summation-order bound (aot_eager: the traced graph run eagerly; inductor: fused C++ kernels, needs ``cc``)."""
    import shutil

    if backend == "inductor" and shutil.which(torch._inductor.config.cpp.cxx[0] or "cc") is None:
        pytest.skip("inductor on CPU needs a C++ compiler")
    torch.manual_seed(0)
    torch._dynamo.reset()
    eager = DiffusionBackbone.from_pretrained(tiny_sd_dir, attention="a32")
    compiled = DiffusionBackbone.from_pretrained(
        tiny_sd_dir, attention="a32", compile="regional", compile_options={"backend": backend}
    )
    compiled.load_state_dict(eager.state_dict())
    blocks = [m for m in compiled.unet.modules() if getattr(m, "_vpd_compiled", False)]
    assert {type(m).__name__ for m in blocks} == {"BasicTransformerBlock", "ResnetBlock2D"}
    image, context = torch.rand(2, 3, 64, 64) * 2 - 1, torch.randn(2, 5, 32)
    num_ops, fan_in = rounding_ops(eager, lambda: eager(image, context))
    bound = EPS_32 * math.sqrt(fan_in * num_ops)
    for _ in range(2):  # the second call reuses the compiled code: the capture store must still fill
        out_c = compiled(image, context)
        out_e = eager(image, context)
        assert [f.shape for f in out_c] == [f.shape for f in out_e]
        for a, b in zip(out_c, out_e):
            assert rel(a, b) <= bound
    sum(f.square().mean() for f in out_c).backward()
    sum(f.square().mean() for f in out_e).backward()
    for (name, p_c), p_e in zip(compiled.unet.named_parameters(), eager.unet.parameters()):
        if p_e.grad is not None and p_e.grad.norm() > 0:
            assert rel(p_c.grad, p_e.grad) <= 8 * bound, name
    with pytest.raises(ValueError, match="backbone.compile"):
        DiffusionBackbone(copy.deepcopy(eager.unet), copy.deepcopy(eager.vae), compile="full")


# ------------------------------------------------------------------------------------------------ channels last
def _channels_last_twin(task, tiny_sd_dir, kind):
    """The same task and weights, its backbone built with channels_last=True (the task's setup converts the head)."""
    other = _build_task(kind, tiny_sd_dir, channels_last=True)
    other.load_state_dict(task.state_dict())
    other.setup("fit")
    return other.eval()


def test_channels_last_matches_contiguous_within_summation_order(depth_task, seg_task, tiny_sd_dir):
    """backbone.channels_last=true: every convolution weight (backbone and head) in NHWC, the activations too,
    and outputs and gradients equal the contiguous model's within the fp32 summation-order bound (the NHWC
    kernels only sum in another order)."""
    torch.manual_seed(2)
    image, ids = torch.rand(2, 3, 64, 64), torch.tensor([1, 4])
    depth_cl = _channels_last_twin(depth_task, tiny_sd_dir, "depth")
    seg_cl = _channels_last_twin(seg_task, tiny_sd_dir, "segmentation")
    convs = [m for m in (*depth_cl.modules(), *seg_cl.modules()) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs and all(
        m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs if m.weight.shape[-1] > 1
    )
    assert not depth_task.backbone.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    bounds = {}
    for ref_model, cl_model, run in (
        (depth_task, depth_cl, lambda m: m(image, ids)),
        (seg_task, seg_cl, lambda m: m(image)),
    ):
        result = {}
        num_ops, fan_in = rounding_ops(ref_model, lambda r=result, f=run, m=ref_model: r.setdefault("ref", f(m)))
        bounds[ref_model] = bound = EPS_32 * math.sqrt(fan_in * num_ops)
        with torch.no_grad():
            ref, out = result["ref"], run(cl_model)
        assert out.shape == ref.shape and 0 < rel(out, ref) <= bound, (rel(out, ref), bound)
    with torch.no_grad():  # the features really are NHWC (the layout propagates through the UNet)
        feats = depth_cl.backbone(image * 2 - 1, depth_cl.context(ids))
    assert all(f.is_contiguous(memory_format=torch.channels_last) for f in feats)
    # gradients of a training step (train mode: BatchNorm batch statistics) agree as well
    grads = []
    for model in (depth_task, depth_cl):
        model.train()
        model.zero_grad(set_to_none=True)
        model(image, ids).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        model.zero_grad(set_to_none=True)
        model.eval()
    bound = bounds[depth_task]
    assert grads[0].keys() == grads[1].keys()
    names = sorted(grads[0])
    flat = [torch.cat([grads[i][n].flatten() for n in names]) for i in (0, 1)]
    # backward: about twice the forward's ops (a factor 2 in L, sqrt 2 in the bound: 8 is ample); parameters
    # whose gradient is a near-total cancellation (norm ~1e-10 here) carry only rounding, so the whole
    # gradient vector is compared, and each parameter against the scale of the largest gradient
    assert rel(flat[1], flat[0]) <= 8 * bound
    scale = max(g.norm() for g in grads[0].values())
    for name in names:
        assert (grads[1][name] - grads[0][name]).norm() <= 8 * bound * scale, name


# ----------------------------------------------------------------------------------------- evaluation batching
def count_backbone_calls(model: nn.Module) -> tuple[list, object]:
    calls = []
    handle = model.backbone.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    return calls, handle


def test_depth_protocol_is_one_batch_equal_to_four_passes(depth_task):
    """VPD's shift-window + flip test: 2 windows x 2 flips in one backbone pass, equal to one pass each."""
    torch.manual_seed(2)
    image, ids = torch.rand(2, 3, 48, 80), torch.tensor([1, 4])
    calls, handle = count_backbone_calls(depth_task)
    try:
        batched = depth_task.predict_depth(image, ids)
    finally:
        handle.remove()
    assert calls == [8]  # one pass: 2 images x 2 windows x 2 flips
    h, w = image.shape[-2:]
    starts = [0, w - h]
    ref = torch.zeros(2, 1, h, w)
    count = torch.zeros(1, 1, 1, w)
    with torch.no_grad():
        for s in starts:  # the per-pass implementation of VPD's test.py
            crop = image[..., s : s + h]
            pred = (depth_task(crop, ids) + depth_task(crop.flip(-1), ids).flip(-1)) / 2
            ref[..., s : s + h] += pred
            count[..., s : s + h] += 1
    ref = ref / count
    num_ops, fan_in = rounding_ops(depth_task, lambda: depth_task(image[..., :h], ids))
    assert rel(batched, ref) <= EPS_32 * math.sqrt(fan_in * num_ops)


@pytest.mark.parametrize("window_batch_size", [2, 4, 16])
def test_segmentation_window_batches_equal_one_window_per_pass(seg_task, window_batch_size):
    torch.manual_seed(3)
    image = torch.rand(1, 3, 100, 140)  # 2 x 3 windows of 64 every 40 px, the last ones aligned to the border
    calls, handle = count_backbone_calls(seg_task)
    try:
        with torch.no_grad():
            single = slide_inference(seg_task, image, 6, (64, 64), (40, 40), pad_value=0.5)
            n_single = len(calls)
            batched = slide_inference(
                seg_task, image, 6, (64, 64), (40, 40), pad_value=0.5, window_batch_size=window_batch_size
            )
    finally:
        handle.remove()
    assert n_single == 6 and calls[:6] == [1] * 6
    assert calls[6:] == [min(window_batch_size, 6 - i) for i in range(0, 6, window_batch_size)]
    num_ops, fan_in = rounding_ops(seg_task, lambda: seg_task(image[..., :64, :64]))
    assert rel(batched, single) <= EPS_32 * math.sqrt(fan_in * num_ops)


def test_segmentation_task_reads_window_batch_size(seg_task, monkeypatch):
    seen = {}

    def fake_slide(model, image, num_classes, crop, stride, pad_value=0.0, window_batch_size=1):
        seen["k"] = window_batch_size
        return torch.zeros(image.shape[0], num_classes, *image.shape[-2:])

    monkeypatch.setattr("vpd_lightning.tasks.segmentation.slide_inference", fake_slide)
    monkeypatch.setitem(seg_task.hparams, "window_batch_size", 5)
    seg_task.predict_logits(torch.rand(1, 3, 64, 64))
    assert seen["k"] == 5
    with pytest.raises(ValueError, match="window_batch_size"):
        slide_inference(seg_task, torch.rand(1, 3, 64, 64), 6, window_batch_size=0)


# ------------------------------------------------------------------------------------------------ data loading
class _Sleepy(torch.utils.data.Dataset):
    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        time.sleep(self.delay)
        return {"image": torch.rand(3, 4, 4)}


def _fit_with_throughput(data_delay: float, step_delay: float) -> dict:
    import lightning.pytorch as pl

    from vpd_lightning.callbacks import ImagesPerSecond

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(1, 1)

        def training_step(self, batch, batch_idx):
            time.sleep(step_delay)
            return self.layer(batch["image"].mean().reshape(1, 1)).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    logged: dict[str, list[float]] = {}

    class Collect(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            for key, value in trainer.callback_metrics.items():
                if key.startswith("train/"):
                    logged.setdefault(key, []).append(float(value))

    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ImagesPerSecond(), Collect()],
    )
    loader = torch.utils.data.DataLoader(_Sleepy(data_delay), batch_size=1)
    trainer.fit(Module(), loader)
    return logged


def test_throughput_callback_separates_data_wait_from_compute():
    """A slow loader shows as data wait, a slow step as step time (sleeps are lower bounds, never upper ones)."""
    slow_data = _fit_with_throughput(data_delay=0.3, step_delay=0.0)
    assert min(slow_data["train/data_wait_s"]) >= 0.3
    slow_step = _fit_with_throughput(data_delay=0.0, step_delay=0.3)
    assert min(slow_step["train/step_s"]) >= 0.3
    assert "train/images_per_s" in slow_step


def test_loader_options(nyu_root):
    from vpd_lightning.data import NYUv2DataModule

    dm = NYUv2DataModule(nyu_root, crop_size=(32, 32), num_workers=2, prefetch_factor=4, persistent_workers=True)
    options = dm.loader_options()
    assert options["num_workers"] == 2 and options["prefetch_factor"] == 4 and options["persistent_workers"]
    assert options["pin_memory"] == torch.cuda.is_available()  # pinned only where CUDA copies from it
    assert not NYUv2DataModule(nyu_root, num_workers=0).loader_options()["persistent_workers"]
    with pytest.raises(ValueError, match="data.prefetch_factor"):
        NYUv2DataModule(nyu_root, num_workers=0, prefetch_factor=2).loader_options()


def test_fast_precision_follows_the_cpu_flags(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from vpd_lightning import config

    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    bf16 = tmp_path / "bf16"
    bf16.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma avx512f avx512_bf16\n")
    assert not config.cpu_has_native_bf16(str(avx2)) and config.cpu_has_native_bf16(str(bf16))
    assert not config.cpu_has_native_bf16(str(tmp_path / "missing"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    read = config.cpu_has_native_bf16
    for path, expected in ((avx2, "32-true"), (bf16, "bf16-mixed")):
        monkeypatch.setattr(config, "cpu_has_native_bf16", lambda p=path: read(str(p)))
        assert OmegaConf.create({"p": "${vpd_fast_precision:}"}).p == expected


def test_trainer_configs_set_every_loader(tmp_path):
    """trainer=... owns the loader settings (trainer.loader), every data set reads them, for every task of a
    multi-task run; a data config's own value still wins, and the Trainer never sees the block."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from tiny_config import make_cfg

    cpu = make_cfg(["task=depth", "trainer=cpu"])
    assert (cpu.data.num_workers, cpu.data.pin_memory, cpu.data.persistent_workers) == (1, False, True)
    gpu = make_cfg(["task=segmentation", "trainer=gpu", "trainer.loader.prefetch_factor=4"])
    assert (gpu.data.num_workers, gpu.data.pin_memory, gpu.data.prefetch_factor) == (8, True, 4)
    multi = make_cfg(["task=multitask", "trainer=cpu", "trainer.loader.num_workers=3"])
    tasks = [t for t in multi.data if OmegaConf.is_dict(multi.data[t]) and "num_workers" in multi.data[t]]
    assert len(tasks) >= 2 and all(multi.data[t].num_workers == 3 for t in tasks)
    own = make_cfg(["task=depth", "trainer=gpu", "data.num_workers=0"])
    assert own.data.num_workers == 0 and own.trainer.loader.num_workers == 8
    with pytest.raises(Exception, match="loader"):  # what train.build keeps from the Trainer
        instantiate(OmegaConf.to_container(cpu.trainer, resolve=True), logger=False)
