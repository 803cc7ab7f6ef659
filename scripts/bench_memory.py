#!/usr/bin/env python
"""Memory of one training step of the VPD depth recipe per fine-tuning mode and memory lever, side by side.

Full-size UNet, VAE and depth head of a backbone family (SD-1.5 by default, ``--family``; random weights,
``vpd_lightning.memory.build_sd15_model``), a square image (the family's native size by default), batch 1;
each configuration runs in its own process (peak memory figures do not mix) and one run prints the whole table:

- ``peak``: CUDA max allocated on a GPU, else the peak RSS of the process (``ru_maxrss``);
- ``static``: bytes of parameters, buffers, gradients and optimizer state, counted exactly
  (``vpd_lightning.memory.count_training_bytes``);
- ``activations``: measured, peak minus the memory held before the first step (process + weights) minus the
  counted gradients and optimizer state, i.e. what the forward/backward itself needed at its peak;
- ``step``: median wall time of a training step (forward, backward, optimizer step) after one warm-up step
  (which also compiles torchao's 8-bit step);
- the trainable parameters.

    python scripts/bench_memory.py                                   # every configuration, 512x512
    python scripts/bench_memory.py --configs full lora --size 256    # a subset
    python scripts/bench_memory.py --predict --image-size 4000x3000  # inference: Predictor on a 12 MP photo
    python scripts/bench_memory.py --presets                         # memory= presets (single, multi-task)
    python scripts/bench_memory.py --presets --family sdxl           # ... fitted for another backbone family
    python scripts/bench_memory.py --family sd21 --configs lora      # another family's training step, 768x768

Full-size runs hold ~15 GB each; on a shared machine run them under a lock: ``flock /tmp/fullsize.lock python
scripts/bench_memory.py``. Figures: docs/benchmarks.md.
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

#: name -> training-config overrides (the depth recipe; ``full`` fp32 AdamW without checkpointing is VPD's)
CONFIGS: dict[str, list[str]] = {
    "full": [],
    "full+ckpt": ["backbone.gradient_checkpointing=true"],
    "full+8bit": ["model.optimizer._target_=torchao.optim.AdamW8bit"],
    "full+ckpt+8bit+bf16": [
        "backbone.gradient_checkpointing=true",
        "model.optimizer._target_=torchao.optim.AdamW8bit",
        "backbone.frozen_dtype=bf16",
    ],
    "lora": ["finetune=lora"],
    "lora+ckpt+bf16": ["finetune=lora", "backbone.gradient_checkpointing=true", "backbone.frozen_dtype=bf16"],
    "partial": ["finetune=partial"],
    "frozen": ["finetune=frozen"],
}


def _cpu_model() -> str:
    from vpd_lightning.utils.cpu import cpu_info

    return cpu_info()["model"]


def cpu_flags() -> str:
    """The vector extensions that decide CPU kernels (AVX-512 vs AVX2 changes speed and float rounding)."""
    from vpd_lightning.utils.cpu import cpu_info

    flags = cpu_info()["flags"]
    return " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "fma") if f in flags)


def _compose(overrides: list[str], task: str = "depth"):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from vpd_lightning.config import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"task={task}", *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def _components(args: argparse.Namespace) -> dict | None:
    """``--tiny``: the tiny test UNet/VAE (a smoke run of this script in seconds) instead of SD-1.5's."""
    if not args.tiny:
        return None
    from vpd_lightning.backbone.tiny import TINY_UNET_CONFIG, TINY_VAE_CONFIG

    return {"unet": dict(TINY_UNET_CONFIG), "vae": dict(TINY_VAE_CONFIG)}


