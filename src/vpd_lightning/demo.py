"""The embedded default: a VPD task end to end on this machine, no downloads (``make demo [TASK=...]``).

1. writes a tiny SD-1.x-shaped UNet/VAE/CLIP + OpenAI CLIP's tokenizer with ``save_pretrained`` (loaded back
   through the same ``from_pretrained`` path as real weights); all random except the VAE, which gets a few
   dozen autoencoder steps first (a frozen *random* encoder scrambles the image; SD's real VAE keeps it);
2. writes a small data set in the task's exact on-disk layout (NYUv2: rendered rooms whose depth follows from
   the image; ADE20K: shapes whose class follows from colour and form; RefCOCO: shapes named by sentences);
3. trains ``experiment=demo_<task>`` through :func:`vpd_lightning.train.train` (the same code as the CLI) and
   evaluates the best checkpoint with the paper's protocol;
4. compares with the trivial baseline (mean depth / most frequent class / largest object) and writes a picture.

Both (1) and (2) are kept under ``<data-dir>/demo`` and reused by the next run. Progress is printed from the
first second, one line per epoch when the output is not a terminal (a log file, a pipe, CI).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

#: Per task: the default epochs, the fewest epochs seen to beat the baseline (README Quickstart says how this
#: was measured), the generated data set's size and its image size.
TASKS = {
    "depth": {"epochs": 6, "wins_from": 4, "num_train": 96, "num_test": 16, "height": 64, "width": 80},
    "segmentation": {"epochs": 12, "wins_from": 1, "num_train": 160, "num_test": 24, "height": 128, "width": 128},
    # one measured run: val oIoU above the baseline's 0.234 from epoch 22 on (0.26 at 19, noisy before)
    "referring": {"epochs": 24, "wins_from": 22, "num_train": 96, "num_test": 0, "height": 96, "width": 120},
    # the three data sets above on one backbone; every step trains every task (no measured figures yet)
    "multitask": {"epochs": 8, "wins_from": None, "num_train": None, "num_test": None, "height": None, "width": None},
}
#: the single-task demos a multi-task demo trains at once
MULTITASK = ("depth", "segmentation", "referring")

#: The tiny SD-shaped components of the demos (``<data-dir>/demo/<cache>/tiny-sd``), with OpenAI CLIP's real BPE
#: so that sentences and prompts are tokenized as with Stable Diffusion (one token per common word). Depth and
#: segmentation share one whose VAE is pre-trained as an autoencoder on 32-pixel rooms (seconds); referring, whose
#: masks follow small shapes at 128 px, needs the finer VAE of 150 steps on 64-pixel rooms (under a minute).
TINY_SD = {
    "depth": {"vae_pretrain_steps": 60, "vae_pretrain_size": 32, "tokenizer": "clip"},
    "segmentation": {"vae_pretrain_steps": 60, "vae_pretrain_size": 32, "tokenizer": "clip"},
    "referring": {"vae_pretrain_steps": 150, "vae_pretrain_size": 64, "tokenizer": "clip"},
}
TINY_SD["multitask"] = TINY_SD["referring"]  # one backbone for all: the finer VAE the referring masks need


def cache_dir(data_dir: Path, task: str) -> Path:
    """The demo's ``paths.cache_dir`` (tiny model and prompt embeddings): ``<data-dir>/demo/cache``, and
    ``<data-dir>/demo/cache-referring`` for the referring demo's own tiny model."""
    return Path(data_dir) / "demo" / ("cache-referring" if task in ("referring", "multitask") else "cache")


BASELINES = {
    "depth": "predict the mean depth",
    "segmentation": "predict the most frequent class",
    "referring": "predict the largest object",
}


def say(message: str) -> None:
    """A ``[demo]`` line, flushed at once (a pipe or a log file would otherwise hold it back for minutes)."""
    print(f"[demo] {message}", flush=True)


