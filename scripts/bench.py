#!/usr/bin/env python
"""Benchmark the VPD depth model (backbone + depth head): a training step and an inference forward.

Prints one JSON document with, for each implementation, the median time of a training step
(forward + backward, SiLog loss) and of an inference forward (no_grad), and the peak memory (CUDA max
allocated on a GPU, peak RSS of the process on CPU):

- ``ours``: the default backbone (SDPA in every attention layer except the cross-attention layers whose maps
  are used, which compute explicit probabilities);
- ``baseline``: explicit softmax attention in every layer, as the original VPD code computes it.

Each implementation runs in its own process so peak memory figures do not mix. Random weights; the UNet is the
tiny test configuration or the full SD-1.5 one (859.5 M parameters).

    python scripts/bench.py                                   # tiny UNet, 128 px
    python scripts/bench.py --unet sd15 --size 512 --repeats 3  # SD-1.5-shaped, 512x512

Memory per fine-tuning mode and memory lever (and of prediction on a 12 MP photo): scripts/bench_memory.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time


def _measure(args: argparse.Namespace) -> dict:
    import functools

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from vpd_lightning.backbone import DiffusionBackbone
    from vpd_lightning.backbone.tiny import TINY_UNET_CONFIG, TINY_VAE_CONFIG, sd15_unet_config
    from vpd_lightning.heads import VPDDepthHead
    from vpd_lightning.tasks import DepthEstimationTask

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.manual_seed(0)
    unet_cfg = sd15_unet_config() if args.unet == "sd15" else dict(TINY_UNET_CONFIG)
    vae_cfg = dict(TINY_VAE_CONFIG)
    if args.vae == "sd15":
        vae_cfg.update(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32)
    backbone = DiffusionBackbone(
        UNet2DConditionModel(**unet_cfg),
        AutoencoderKL(**vae_cfg),
        attention=args.attention,
        attention_impl="explicit" if args.impl == "baseline" else "fast",
    )
    head = (
        functools.partial(VPDDepthHead)
        if args.unet == "sd15"
        else functools.partial(VPDDepthHead, fusion_channels=128, head_channels=32)
    )
    model = DepthEstimationTask(
        backbone, head, torch.randn(27, backbone.context_dim), functools.partial(torch.optim.AdamW, lr=1e-4)
    ).to(device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.precision]
    image = torch.rand(args.batch, 3, args.size, args.size, device=device)
    depth = torch.rand(args.batch, 1, args.size, args.size, device=device) * 9 + 0.5
    ids = torch.zeros(args.batch, dtype=torch.long, device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model.criterion(model(image, ids).float(), depth)
        loss.backward()
        model.zero_grad(set_to_none=True)

    def infer():
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            model(image, ids)

    results = {}
    for name, fn in (("train_step", train_step), ("inference", infer)):
        model.train(name == "train_step")
        fn()  # warm-up
        sync()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        results[f"{name}_median_s"] = round(statistics.median(times), 4)
        results[f"{name}_times_s"] = [round(t, 4) for t in times]
    if device.type == "cuda":
        results["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        results["memory_kind"] = "cuda_max_allocated"
    else:
        results["peak_memory_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
        results["memory_kind"] = "peak_rss_process"
    results["device"] = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    results["unet_params_m"] = round(sum(p.numel() for p in backbone.unet.parameters()) / 1e6, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unet", choices=["tiny", "sd15"], default="tiny")
    parser.add_argument("--vae", choices=["tiny", "sd15"], default=None, help="default: same as --unet")
    parser.add_argument("--size", type=int, default=128, help="square image side (multiple of 8)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--attention", choices=["a32", "a64", "none"], default="none", help="VPD depth: none")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--impl", choices=["ours", "baseline"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.vae = args.vae or args.unet
    if args.impl is not None:  # child process: measure one implementation
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(_measure(args)))
        return
    report = {"config": {k: v for k, v in vars(args).items() if k != "impl"}}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for impl in ("ours", "baseline"):
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--impl", impl], capture_output=True, text=True, env=env
        )
        if out.returncode != 0:
            raise SystemExit(f"{impl} run failed:\n{out.stderr[-4000:]}")
        report[impl] = json.loads(out.stdout.strip().splitlines()[-1])
    ours, base = report["ours"], report["baseline"]
    report["speedup_train_step"] = round(base["train_step_median_s"] / ours["train_step_median_s"], 3)
    report["speedup_inference"] = round(base["inference_median_s"] / ours["inference_median_s"], 3)
    report["memory_ratio_ours_over_baseline"] = round(ours["peak_memory_gib"] / base["peak_memory_gib"], 3)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
