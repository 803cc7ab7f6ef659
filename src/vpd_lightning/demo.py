"""The embedded default: a VPD task end to end on this machine, no downloads (``make demo [TASK=...]``).

1. writes a small data set in the task's exact on-disk layout (NYUv2: rendered rooms whose depth follows from
   the image; ADE20K: shapes whose class follows from colour and form);
2. writes a tiny SD-1.x-shaped UNet/VAE/CLIP + tokenizer with ``save_pretrained`` (loaded back through the same
   ``from_pretrained`` path as real weights); all random except the VAE, which gets a few hundred autoencoder
   steps first (a frozen *random* encoder scrambles the image; SD's real VAE keeps it);
3. trains ``experiment=demo_<task>`` through :func:`vpd_lightning.train.train` (the same code as the CLI) and
   evaluates the best checkpoint with the paper's protocol;
4. compares with the trivial baseline (mean depth / most frequent class) and writes a picture.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

TASKS = {
    "depth": {"epochs": 10, "num_train": 192, "num_test": 24, "height": 120, "width": 160},
    "segmentation": {"epochs": 12, "num_train": 160, "num_test": 24, "height": 128, "width": 128},
    "referring": {"epochs": 24, "num_train": 96, "num_test": 0, "height": 96, "width": 120},
}


def _mean_train_depth(dataset) -> float:
    from PIL import Image

    total, count = 0.0, 0
    for _, depth_path in dataset.pairs:
        depth = np.asarray(Image.open(depth_path)).astype(np.float64) / 1000.0
        valid = depth > 0
        total += depth[valid].sum()
        count += int(valid.sum())
    return total / max(count, 1)


def _depth_report(model, datamodule, metrics: dict, output: Path) -> dict:
    from vpd_lightning.metrics import DepthMetrics
    from vpd_lightning.visualize import depth_panel

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
    verdict = "beats" if gain > 0 else "does NOT beat"
    print(
        f"[demo] VPD (tiny backbone) {verdict} the predict-the-mean-depth baseline: RMSE {ours['rmse']:.3f} m vs "
        f"{base['rmse']:.3f} m ({100 * gain:.1f}% lower; mean depth {mean_depth:.2f} m)"
    )
    model.eval()
    samples = [datamodule.test_set[i] for i in range(min(4, len(datamodule.test_set)))]
    with torch.no_grad():
        preds = [model.predict_depth(s["image"][None], s["class_id"][None])[0] for s in samples]
    picture = output / "depth_demo.png"
    depth_panel([s["image"] for s in samples], [s["depth"] for s in samples], preds).save(picture)
    return {"test": ours, "baseline": base, "rmse_improvement": gain, "picture": str(picture)}


def _segmentation_report(model, datamodule, metrics: dict, output: Path) -> dict:
    from vpd_lightning.metrics import SegmentationMetrics
    from vpd_lightning.visualize import segmentation_panel

    num_classes = len(datamodule.class_names)
    counts = torch.zeros(num_classes, dtype=torch.long)
    for i in range(len(datamodule.train_set)):
        label = torch.from_numpy(datamodule.train_set._read(i)[1].astype(np.int64))
        counts += torch.bincount(label[label != 255], minlength=num_classes)[:num_classes]
    frequent = int(counts.argmax())
    baseline = SegmentationMetrics(num_classes)
    val = datamodule.val_set
    for i in range(len(val)):
        label = val[i]["label"]
        baseline.update(torch.full_like(label, frequent)[None], label[None])
    base = {k: float(v) for k, v in baseline.compute().items() if k in ("miou", "aacc", "macc")}
    ours = {k.removeprefix("test/"): v for k, v in metrics.items() if k.startswith("test/")}
    print("[demo] validation split, sliding-window protocol")
    print(f"  {'metric':<8}{'VPD (tiny)':>12}{'most frequent':>15}")
    for key in ("miou", "aacc", "macc"):
        print(f"  {key:<8}{ours[key]:>12.4f}{base[key]:>15.4f}")
    gain = ours["miou"] - base["miou"]
    verdict = "beats" if gain > 0 else "does NOT beat"
    print(
        f"[demo] VPD (tiny backbone) {verdict} the predict-the-most-frequent-class baseline "
        f"('{datamodule.class_names[frequent].strip()}'): mIoU {ours['miou']:.3f} vs {base['miou']:.3f} "
        f"(+{100 * gain:.1f} points)"
    )
    if model.per_class_table:  # the classes of the demo data (the other ADE20K classes are absent: nan)
        print("\n".join(line for line in model.per_class_table.splitlines() if " nan " not in line + " "))
    model.eval()
    samples = [val[i] for i in range(min(4, len(val)))]
    with torch.no_grad():
        preds = [model.predict_logits(s["image"][None]).argmax(1)[0] for s in samples]
    picture = output / "segmentation_demo.png"
    segmentation_panel(
        [s["image"] for s in samples], [s["label"] for s in samples], preds, datamodule.class_names
    ).save(picture)
    return {"test": ours, "baseline": base, "miou_gain": gain, "picture": str(picture)}


def _largest_object_masks(dataset) -> list[torch.Tensor]:
    """For every evaluation sentence, the mask of the largest object of its image (the trivial baseline)."""
    from PIL import Image

    from vpd_lightning.data.refcoco import ReferData, decode_mask

    data = ReferData.load(dataset.root, dataset.dataset, dataset.split_by)
    by_file: dict[str, list] = {}
    for ann in data.anns.values():
        by_file.setdefault(data.images[ann["image_id"]]["file_name"], []).append(ann)
    masks = []
    for ref_index, _ in dataset.pairs:
        item = dataset.items[ref_index]
        candidates = [decode_mask(a["segmentation"], item.height, item.width) for a in by_file[item.image_path.name]]
        largest = max(candidates, key=lambda m: int(m.sum()))
        size = (dataset.image_size, dataset.image_size)
        masks.append(torch.from_numpy(np.array(Image.fromarray(largest * 255).resize(size, Image.NEAREST)) > 0))
    return masks


def _referring_report(model, datamodule, metrics: dict, output: Path) -> dict:
    from vpd_lightning.metrics import ReferringMetrics
    from vpd_lightning.visualize import referring_panel

    dataset = datamodule.test_set
    baseline = ReferringMetrics()
    for i, largest in enumerate(_largest_object_masks(dataset)):
        baseline.update(largest[None], dataset[i]["mask"][None].bool())
    base = {k: float(v) for k, v in baseline.compute().items()}
    ours = {k.removeprefix("test/"): v for k, v in metrics.items() if k.startswith("test/")}
    print(f"[demo] {dataset.dataset} ({dataset.split_by}) '{dataset.split}' split, every sentence, 2-class argmax")
    print(f"  {'metric':<15}{'VPD (tiny)':>12}{'largest object':>16}")
    for key in base:
        print(f"  {key:<15}{ours[key]:>12.4f}{base[key]:>16.4f}")
    gain = ours["oiou"] - base["oiou"]
    verdict = "beats" if gain > 0 else "does NOT beat"
    print(
        f"[demo] VPD (tiny backbone) {verdict} the predict-the-largest-object baseline: oIoU {ours['oiou']:.3f} vs "
        f"{base['oiou']:.3f} ({100 * gain:+.1f} points)"
    )
    model.eval()
    samples = [dataset[i] for i in range(min(6, len(dataset)))]
    with torch.no_grad():
        preds = [model(s["image"][None], s["input_ids"][None], s["attention_mask"][None]).argmax(1)[0] for s in samples]
    picture = output / "referring_demo.png"
    referring_panel(
        [s["image"] for s in samples], [s["mask"] for s in samples], preds, [s["sentence"] for s in samples]
    ).save(picture)
    return {"test": ours, "baseline": base, "oiou_gain": gain, "picture": str(picture)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="depth")
    parser.add_argument("--data-dir", default="data", help="data sets go to <data-dir>/demo")
    parser.add_argument("--output", default=None, help="run folder (default outputs/demo/<task>)")
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--num-test", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.max_epochs=2")
    args = parser.parse_args(argv)
    defaults = TASKS[args.task]
    epochs = args.epochs or defaults["epochs"]
    num_train, num_test = args.num_train or defaults["num_train"], args.num_test or defaults["num_test"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.time()

    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from vpd_lightning.backbone.tiny import save_tiny_stable_diffusion
    from vpd_lightning.config import CONFIG_DIR
    from vpd_lightning.data import generate
    from vpd_lightning.train import train

    data_dir = Path(args.data_dir).resolve()
    output = Path(args.output or f"outputs/demo/{args.task}").resolve()
    tiny_sd = save_tiny_stable_diffusion(data_dir / "demo" / "cache" / "tiny-sd", vae_pretrain_steps=150)
    print(f"[demo] tiny SD-shaped components (VAE pre-trained as an autoencoder, the rest random): {tiny_sd}")
    size = (defaults["height"], defaults["width"])
    if args.task == "depth":
        root = generate.generate_nyuv2(data_dir / "demo" / "nyu_depth_v2", num_train, num_test, *size, seed=0)
    elif args.task == "segmentation":
        root = generate.generate_ade20k(data_dir / "demo" / "ADEChallengeData2016", num_train, num_test, *size, seed=0)
    else:
        root = generate.generate_refcoco(data_dir / "demo" / "refer", "refcoco", "unc", num_train, *size, seed=0)
    print(
        f"[demo] {args.task} data in the real layout: {root} "
        f"({num_train} train / {num_test} test, ~{size[0]}x{size[1]})"
    )
    overrides = [
        f"experiment=demo_{args.task}",
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={data_dir / 'demo' / 'cache'}",
        f"paths.output_dir={output}",
        f"hydra.run.dir={output}",
        f"trainer.max_epochs={epochs}",
        *args.overrides,
    ]
    print("[demo] same as: python -m vpd_lightning.train " + " ".join(overrides[:2] + overrides[4:]))
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    metrics, objects = train(cfg)
    report = {"depth": _depth_report, "segmentation": _segmentation_report, "referring": _referring_report}[args.task]
    summary = report(objects["model"], objects["datamodule"], metrics, output)
    (output / "demo_summary.json").write_text(json.dumps(summary, indent=1))
    print(f"[demo] picture: {summary['picture']}")
    print(f"[demo] done in {time.time() - start:.0f} s; run folder {output}")
    return summary


if __name__ == "__main__":
    from vpd_lightning.utils.errors import user_errors_exit

    with user_errors_exit():
        main()