def verdict(
    task: str,
    metric: str,
    ours: float,
    base: float,
    higher_is_better: bool,
    unit: str,
    epochs: int,
    advice: bool = True,
) -> str:
    """The plain-words comparison with the baseline: better or worse, by how much, and what it takes to win.

    Lower-is-better metrics (RMSE) compare in percent of the baseline, scores in [0, 1] (mIoU, oIoU) in points.
    """
    better = ours > base if higher_is_better else ours < base
    if higher_is_better:
        amount = f"{100 * abs(ours - base):.1f} points of {metric}"
    else:
        amount = f"{100 * abs(ours - base) / base:.1f} %"
    head = f"VPD (tiny backbone) is {'better' if better else 'worse'} than the baseline ({BASELINES[task]}) by {amount}"
    line = f"{head}: {metric} {ours:.3f}{unit} vs {base:.3f}{unit}"
    wins_from, default = TASKS[task]["wins_from"], TASKS[task]["epochs"]
    if not advice:
        return line
    if not better and wins_from is None:
        line += f". In our runs this demo has not beaten it yet (this run: {epochs} epochs; default {default})"
    elif not better:
        line += f". In our runs this demo beats it with {wins_from} epochs or more"
        line += f" (this run: {epochs}; default {default})"
    return line


def _mean_train_depth(dataset) -> float:
    import numpy as np
    from PIL import Image

    total, count = 0.0, 0
    for _, depth_path in dataset.pairs:
        depth = np.asarray(Image.open(depth_path)).astype(np.float64) / 1000.0
        valid = depth > 0
        total += depth[valid].sum()
        count += int(valid.sum())
    return total / max(count, 1)


def _depth_report(model, datamodule, metrics: dict, output: Path, epochs: int, advice: bool = True) -> dict:
    import torch

    from vpd_lightning.metrics import DepthMetrics
    from vpd_lightning.visualize import depth_panel

    mean_depth = _mean_train_depth(datamodule.train_set)
    baseline = DepthMetrics(eigen_crop=True)
    for sample in datamodule.test_set:
        baseline.update(torch.full_like(sample["depth"], mean_depth)[None], sample["depth"][None])
    base = {k: float(v) for k, v in baseline.compute().items()}
    ours = {k.removeprefix("test/"): v for k, v in metrics.items() if k.startswith("test/")}
    say(f"test split ({len(datamodule.test_set)} images), paper protocol (Eigen crop, 2 shifted windows + flips)")
    print(f"  {'metric':<10}{'VPD (tiny)':>12}{'mean depth':>12}")
    for key in DepthMetrics.METRIC_NAMES:
        print(f"  {key:<10}{ours[key]:>12.4f}{base[key]:>12.4f}")
    gain = (base["rmse"] - ours["rmse"]) / base["rmse"]
    line = verdict("depth", "RMSE", ours["rmse"], base["rmse"], False, " m", epochs, advice)
    say(line + f" (mean depth {mean_depth:.2f} m)")
    model.eval()
    samples = [datamodule.test_set[i] for i in range(min(4, len(datamodule.test_set)))]
    with torch.no_grad():
        preds = [model.predict_depth(s["image"][None], s["class_id"][None])[0] for s in samples]
    picture = output / "depth_demo.png"
    depth_panel([s["image"] for s in samples], [s["depth"] for s in samples], preds).save(picture)
    return {"test": ours, "baseline": base, "rmse_improvement": gain, "picture": str(picture)}


