"""The generators' command lines, kept as they were (each ``python -m`` entry point is a thin module)::

    python -m vpd_lightning.data.generate {nyuv2,ade20k,refcoco} --root DIR ...   (main)
    python -m vpd_lightning.data.generate_kitti --root DIR ...                    (kitti_main)
    python -m vpd_lightning.data.generate_segmentation {cityscapes,voc} --root DIR ...  (segmentation_main)
    python -m vpd_lightning.data.generate_folders {depth,referring} --root DIR ...     (folders_main)

Options: see each data set's module in :mod:`vpd_lightning.data.synthetic`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from vpd_lightning.data.synthetic.ade20k import _add_ade20k_parser
from vpd_lightning.data.synthetic.cityscapes import generate_cityscapes
from vpd_lightning.data.synthetic.depth_folder import generate_depth_folder
from vpd_lightning.data.synthetic.kitti import generate_kitti
from vpd_lightning.data.synthetic.nyuv2 import _add_nyuv2_parser
from vpd_lightning.data.synthetic.refcoco import _add_refcoco_parser
from vpd_lightning.data.synthetic.referring_folder import generate_referring_folder
from vpd_lightning.data.synthetic.voc import generate_voc

__all__ = ["build_parser", "folders_main", "kitti_main", "main", "segmentation_main"]

# One subcommand per data set of ``python -m vpd_lightning.data.generate``.  To add one, write
# ``_add_<name>_parser(subparsers)`` in the data set's module, registering its subparser with
# ``set_defaults(func=...)``, and append it here.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_nyuv2_parser,
    _add_ade20k_parser,
    _add_refcoco_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vpd_lightning.data.generate",
        description="Generate small synthetic data sets in the on-disk layout of the real ones.",
    )
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = args.func(args)
    except (ValueError, FileExistsError) as e:
        parser.error(str(e))
    print(out)
    return 0


def kitti_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vpd_lightning.data.generate_kitti",
        description="Small synthetic KITTI depth (Eigen split) in the BTS / GLPDepth layout.",
    )
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--num-train", type=int, default=8)
    parser.add_argument("--num-test", type=int, default=4)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=1242)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(generate_kitti(args.root, args.num_train, args.num_test, args.height, args.width, args.seed))
    return 0


def segmentation_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vpd_lightning.data.generate_segmentation")
    sub = parser.add_subparsers(dest="what", required=True)
    for name, h, w in (("cityscapes", 1024, 2048), ("voc", 375, 500)):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True, type=Path)
        p.add_argument("--num-train", type=int, default=4)
        p.add_argument("--num-val", type=int, default=2)
        p.add_argument("--height", type=int, default=h)
        p.add_argument("--width", type=int, default=w)
        p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = dict(num_train=args.num_train, num_val=args.num_val, height=args.height, width=args.width, seed=args.seed)
    print((generate_cityscapes if args.what == "cityscapes" else generate_voc)(args.root, **sizes))
    return 0


def folders_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vpd_lightning.data.generate_folders",
        description="Small data sets in the folder layouts for your own data: depth pairs and referring JSON lines.",
    )
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("depth", "referring"):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True, type=Path)
        p.add_argument("--num-train", type=int, default=8 if name == "depth" else 12)
        p.add_argument("--num-" + ("test" if name == "depth" else "val"), dest="num_eval", type=int, default=4)
        p.add_argument("--height", type=int, default=64)
        p.add_argument("--width", type=int, default=80 if name == "depth" else 64)
        p.add_argument("--seed", type=int, default=0)
        if name == "depth":
            p.add_argument("--npy", action="store_true", help="depth as .npy arrays of metres")
            p.add_argument("--masks", action="store_true", help="also write valid-pixel masks")
    args = parser.parse_args(argv)
    sizes = (args.root, args.num_train, args.num_eval, args.height, args.width, args.seed)
    if args.what == "depth":
        print(generate_depth_folder(*sizes, npy=args.npy, masks=args.masks))
    else:
        print(generate_referring_folder(*sizes))
    return 0