def _peak(device) -> int:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current(device) -> int:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.memory_allocated())
    with open("/proc/self/statm", encoding="utf-8") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_training(name: str, args: argparse.Namespace) -> dict:
    import torch

    from vpd_lightning.memory import build_sd15_model, count_training_bytes, optimizer_kind

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.manual_seed(0)
    cfg = _compose([*CONFIGS[name], f"backbone={args.family}"])
    model = build_sd15_model(cfg, "cpu", _components(args)).to(device).train()
    optimizer = model.optimizer_factory(params=model.parameter_groups())
    kind = optimizer_kind(cfg.model.optimizer._target_)
    count = count_training_bytes(model, kind)
    image = torch.rand(args.batch, 3, args.size, args.size, device=device)
    depth = torch.rand(args.batch, 1, args.size, args.size, device=device) * 9 + 0.5
    ids = torch.zeros(args.batch, dtype=torch.long, device=device)
    before = _current(device)

    def step():
        loss = model.criterion(model(image, ids).float(), depth)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for i in range(1 + args.repeats):
        start = time.perf_counter()
        step()
        if i:
            times.append(time.perf_counter() - start)
    peak = _peak(device)
    return {
        "config": name,
        "trainable_params_m": round(count.trainable_params / 1e6, 2),
        "static_gb": round(count.total / 1e9, 3),
        "grads_optimizer_gb": round((count.grad_bytes + count.optimizer_bytes) / 1e9, 3),
        "before_step_gb": round(before / 1e9, 3),
        "peak_gb": round(peak / 1e9, 3),
        "activations_gb": round((peak - before - count.grad_bytes - count.optimizer_bytes) / 1e9, 3),
        "step_s": round(statistics.median(times), 2),
        "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "peak_rss",
    }


def measure_predict(name: str, args: argparse.Namespace) -> dict:
    """Peak memory of ``Predictor`` (depth, SD-1.5 sizes) on one photo of ``--image-size``."""
    import numpy as np
    import torch

    from vpd_lightning.memory import build_sd15_model, count_training_bytes
    from vpd_lightning.predict import Predictor

    dtype = name.split(":", 1)[1]
    cfg = _compose([])
    model = build_sd15_model(cfg, "cpu", _components(args))
    model.vpd_config = {"task": "depth", "class_names": list(cfg.data.class_names), "predict": {"crop_height": 480}}
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    photo = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    predictor = Predictor(model, dtype=dtype, batch_size=1, window_batch=args.window_batch, device="cpu")
    weights = (
        count_training_bytes(predictor.model, "sgd").param_bytes
        + count_training_bytes(predictor.model, "sgd").buffer_bytes
    )
    before = _current(torch.device("cpu"))
    start = time.perf_counter()
    depth = predictor(photo)
    elapsed = time.perf_counter() - start
    peak = _peak(torch.device("cpu"))
    return {
        "config": name,
        "image": f"{width}x{height}",
        "weights_gb": round(weights / 1e9, 3),
        "before_gb": round(before / 1e9, 3),
        "peak_gb": round(peak / 1e9, 3),
        "above_weights_gb": round((peak - before) / 1e9, 3),
        "seconds": round(elapsed, 1),
        "output": list(depth.shape),
        "memory_kind": "peak_rss",
    }


