#!/usr/bin/env python
"""Convert a released VPD checkpoint (original key layout) into this framework's Lightning checkpoint.

    python scripts/convert_vpd_checkpoint.py --src vpd_depth_480x480.pth --dst nyuv2_vpd.ckpt --task depth \\
        sd_path=/path/to/stable-diffusion-v1-5
    python scripts/convert_vpd_checkpoint.py --src vpd_seg.pth --dst ade20k_vpd.ckpt --task segmentation
    python scripts/convert_vpd_checkpoint.py --src vpd_ref_refcocog.pth --dst refcocog.ckpt --task referring \\
        data=refcocog

The target model is built from the framework's Hydra config (``conf/train.yaml`` with ``task=<task>`` and the
extra ``key=value`` overrides given after the options), exactly as ``python -m vpd_lightning.train`` builds it,
so the overrides must describe the checkpoint's model (e.g. ``data=refcocog`` for G-Ref's 77 tokens). Building
it needs Stable Diffusion v1.5 in the diffusers layout (``sd_path=DIR`` or ``VPD_SD_PATH``): the UNet and VAE
topology come from it, and the referring model keeps SD-1.5's frozen CLIP text encoder, which VPD's referring
checkpoint does not store. No data set is read.

The class embeddings of depth and segmentation come from the checkpoint itself by default (passed to the model
as ``model.class_embeddings.embeddings_file``), so no CLIP prompts are encoded; ``--prompt-embeddings`` builds
them from the config instead (they are overwritten by the checkpoint's anyway). ``--task`` defaults to the task
detected from the checkpoint's keys.

Prints the conversion report: counts, then every key that was dropped, kept from the target model, unexpected,
missing or of the wrong shape. Exit status: 0 on success, 1 when the checkpoint cannot be converted faithfully
(nothing is written then), 2 for usage errors. Evaluate the result with
``python -m vpd_lightning.evaluate task=<task> ckpt_path=<dst> ...``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from vpd_lightning.convert import (
    TASKS,
    ConversionError,
    convert_vpd_state_dict,
    detect_task,
    load_original_state_dict,
    original_class_embeddings,
    save_lightning_checkpoint,
)

log = logging.getLogger("convert_vpd_checkpoint")


def compose_config(task: str, overrides: list[str], output_dir: str | Path):
    """The training config for ``task`` with ``overrides``, Hydra's run-time config set (as the train entry)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from vpd_lightning.config import CONFIG_DIR

    extra = (
        []
        if any(o.lstrip("+~").startswith("paths.output_dir=") for o in overrides)
        else [f"paths.output_dir={output_dir}"]
    )
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"task={task}", *overrides, *extra], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def build_model(task: str, overrides: list[str], output_dir: str | Path, embeddings_file: str | Path | None = None):
    """Instantiate ``cfg.model`` for ``task``; ``embeddings_file`` replaces the class-embedding computation."""
    from hydra.utils import instantiate

    cfg = compose_config(task, overrides, output_dir)
    if embeddings_file is not None and "class_embeddings" in cfg.model:
        cfg.model.class_embeddings.embeddings_file = str(embeddings_file)
    return instantiate(cfg.model, _convert_="all")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert a VPD checkpoint (original key layout) into a vpd_lightning Lightning checkpoint.",
        epilog="Trailing key=value arguments are Hydra overrides of conf/train.yaml (e.g. sd_path=DIR data=refcocog).",
    )
    parser.add_argument("--src", required=True, help="the original checkpoint (.pth)")
    parser.add_argument("--dst", required=True, help="the Lightning checkpoint to write (.ckpt)")
    parser.add_argument("--task", choices=TASKS, default=None, help="default: detected from the checkpoint's keys")
    parser.add_argument(
        "--prompt-embeddings",
        action="store_true",
        help="compute the class embeddings from the config's prompts instead of taking the checkpoint's",
    )
    parser.add_argument(
        "--allow-unexpected",
        action="store_true",
        help="write the checkpoint even if some source keys are not understood",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="fill model keys that the checkpoint lacks with the freshly built model's values (reported)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, key=value")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    try:
        state_dict = load_original_state_dict(args.src)
        detected = detect_task(state_dict)
        if args.task is not None and args.task != detected:
            raise ConversionError(
                f"'{args.src}' is a VPD {detected} checkpoint, not a {args.task} one (--task {args.task})"
            )
        task = detected
        with tempfile.TemporaryDirectory(prefix="vpd-convert-") as tmp:
            embeddings_file = None
            embeddings = original_class_embeddings(state_dict)
            if embeddings is not None and not args.prompt_embeddings:
                embeddings_file = Path(tmp) / "class_embeddings.pth"
                torch.save(embeddings.detach().clone(), embeddings_file)
            model = build_model(task, list(args.overrides), Path(tmp) / "output", embeddings_file)
            converted, report = convert_vpd_state_dict(
                state_dict, model, task, allow_unexpected=args.allow_unexpected, allow_missing=args.allow_missing
            )
            report.source = str(args.src)
            dst = save_lightning_checkpoint(converted, model, args.dst, report)
    except ConversionError as err:
        if err.report is not None:
            err.report.source = str(args.src)
            print(err.report.summary(), file=sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - one readable line (missing weights, bad override, unreadable file)
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    print(f"wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
