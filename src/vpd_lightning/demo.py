"""The embedded default: VPD depth end to end on this machine, no downloads (``make demo``).

1. writes a small data set in the exact NYUv2 layout (rendered rooms whose depth follows from the image);
2. writes a tiny SD-1.x-shaped UNet/VAE/CLIP + tokenizer with ``save_pretrained`` (loaded back through the same
   ``from_pretrained`` path as real weights); all random except the VAE, which gets a few hundred autoencoder
   steps first (a frozen *random* encoder scrambles the image; SD's real VAE keeps it);
3. trains ``experiment=demo_depth`` through :func:`vpd_lightning.train.train` (the same code as the CLI) and
   evaluates the best checkpoint with the paper's protocol (shifted windows + flips, Eigen crop);
4. compares with predicting the mean training depth everywhere, and writes a picture.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch


def _mean_train_depth(dataset) -> float:
    from PIL import Image

    total, count = 0.0, 0
    for _, depth_path in dataset.pairs:
        depth = np.asarray(Image.open(depth_path)).astype(np.float64) / 1000.0
        valid = depth > 0
        total += depth[valid].sum()
        count += int(valid.sum())
    return total / max(count, 1)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data", help="data sets go to <data-dir>/demo")
    parser.add_argument("--output", default="outputs/demo", help="run folder (checkpoints, logs, picture)")
    parser.add_argument("--num-train", type=int, default=192)
    parser.add_argument("--num-test", type=int, default=24)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.max_epochs=2")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.time()

    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from vpd_lightning.backbone.tiny import save_tiny_stable_diffusion
    from vpd_lightning.config import CONFIG_DIR
    from vpd_lightning.data.generate import generate_nyuv2
    from vpd_lightning.metrics import DepthMetrics
    from vpd_lightning.train import train
    from vpd_lightning.visualize import depth_panel

    data_dir = Path(args.data_dir).resolve()
    output = Path(args.output).resolve()
    root = generate_nyuv2(
        data_dir / "demo" / "nyu_depth_v2", args.num_train, args.num_test, args.height, args.width, seed=0
    )
    tiny_sd = save_tiny_stable_diffusion(data_dir / "demo" / "cache" / "tiny-sd", vae_pretrain_steps=150)
    print(f"[demo] tiny SD-shaped components (VAE pre-trained as an autoencoder, the rest random): {tiny_sd}")
    print(
        f"[demo] NYUv2-layout data: {root} ({args.num_train} train / {args.num_test} test, {args.height}x{args.width})"
    )
    overrides = [
        "experiment=demo_depth",
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={data_dir / 'demo' / 'cache'}",
        f"paths.output_dir={output}",
        f"hydra.run.dir={output}",
        f"trainer.max_epochs={args.epochs}",
        *args.overrides,
    ]
    print("[demo] same as: python -m vpd_lightning.train " + " ".join(overrides[:2] + overrides[4:]))
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    metrics, objects = train(cfg)
    model, datamodule = objects["model"], objects["datamodule"]

    # Baseline: the mean training depth everywhere, scored with the same protocol.
    mean_depth = _mean_train_depth(datamodule.train_set)
    baseline = DepthMetrics(eigen_crop=True)
    for sample in datamodule.test_set:
        baseline.update(torch.full_like(sample["depth"], mean_depth)[None], sample["depth"][None])
    base = {k: float(v) for k, v in baseline.compute().items()}
    ours = {k.removeprefix("test/"): v for k, v in metrics.items() if k.startswith("test/")}
    print("[demo] test split, paper protocol (Eigen crop, 2 shifted windows + flips)")
    print(f"  {'metric':<10}{'VPD (tiny)':>12}{'mean depth':>12}")
    for key in DepthMetrics.METRIC_NAMES:
        print(f"  {key:<10}{ours[key]:>12.4f}{base[key]:>12.4f}")
    gain = (base["rmse"] - ours["rmse"]) / base["rmse"]
    verdict = "beats" if ours["rmse"] < base["rmse"] else "does NOT beat"
    print(
        f"[demo] VPD (tiny backbone) {verdict} the predict-the-mean-depth baseline: RMSE {ours['rmse']:.3f} m vs "
        f"{base['rmse']:.3f} m ({100 * gain:.1f}% lower; mean depth {mean_depth:.2f} m)"
    )

    # Picture: image | ground truth | prediction | error for a few test images.
    model.eval()
    samples = [datamodule.test_set[i] for i in range(min(4, len(datamodule.test_set)))]
    with torch.no_grad():
        preds = [model.predict_depth(s["image"][None], s["class_id"][None])[0] for s in samples]
    picture = output / "depth_demo.png"
    depth_panel([s["image"] for s in samples], [s["depth"] for s in samples], preds).save(picture)
    summary = {"test": ours, "mean_depth_baseline": base, "rmse_improvement": gain, "picture": str(picture)}
    (output / "demo_summary.json").write_text(json.dumps(summary, indent=1))
    print(f"[demo] picture: {picture}")
    print(f"[demo] done in {time.time() - start:.0f} s; run folder {output}")
    return summary


if __name__ == "__main__":
    main()
