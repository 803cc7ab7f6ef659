#!/usr/bin/env python
"""Benchmark the VPD depth model (backbone + depth head) under each speed option, side by side.

For every configuration (one process each, so peak memory figures do not mix) it measures:

- ``train_step``: forward + SiLog loss + backward, median over ``--repeats``;
- ``inference``: one forward without gradients;
- ``eval_image``: one full ``--eval-size`` image (NYUv2: 480x640) by the paper's test protocol
  (``predict_depth``: two shifted square windows, each with its horizontal flip, as one batch of four);
- ``compile_s``: for compiled configurations, the extra time of the first call of each phase over its median
  (the compilation), reported apart from the step times;
- peak memory (CUDA max allocated on a GPU, peak RSS of the process on a CPU);
- achieved TFLOP/s and the model-FLOP utilisation (MFU) against the device's peak where known. FLOPs are the
  model's, counted once with ``torch.utils.flop_counter.FlopCounterMode`` on a meta-device copy (matmuls,
  convolutions and attention; the same count for every configuration, so MFU compares like with like).

Configurations: ``baseline`` (explicit softmax in every attention layer, fp32, eager: the original VPD's cost
model) and ``ours`` for every ``--precision`` (fp32, bf16 autocast, bf16w: autocast with the weights that do not
train held in bf16) x ``--compile`` x ``--layout`` (contiguous, channels_last) combination, or the subset named
with ``--configs``. The report names the CPU (model and
vector flags: AVX-512, native bf16 or AVX2 only) or the GPU, and the ratio of every configuration's times to the
baseline's. Random weights; the UNet is a tiny test configuration
(``tiny``: SD-1.x topology, ``tiny_sd21``, ``tiny_sdxl``) or a full-size family from the shipped configurations:
``sd15`` (859.5 M parameters), ``sd21`` / ``sd21_base`` (865.9 M), ``sdxl`` (2,567.5 M; three feature levels).
``--size`` defaults to 128 px for the tiny UNets and to the family's native size otherwise (512, 768, 512, 1024).

    python scripts/bench.py                                                  # tiny UNet, 128 px, fp32 vs bf16
    python scripts/bench.py --unet sd15 --size 512 --repeats 3 --compile none regional   # SD-1.5, 512x512
    python scripts/bench.py --unet sd21 --no-baseline --precision bf16w --layout channels_last  # SD 2.1, 768x768
    python scripts/bench.py --unet sdxl --no-baseline --precision bf16w --layout channels_last --finetune lora

Memory per fine-tuning mode and memory lever (and of prediction on a 12 MP photo): scripts/bench_memory.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

#: dense peak TFLOP/s of GPUs by name fragment: (bf16, fp32 non-tensor-core); SXM figures where there are two
GPU_PEAK_TFLOPS = {
    "H200": (989.0, 67.0),
    "H100": (989.0, 67.0),
    "A100": (312.0, 19.5),
    "L40S": (362.0, 91.6),
    "L4": (121.0, 30.3),
    "A10": (125.0, 31.2),
    "RTX 4090": (165.0, 82.6),
}


# ----------------------------------------------------------------------------------------------------- device
AMX_BF16_FLOP_PER_CYCLE = 1024  # per core: a TDPBF16PS (16x16x32 = 8192 multiply-adds) every 16 cycles


def cpu_info() -> dict:
    """CPU model, the vector flags that matter for speed, cores, clock and the derived peak.

    Peak FLOP/s = cores x clock x FLOP per cycle per core. FLOP per cycle: two 256-bit FMA pipes on AMD Zen 4
    (AVX-512 is executed as 2 x 256 bit) and on AVX2 cores = 2 x 8 fp32 lanes x 2 (multiply + add) = 32 fp32;
    cores with two full 512-bit FMA units (Intel server cores, Zen 5) = 64. bf16 with ``avx512_bf16``
    (``VDPBF16PS``: two bf16 products summed into each fp32 lane) doubles that. With AMX-BF16 (Intel Sapphire
    Rapids and later) the tile unit's 1024 bf16 FLOP per cycle per core (Intel's figure: a ``TDPBF16PS`` of
    16x16x32 multiply-adds every 16 cycles) is the bf16 peak; the clock read from /proc/cpuinfo is the base clock, so
    turbo can push measured utilisation above the model. Without native bf16, bf16 math is converted to fp32:
    the fp32 peak.
    """
    from vpd_lightning.utils.cpu import cpu_info as read_cpuinfo

    info = read_cpuinfo()
    flags, model, mhz, family = info["flags"], info["model"], info["mhz"], info["family"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    vector = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma", "avx_vnni"))
    amx = "amx_bf16" in flags
    native_bf16 = "avx512_bf16" in flags or amx
    if "avx512f" in flags:
        # AMD before Zen 5 (family 0x19) double-pumps 256-bit units; others have two 512-bit FMA units
        fp32_per_cycle = 32 if ("AMD" in model and family == 0x19) else 64
    elif "avx2" in flags and "fma" in flags:
        fp32_per_cycle = 32
    else:
        fp32_per_cycle = None
    if amx:
        kind, bf16_per_cycle, bf16_note = "AVX-512 + AMX-BF16", AMX_BF16_FLOP_PER_CYCLE, "AMX-BF16"
    elif native_bf16:
        kind, bf16_per_cycle, bf16_note = "AVX-512 + native bf16", 2 * (fp32_per_cycle or 0), "avx512_bf16: x2"
    else:
        kind = "AVX-512" if "avx512f" in flags else "AVX2 only"
        bf16_per_cycle, bf16_note = fp32_per_cycle, "converted to fp32"
    peak, derivation = {}, "unknown"
    if fp32_per_cycle and mhz:
        peak["fp32"] = cores * mhz * 1e6 * fp32_per_cycle / 1e12
        peak["bf16"] = cores * mhz * 1e6 * bf16_per_cycle / 1e12
        derivation = (
            f"{cores} cores x {mhz} MHz x {fp32_per_cycle} fp32 FLOP/cycle "
            f"(bf16: {bf16_note}, {bf16_per_cycle} FLOP/cycle)"
        )
    return {
        "cpu_model": model,
        "cpu_family": family,
        "cores": cores,
        "mhz": mhz,
        "vector_flags": vector,
        "native_bf16": native_bf16,
        "kind": kind,
        "fp32_flop_per_cycle_per_core": fp32_per_cycle,
        "peak_tflops": peak,
        "peak_derivation": derivation,
    }


def gpu_peak(name: str, precision: str) -> float | None:
    for fragment, (bf16, fp32) in GPU_PEAK_TFLOPS.items():
        if fragment in name:
            return bf16 if precision == "bf16" else fp32
    return None


# ------------------------------------------------------------------------------------------------------ model
def build_model(
    args: argparse.Namespace, device, impl: str, compile_mode: str, channels_last: bool = False, frozen_dtype=None
):
    import functools

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from vpd_lightning.backbone import DiffusionBackbone
    from vpd_lightning.backbone.families import FAMILIES, config_dir
    from vpd_lightning.backbone.tiny import TINY_FAMILY_CONFIGS, TINY_VAE_CONFIG
    from vpd_lightning.heads import VPDDepthHead
    from vpd_lightning.tasks import DepthEstimationTask

    def shipped(family: str, component: str) -> dict:
        return json.loads((config_dir(family) / component / "config.json").read_text())

    tiny = {"tiny": "sd15", "tiny_sd21": "sd2", "tiny_sdxl": "sdxl"}
    torch.manual_seed(0)
    with torch.device(device):
        if args.unet in FAMILIES:
            unet_cfg = shipped(args.unet, "unet")
        else:
            unet_cfg = dict(TINY_FAMILY_CONFIGS[tiny[args.unet]]["unet"])
        vae_cfg = shipped(args.vae, "vae") if args.vae in FAMILIES else dict(TINY_VAE_CONFIG)
        backbone = DiffusionBackbone(
            UNet2DConditionModel(**unet_cfg),
            AutoencoderKL(**vae_cfg),
            attention=args.attention,
            attention_impl="explicit" if impl == "baseline" else "fast",
            compile=compile_mode,
            channels_last=channels_last,
            frozen_dtype=frozen_dtype,
            finetune=args.finetune,
        )
        head = (
            functools.partial(VPDDepthHead)
            if args.unet in FAMILIES
            else functools.partial(VPDDepthHead, fusion_channels=128, head_channels=32)
        )
        model = DepthEstimationTask(
            backbone, head, torch.randn(27, backbone.context_dim), functools.partial(torch.optim.AdamW, lr=1e-4)
        )
    return model.apply_memory_format()  # what the task's setup does before training


def eval_size(args) -> tuple[int, int]:
    h, w = (int(v) for v in args.eval_size.lower().split("x"))
    return h, w


def count_flops(args: argparse.Namespace) -> dict:
    """Model FLOPs of a training step, an inference forward and a paper-protocol evaluation, on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(args, "meta", "ours", "none")
    image = torch.rand(args.batch, 3, args.size, args.size, device="meta")
    ids = torch.zeros(args.batch, dtype=torch.long, device="meta")
    out = {}
    with FlopCounterMode(display=False) as counter:
        model(image, ids).sum().backward()
    out["train_step"] = counter.get_total_flops()
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image, ids)
    out["inference"] = counter.get_total_flops()
    h, w = eval_size(args)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.predict_depth(torch.rand(1, 3, h, w, device="meta"), ids[:1])
    out["eval_image"] = counter.get_total_flops()
    return out