def preset_table(family: str = "sd15") -> str:
    """The ``memory=`` presets for one backbone family: exact counted bytes (full size, meta device) + activations
    per task (SD-1.5: as measured; other families: scaled by the family's counted ``activation_scale``), with the
    per-GPU batch x accumulation the run-time check fits (``vpd_lightning.memory.fit_preset``) or the refusal."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from vpd_lightning.config import CONFIG_DIR
    from vpd_lightning.memory import MemoryPresetError, build_sd15_model, count_training_bytes, fit_preset

    presets = sorted((p.stem for p in (Path(CONFIG_DIR) / "memory").glob("*.yaml")), key=lambda n: -int(n[3:]))
    lines = [
        "| preset | task | finetune | batch x accum | trainable params | params + grads + optimizer (counted) "
        "| activations (measured; scaled: SD-1.5's x activation_scale) | total | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for preset in presets:
        for task in ("depth", "segmentation", "referring"):
            cfg = _compose([f"task={task}", f"memory={preset}", f"backbone={family}"])
            model = build_sd15_model(cfg)
            params = count_training_bytes(model).trainable_params / 1e6
            figures = cfg.memory.activations_gb_per_image
            scaled = "" if OmegaConf.is_dict(figures) and family in figures else " scaled"
            try:
                fit = fit_preset(cfg, model)
            except MemoryPresetError as err:
                lines.append(
                    f"| {preset} | {task} | {cfg.finetune.mode} | refused | {params:.1f} M | {err.state / 1e9:.2f} GB "
                    f"| {err.activations_per_image / 1e9:.2f} GB{scaled} (batch 1) | "
                    f"{(err.state + err.activations_per_image) / 1e9:.2f} GB | {cfg.memory.budget_gb} GB |"
                )
                continue
            acts = fit.activations_per_image * fit.batch
            lines.append(
                f"| {preset} | {task} | {cfg.finetune.mode} | {fit.batch} x {fit.accumulate} | {params:.1f} M | "
                f"{fit.state / 1e9:.2f} GB | {acts / 1e9:.2f} GB{scaled} | {fit.needed / 1e9:.2f} GB | "
                f"{cfg.memory.budget_gb} GB |"
            )
    return "\n".join(lines)


def multitask_preset_table() -> str:
    """The ``memory=`` presets with ``experiment=multitask_vpd`` (all three tasks on one backbone): counted bytes of
    the multi-task model (meta) + the recorded activations of the largest task's micro-batch."""
    from pathlib import Path

    from vpd_lightning.config import CONFIG_DIR
    from vpd_lightning.memory import (
        activation_images,
        build_sd15_model,
        count_training_bytes,
        optimizer_kind,
        preset_activations_per_image,
    )

    presets = sorted((p.stem for p in (Path(CONFIG_DIR) / "memory").glob("*.yaml")), key=lambda n: -int(n[3:]))
    tasks = ("depth", "segmentation", "referring")
    lines = [
        "| preset | finetune | batch x accum (depth / segmentation / referring) | trainable params | params + grads + "
        "optimizer (counted) | activations (largest micro-batch, measured) | total | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for preset in presets:
        cfg = _compose(["experiment=multitask_vpd", f"memory={preset}"], task="multitask")
        count = count_training_bytes(build_sd15_model(cfg), optimizer_kind(cfg.memory.optimizer))
        acts = preset_activations_per_image(cfg.memory, "sd15") / 1e9 * activation_images(cfg)
        batches = " / ".join(f"{cfg.data[t].batch_size} x {cfg.multitask.accumulate[t]}" for t in tasks)
        lines.append(
            f"| {preset} | {cfg.finetune.mode} | {batches} | {count.trainable_params / 1e6:.1f} M | "
            f"{count.total / 1e9:.2f} GB | {acts:.2f} GB | {count.total / 1e9 + acts:.2f} GB | "
            f"{cfg.memory.budget_gb} GB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="square training image side (multiple of 64; default: the family's native)",
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="timed steps after the warm-up step")
    parser.add_argument("--predict", action="store_true", help="measure Predictor (depth) instead of training")
    parser.add_argument("--image-size", default="4000x3000", help="--predict: WIDTHxHEIGHT of the photo")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], help="--predict: inference weight types")
    parser.add_argument("--window-batch", type=int, default=1, help="--predict: windows per forward")
    parser.add_argument("--presets", action="store_true", help="print the memory= preset table (meta device)")
    parser.add_argument(
        "--family",
        default="sd15",
        choices=["sd15", "sd21", "sd21_base", "sdxl"],
        help="backbone family of the training step and of --presets (full-size shapes, random weights)",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny UNet/VAE: check the script, not memory")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.size is None:
        from vpd_lightning.backbone.families import FAMILIES

        args.size = FAMILIES[args.family].native_size
    if args.presets:
        print(preset_table(args.family))
        print()
        print(multitask_preset_table())
        return
    if args.child is not None:  # one configuration in this process
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        measure = measure_predict if args.child.startswith("predict:") else measure_training
        print(json.dumps(measure(args.child, args)))
        return
    names = [f"predict:{d}" for d in args.dtypes] if args.predict else args.configs
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.cpu else _cpu_model()
    report = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "device": device,
        "family": args.family,
        "size": args.size,
        "cpu_flags": cpu_flags(),
        "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(),
        "results": [],
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for name in names:
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--child", name], capture_output=True, text=True, env=env
        )
        if out.returncode != 0:
            report["results"].append({"config": name, "error": out.stderr.strip().splitlines()[-1:]})
            print(f"{name} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        report["results"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    rows = [r for r in report["results"] if "error" not in r]
    base = next((r for r in rows if r["config"] == "full"), None)
    if base is not None:
        for r in rows:
            r["peak_vs_full"] = round(r["peak_gb"] / base["peak_gb"], 3)
    print(json.dumps(report, indent=1))
    print(_table(rows, args.predict))


def _table(rows: list[dict], predict: bool) -> str:
    if not rows:
        return ""
    keys = [k for k in rows[0] if k not in ("memory_kind",)]
    if not predict and "peak_vs_full" not in keys:
        keys = [k for k in keys]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