def _segmentation_report(model, datamodule, metrics: dict, output: Path, epochs: int, advice: bool = True) -> dict:
    import numpy as np
    import torch

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
    say(f"validation split ({len(val)} images), sliding-window protocol")
    print(f"  {'metric':<8}{'VPD (tiny)':>12}{'most frequent':>15}")
    for key in ("miou", "aacc", "macc"):
        print(f"  {key:<8}{ours[key]:>12.4f}{base[key]:>15.4f}")
    gain = ours["miou"] - base["miou"]
    say(
        verdict("segmentation", "mIoU", ours["miou"], base["miou"], True, "", epochs, advice)
        + f" (most frequent class: '{datamodule.class_names[frequent].strip()}')"
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


def _largest_object_masks(dataset) -> list:
    """For every evaluation sentence, the mask of the largest object of its image (the trivial baseline)."""
    import numpy as np
    import torch
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


def _referring_report(model, datamodule, metrics: dict, output: Path, epochs: int, advice: bool = True) -> dict:
    import torch

    from vpd_lightning.metrics import ReferringMetrics
    from vpd_lightning.visualize import referring_panel

    dataset = datamodule.test_set
    baseline = ReferringMetrics()
    for i, largest in enumerate(_largest_object_masks(dataset)):
        baseline.update(largest[None], dataset[i]["mask"][None].bool())
    base = {k: float(v) for k, v in baseline.compute().items()}
    ours = {k.removeprefix("test/"): v for k, v in metrics.items() if k.startswith("test/")}
    say(
        f"{dataset.dataset} ({dataset.split_by}) '{dataset.split}' split ({len(dataset)} sentences), every "
        "sentence, 2-class argmax"
    )
    print(f"  {'metric':<15}{'VPD (tiny)':>12}{'largest object':>16}")
    for key in base:
        print(f"  {key:<15}{ours[key]:>12.4f}{base[key]:>16.4f}")
    gain = ours["oiou"] - base["oiou"]
    say(verdict("referring", "oIoU", ours["oiou"], base["oiou"], True, "", epochs, advice))
    model.eval()
    samples = [dataset[i] for i in range(min(6, len(dataset)))]
    with torch.no_grad():
        preds = [model(s["image"][None], s["input_ids"][None], s["attention_mask"][None]).argmax(1)[0] for s in samples]
    picture = output / "referring_demo.png"
    referring_panel(
        [s["image"] for s in samples], [s["mask"] for s in samples], preds, [s["sentence"] for s in samples]
    ).save(picture)
    return {"test": ours, "baseline": base, "oiou_gain": gain, "picture": str(picture)}


def _refcoco_counts(root: Path) -> str:
    """``96 images: train 69 (451 sentences), testA 9 (...), ...`` read back from ``refs(unc).p``."""
    from vpd_lightning.data.refcoco import ReferData

    data = ReferData.load(root, "refcoco", "unc")
    images: dict[str, set] = {}
    sentences: dict[str, int] = {}
    for ref in data.refs:
        images.setdefault(ref["split"], set()).add(ref["image_id"])
        sentences[ref["split"]] = sentences.get(ref["split"], 0) + len(ref["sentences"])
    order = sorted(images, key=lambda split: (split != "train", split))
    parts = [f"{split} {len(images[split])} ({sentences[split]} sentences)" for split in order]
    return f"{sum(len(v) for v in images.values())} images: " + ", ".join(parts)


def _generate(synthetic, task: str, data_dir: Path, num_train: int, num_test: int) -> tuple[Path, str]:
    """Write (or reuse) ``task``'s demo data set; return its root and a line saying what it holds."""
    size = (TASKS[task]["height"], TASKS[task]["width"])
    if task == "depth":
        root = synthetic.generate_nyuv2(data_dir / "demo" / "nyu_depth_v2", num_train, num_test, *size, seed=0)
        return root, f"{num_train} train / {num_test} test images"
    if task == "segmentation":
        root = synthetic.generate_ade20k(data_dir / "demo" / "ADEChallengeData2016", num_train, num_test, *size, seed=0)
        return root, f"{num_train} training / {num_test} validation images"
    root = synthetic.generate_refcoco(data_dir / "demo" / "refer", "refcoco", "unc", num_train, *size, seed=0)
    return root, _refcoco_counts(root)


#: per task: the metric the multi-task demo table shows, whether higher is better, its unit
HEADLINE = {"depth": ("rmse", False, " m"), "segmentation": ("miou", True, ""), "referring": ("oiou", True, "")}


def _single_task_run(args: argparse.Namespace, task: str, steps: int, output: Path) -> dict[str, float]:
    """The single-task demo of ``task`` on the multi-task demo's tiny backbone, trained for ``steps`` steps (the
    number of steps the multi-task run trained ``task``); its test metrics."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from vpd_lightning.config import CONFIG_DIR
    from vpd_lightning.train import train

    data_dir = Path(args.data_dir).resolve()
    folder = output / f"single-{task}"
    overrides = [
        f"experiment=demo_{task}",
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={cache_dir(data_dir, 'multitask')}",
        f"paths.output_dir={folder}",
        f"hydra.run.dir={folder}",
        "trainer.max_epochs=-1",
        f"trainer.max_steps={steps}",
        "trainer.enable_progress_bar=false",
        "~callbacks.validation_summary",
        "+callbacks.epoch_line._target_=vpd_lightning.callbacks.EpochLine",
    ]
    say(f"    single-task {task}, {steps} steps: {command_line(overrides)}")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    metrics, _ = train(cfg)
    return {k.removeprefix("test/"): v for k, v in metrics.items() if k.startswith("test/")}


def _multitask_report(args: argparse.Namespace, objects: dict, metrics: dict, output: Path, epochs: int) -> dict:
    """Each task's test metrics and trivial baseline (the single-task demos' reports), then, unless
    ``--no-single``, the single-task demo trained for the same number of that task's steps, in one table."""
    model, datamodule = objects["model"], objects["datamodule"]
    steps = int(objects["trainer"].global_step)  # sampling=all: every step trained every task
    reports = {"depth": _depth_report, "segmentation": _segmentation_report, "referring": _referring_report}
    summary: dict = {"tasks": {}, "steps_per_task": steps}
    for task in model.task_names:
        say(f"--- {task}")
        prefix = f"test/{task}/"
        own = {"test/" + k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}
        folder = output / task
        folder.mkdir(parents=True, exist_ok=True)
        with model.variant(task):
            report = reports[task](model.tasks[task], datamodule.modules[task], own, folder, epochs, advice=False)
        summary["tasks"][task] = report
    if not args.no_single:
        say(f"single-task demos at the same number of steps per task ({steps}), on the same tiny backbone")
        for task in model.task_names:
            summary["tasks"][task]["single"] = _single_task_run(args, task, steps, output)
    say(f"multi-task demo: {steps} steps, every task in every step; test metrics")
    print(f"  {'task':<14}{'metric':<8}{'multi-task':>12}{'single-task':>13}{'baseline':>10}  sharing")
    for task, report in summary["tasks"].items():
        metric, higher, unit = HEADLINE[task]
        multi, base = report["test"][metric], report["baseline"][metric]
        single = report.get("single", {}).get(metric)
        if single is None:
            shown, effect = f"{'-':>13}", "(--no-single)"
        else:
            helped = multi > single if higher else multi < single
            shown, effect = f"{single:>13.4f}", "helped" if helped else "hurt"
        print(f"  {task:<14}{metric + unit:<8}{multi:>12.4f}{shown}{base:>10.4f}  {effect}")
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="depth")
    parser.add_argument("--data-dir", default="data", help="data sets and the tiny model go to <data-dir>/demo")
    parser.add_argument("--output", default=None, help="run folder (default outputs/demo/<task>)")
    parser.add_argument("--num-train", type=int, default=None, help="referring: the number of images")
    parser.add_argument("--num-test", type=int, default=None, help="(not for referring: ~10 %% per other split)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--no-single", action="store_true", help="multitask: skip the single-task runs at the same number of steps"
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. data.batch_size=4")
    return parser.parse_args(argv)


def train_overrides(args: argparse.Namespace, tty: bool) -> list[str]:
    """The Hydra overrides of ``python -m vpd_lightning.train`` that make exactly the demo's run.

    ``paths.cache_dir`` points at the demo's tiny model (and its prompt-embedding cache); without a terminal,
    Lightning's progress bar (which a pipe shows as one endless line) gives way to one line per epoch.
    """
    data_dir = Path(args.data_dir).resolve()
    output = Path(args.output or f"outputs/demo/{args.task}").resolve()
    overrides = [
        f"experiment=demo_{args.task}",
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={cache_dir(data_dir, args.task)}",
        f"paths.output_dir={output}",
        f"hydra.run.dir={output}",
        f"trainer.max_epochs={args.epochs or TASKS[args.task]['epochs']}",
    ]
    if not tty:
        overrides += [
            "trainer.enable_progress_bar=false",
            "~callbacks.validation_summary",
            "+callbacks.epoch_line._target_=vpd_lightning.callbacks.EpochLine",
        ]
    return overrides + list(args.overrides)


def command_line(overrides: list[str]) -> str:
    """The shell command that trains exactly like the demo (quoted where the shell needs it)."""
    return "python -m vpd_lightning.train " + shlex.join(overrides)


def main(argv: list[str] | None = None) -> dict:
    start = time.time()
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # also the metric tables and Lightning's lines
    args = parse_args(argv)
    defaults = TASKS[args.task]
    epochs = args.epochs or defaults["epochs"]
    num_train, num_test = args.num_train or defaults["num_train"], args.num_test or defaults["num_test"]
    say(f"{args.task}: tiny SD-shaped backbone + generated data, {epochs} epochs on the CPU; loading torch ...")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from vpd_lightning.backbone.tiny import save_tiny_stable_diffusion
    from vpd_lightning.config import CONFIG_DIR
    from vpd_lightning.data import synthetic
    from vpd_lightning.train import train

    data_dir = Path(args.data_dir).resolve()
    output = Path(args.output or f"outputs/demo/{args.task}").resolve()
    cache = cache_dir(data_dir, args.task) / "tiny-sd"
    fresh = not (cache / "vpd_tiny.json").is_file()
    doing = "writing; the VAE trains as an autoencoder for a few seconds" if fresh else "reusing"
    say(f"1/4 tiny SD-shaped components ({doing}): {cache}")
    t0 = time.time()
    save_tiny_stable_diffusion(cache, **TINY_SD[args.task])
    say(f"    ready in {time.time() - t0:.0f} s. 2/4 {args.task} data in the real on-disk layout ...")
    for task in MULTITASK if args.task == "multitask" else (args.task,):
        t0 = time.time()
        if args.task == "multitask":  # each data set as its single-task demo makes it
            num_train, num_test = TASKS[task]["num_train"], TASKS[task]["num_test"]
        root, counts = _generate(synthetic, task, data_dir, num_train, num_test)
        size = (TASKS[task]["height"], TASKS[task]["width"])
        say(f"    {root} ({counts}, ~{size[0]}x{size[1]}) in {time.time() - t0:.0f} s")
    overrides = train_overrides(args, tty=sys.stdout.isatty())
    say(f"3/4 training {epochs} epochs; the same run from the command line:\n    {command_line(overrides)}")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    metrics, objects = train(cfg)
    say("4/4 evaluation against the baseline")
    if args.task == "multitask":
        summary = _multitask_report(args, objects, metrics, output, epochs)
        summary["seconds"] = round(time.time() - start, 1)
        (output / "demo_summary.json").write_text(json.dumps(summary, indent=1))
        say(f"done in {time.time() - start:.0f} s; run folder {output}")
        return summary
    report = {"depth": _depth_report, "segmentation": _segmentation_report, "referring": _referring_report}[args.task]
    summary = report(objects["model"], objects["datamodule"], metrics, output, epochs)
    summary["seconds"] = round(time.time() - start, 1)
    (output / "demo_summary.json").write_text(json.dumps(summary, indent=1))
    say(f"picture: {summary['picture']}")
    say(f"done in {time.time() - start:.0f} s; run folder {output}")
    return summary


def cli() -> None:
    """The ``vpd-demo`` console script: :func:`main`, user errors as one line."""
    from vpd_lightning.utils.errors import user_errors_exit

    with user_errors_exit():
        main()


if __name__ == "__main__":
    cli()