# ---------------------------------------------------------------------------------------------------- measure
def measure(args: argparse.Namespace, impl: str, precision: str, compile_mode: str, layout: str) -> dict:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    frozen = "bf16" if precision == "bf16w" else None  # the frozen VAE's weights in bf16 while training
    model = build_model(args, "cpu", impl, compile_mode, layout == "channels_last", frozen).to(device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16w": torch.bfloat16}[precision]
    image = torch.rand(args.batch, 3, args.size, args.size, device=device)
    depth = torch.rand(args.batch, 1, args.size, args.size, device=device) * 9 + 0.5
    ids = torch.zeros(args.batch, dtype=torch.long, device=device)
    h, w = eval_size(args)
    test_image = torch.rand(1, 3, h, w, device=device)

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step():
        with autocast():
            loss = model.criterion(model(image, ids), depth)
        loss.backward()
        model.zero_grad(set_to_none=True)

    def infer():
        with torch.no_grad(), autocast():
            model(image, ids)

    def evaluate():
        with autocast():
            model.predict_depth(test_image, ids[:1])

    results: dict = {"impl": impl, "precision": precision, "compile": compile_mode, "layout": layout}
    compile_s = 0.0
    phases = [] if args.skip_train else [("train_step", train_step)]
    phases.append(("inference", infer))
    if not args.skip_eval:
        phases.append(("eval_image", evaluate))
    for name, fn in phases:
        model.train(name == "train_step")
        if name == "inference" and precision == "bf16w":  # what predict dtype=bf16 does: bf16 weights
            model.to(torch.bfloat16)
        start = time.perf_counter()
        fn()  # warm-up (and compilation)
        sync()
        first = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        results[f"{name}_s"] = round(median, 4)
        results[f"{name}_times_s"] = [round(t, 4) for t in times]
        results[f"{name}_first_s"] = round(first, 4)
        compile_s += max(first - median, 0.0)
    results["compile_s"] = round(compile_s, 2) if compile_mode != "none" else 0.0
    if device.type == "cuda":
        results["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        results["memory_kind"] = "cuda_max_allocated"
        results["device"] = torch.cuda.get_device_name()
    else:
        results["peak_memory_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
        results["memory_kind"] = "peak_rss_process"
        results["device"] = "cpu"
        results["threads"] = torch.get_num_threads()
    results["unet_params_m"] = round(sum(p.numel() for p in model.backbone.unet.parameters()) / 1e6, 1)
    results["trainable_params_m"] = round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 1)
    return results


# ------------------------------------------------------------------------------------------------------- main
def configurations(args) -> list[tuple[str, str, str, str]]:
    configs = [("baseline", "fp32", "none", "contiguous")]
    configs += [("ours", p, c, lay) for p in args.precision for c in args.compile for lay in args.layout]
    if args.configs:  # an explicit subset of the product, by label (e.g. bf16w+channels_last)
        known = {label(*c): c for c in configs}
        unknown = [name for name in args.configs if name not in known]
        if unknown:
            product = list(known)
            raise SystemExit(f"--configs: unknown {unknown}; the --precision x --compile x --layout product: {product}")
        configs = [configs[0]] + [known[name] for name in args.configs if name != "baseline"]
    if not args.baseline:
        configs = configs[1:]
        if not configs:
            raise SystemExit("--no-baseline leaves no configuration to run")
    return configs


def label(impl: str, precision: str, compile_mode: str, layout: str = "contiguous") -> str:
    if impl == "baseline":
        return "baseline"
    return (
        f"{precision}"
        + ("" if compile_mode == "none" else f"+{compile_mode}")
        + ("+channels_last" if layout == "channels_last" else "")
    )


def add_rates(report: dict, flops: dict, cpu: dict) -> None:
    """TFLOP/s, MFU and the ratios to the reference configuration (the baseline unless --no-baseline), in place."""
    base = report["configs"][report["reference"]]
    for row in report["configs"].values():
        if row["device"] == "cpu":
            peak = cpu["peak_tflops"].get(row["precision"][:4])  # bf16w: the bf16 peak
        else:
            peak = gpu_peak(row["device"], row["precision"][:4])
        row["peak_tflops"] = round(peak, 4) if peak else None
        for phase, count in flops.items():
            if f"{phase}_s" not in row:
                continue
            tflops = count / row[f"{phase}_s"] / 1e12
            row[f"{phase}_tflops"] = round(tflops, 4)
            row[f"{phase}_mfu"] = round(tflops / peak, 4) if peak else None
            row[f"{phase}_vs_baseline"] = round(row[f"{phase}_s"] / base[f"{phase}_s"], 3)


def print_table(report: dict) -> None:
    ref = report["reference"]
    phases = [p for p in ("train_step", "inference", "eval_image") if f"{p}_s" in report["configs"][ref]]
    header = ["config"] + [f"{p} s (x {ref}, TFLOP/s, MFU)" for p in phases] + ["compile s", "peak GiB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in report["configs"].items():
        cells = [name]
        for p in phases:
            mfu = row.get(f"{p}_mfu")
            mfu = f"{100 * mfu:.0f} %" if mfu is not None else "n/a"
            cells.append(f"{row[f'{p}_s']:.3f} (x{row[f'{p}_vs_baseline']:.2f}, {row[f'{p}_tflops']:.3f}, {mfu})")
        cells += [f"{row['compile_s']:.1f}", f"{row['peak_memory_gib']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    families = ["sd15", "sd21", "sd21_base", "sdxl"]
    parser.add_argument("--unet", choices=["tiny", "tiny_sd21", "tiny_sdxl", *families], default="tiny")
    parser.add_argument(
        "--vae", choices=["tiny", *families], default=None, help="default: the --unet family's (tiny for tiny UNets)"
    )
    parser.add_argument(
        "--size", type=int, default=None, help="square image side (multiple of 8); default 128 or the native size"
    )
    parser.add_argument("--eval-size", default="480x640", help="HxW of the paper-protocol evaluation image")
    parser.add_argument("--skip-eval", action="store_true", help="no paper-protocol evaluation")
    parser.add_argument(
        "--skip-train", action="store_true", help="no training step (e.g. SDXL at 1024^2 beyond a host's memory)"
    )
    parser.add_argument(
        "--finetune",
        choices=["full", "lora", "frozen"],
        default="full",
        help="which UNet weights the training step trains (backbone.finetune; with bf16w the frozen ones are bf16)",
    )
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the explicit-softmax fp32 baseline first (--no-baseline: ratios against the first configuration, "
        "e.g. where the baseline's attention maps do not fit the host's memory)",
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--attention", choices=["a32", "a64", "none"], default="none", help="VPD depth: none")
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=["fp32", "bf16", "bf16w"],
        default=["fp32", "bf16"],
        help="bf16: bf16 autocast (trainer.precision=bf16-mixed); bf16w: bf16 autocast with weights held in bf16 "
        "where they do not train (training: the VAE, backbone.frozen_dtype=bf16; inference and evaluation: the whole "
        "model, predict dtype=bf16)",
    )
    parser.add_argument(
        "--layout",
        nargs="+",
        choices=["contiguous", "channels_last"],
        default=["contiguous"],
        help="memory format of the convolutions (channels_last: backbone.channels_last=true)",
    )
    parser.add_argument("--compile", nargs="+", choices=["none", "regional"], default=["none"])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help="run only these configurations of the product (labels as printed, e.g. fp32 bf16+channels_last)",
    )
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from vpd_lightning.backbone.families import FAMILIES

    args.vae = args.vae or (args.unet if args.unet in FAMILIES else "tiny")
    args.size = args.size or (FAMILIES[args.unet].native_size if args.unet in FAMILIES else 128)
    if args.child is not None:  # child process: measure one configuration
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(measure(args, *args.child.split(","))))
        return
    config = {k: v for k, v in vars(args).items() if k != "child"}
    report = {"command": " ".join([os.path.basename(sys.executable), *sys.argv]), "config": config}
    report["cpu"] = cpu = cpu_info()
    report["flops"] = flops = count_flops(args)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    report["configs"] = {}
    for impl, precision, compile_mode, layout in configurations(args):
        name = label(impl, precision, compile_mode, layout)
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--child", f"{impl},{precision},{compile_mode},{layout}"],
            capture_output=True,
            text=True,
            env=env,
        )
        if out.returncode != 0:
            raise SystemExit(f"{name} run failed:\n{out.stderr[-4000:]}")
        report["configs"][name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"[bench] {name}: {json.dumps(report['configs'][name])}", file=sys.stderr, flush=True)
    report["reference"] = next(iter(report["configs"]))
    add_rates(report, flops, cpu)
    ours = {k: v for k, v in report["configs"].items() if k != report["reference"]}
    if ours:
        for phase in ("train_step", "inference", "eval_image"):
            if f"{phase}_s" in report["configs"][report["reference"]]:
                best = min(ours, key=lambda k: ours[k][f"{phase}_s"])
                report[f"fastest_{phase}"] = {"config": best, "vs_baseline": ours[best][f"{phase}_vs_baseline"]}
    print_table(report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
