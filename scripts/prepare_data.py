#!/usr/bin/env python
"""Turn the official downloads into the layouts the data modules read (see vpd_lightning.data.prepare).

    python scripts/prepare_data.py nyuv2 --mat nyu_depth_v2_labeled.mat --splits splits.mat [--sync sync.zip] --out data
    python scripts/prepare_data.py ade20k --zip ADEChallengeData2016.zip --out data
    python scripts/prepare_data.py refcoco --refs refcoco.zip refcoco+.zip refcocog.zip --coco train2014.zip --out data
    python scripts/prepare_data.py kitti --raw kitti_raw_zips/ --annotated data_depth_annotated.zip \\
        --train-list eigen_train_files_with_gt.txt --test-list eigen_test_files_with_gt.txt --out data
    python scripts/prepare_data.py cityscapes --gtfine gtFine_trainvaltest.zip \\
        --leftimg leftImg8bit_trainvaltest.zip --out data
    python scripts/prepare_data.py voc --voc VOCtrainval_11-May-2012.tar --sbd benchmark.tgz --out data

Resumable (run it again after an interruption). Prints each count against the published size and what is
missing; exit status 0 when everything is there, 1 when something is short or an input is unusable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vpd_lightning.data import prepare
from vpd_lightning.utils.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="dataset", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--out", type=Path, default=Path("data"), help="data folder (default: data, as paths.data_dir)")
        return p

    p = add("nyuv2", "nyu_depth_v2_labeled.mat + splits.mat (+ BTS sync.zip)")
    p.add_argument("--mat", required=True)
    p.add_argument("--splits", required=True)
    p.add_argument("--sync", default=None)
    p = add("ade20k", "ADEChallengeData2016.zip")
    p.add_argument("--zip", required=True)
    p = add("refcoco", "REFER archives + COCO train2014.zip")
    p.add_argument("--refs", nargs="+", required=True)
    p.add_argument("--coco", required=True)
    p = add("kitti", "KITTI raw drive zips + data_depth_annotated.zip + BTS Eigen lists")
    p.add_argument("--raw", required=True, help="folder of <date>_drive_<n>_sync.zip")
    p.add_argument("--annotated", required=True)
    p.add_argument("--train-list", required=True)
    p.add_argument("--test-list", required=True)
    p = add("cityscapes", "gtFine_trainvaltest.zip + leftImg8bit_trainvaltest.zip")
    p.add_argument("--gtfine", required=True)
    p.add_argument("--leftimg", required=True)
    p = add("voc", "VOCtrainval_11-May-2012.tar (+ SBD benchmark.tgz)")
    p.add_argument("--voc", required=True)
    p.add_argument("--sbd", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.dataset == "nyuv2":
            report = prepare.prepare_nyuv2(args.mat, args.splits, args.out, sync=args.sync)
        elif args.dataset == "ade20k":
            report = prepare.prepare_ade20k(args.zip, args.out)
        elif args.dataset == "refcoco":
            report = prepare.prepare_refcoco(args.refs, args.coco, args.out)
        elif args.dataset == "kitti":
            report = prepare.prepare_kitti(args.raw, args.annotated, args.train_list, args.test_list, args.out)
        elif args.dataset == "cityscapes":
            report = prepare.prepare_cityscapes(args.gtfine, args.leftimg, args.out)
        else:
            report = prepare.prepare_voc(args.voc, args.sbd, args.out)
    except UserError as err:
        print(f"prepare_data {args.dataset}: {err}", file=sys.stderr)
        return 1
    print(report)
    return 1 if report.short else 0


if __name__ == "__main__":
    raise SystemExit(main())
