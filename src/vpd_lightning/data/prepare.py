"""Turn the official downloads into the layouts the data modules read (``scripts/prepare_data.py``).

Every step is resumable: an archive member already extracted with its size, or a converted file already
written, is skipped, and each file is written to a temporary name and renamed into place, so an interrupted run
continues where it stopped. At the end each data set is checked against its published sizes; the report names
every count that falls short and the first missing files, and the command exits with status 1 then.

* ``nyuv2``: ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3) + ``splits.mat`` (654 test / 795 train), optionally BTS's
  ``sync.zip`` (24,231 training pairs) -> ``nyu_depth_v2/``
* ``ade20k``: ``ADEChallengeData2016.zip`` -> ``ade/ADEChallengeData2016/``
* ``refcoco``: REFER's ``refcoco.zip``, ``refcoco+.zip``, ``refcocog.zip`` + COCO ``train2014.zip`` -> ``refer/``
* ``kitti``: KITTI raw ``<drive>_sync.zip`` files, ``data_depth_annotated.zip``, BTS's Eigen lists -> ``kitti/``
* ``cityscapes``: ``gtFine_trainvaltest.zip``, ``leftImg8bit_trainvaltest.zip`` (labelIds -> trainIds) ->
  ``cityscapes/``
* ``voc``: ``VOCtrainval_11-May-2012.tar``, SBD's ``benchmark.tgz`` (-> ``SegmentationClassAug``) ->
  ``VOCdevkit/VOC2012/``
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vpd_lightning.utils.errors import UserError

__all__ = [
    "PUBLISHED",
    "PrepareError",
    "Report",
    "prepare_ade20k",
    "prepare_cityscapes",
    "prepare_kitti",
    "prepare_nyuv2",
    "prepare_refcoco",
    "prepare_voc",
]

#: the published sizes each preparation is checked against
PUBLISHED: dict[str, dict[str, int]] = {
    "nyuv2": {"official test images": 654, "official train images": 795, "sync training pairs": 24231},
    "ade20k": {
        "images/training": 20210,
        "images/validation": 2000,
        "annotations/training": 20210,
        "annotations/validation": 2000,
    },
    "refcoco": {"COCO train2014 images": 82783, "refcoco refs": 50000, "refcoco+ refs": 49856, "refcocog refs": 49822},
    "kitti": {"train_list.txt lines": 23158, "test_list.txt lines": 697, "test_list.txt lines with ground truth": 652},
    "cityscapes": {"leftImg8bit/train": 2975, "leftImg8bit/val": 500, "gtFine/train": 2975, "gtFine/val": 500},
    "voc": {
        "JPEGImages": 17125,
        "SegmentationClass": 2913,
        "train.txt": 1464,
        "val.txt": 1449,
        "SBD masks": 11355,
        "aug.txt": 10582,
    },
}


class PrepareError(UserError):
    """An archive or input file is missing or not what was expected; the message names it."""


@dataclass
class Report:
    """What a preparation found: one line per count against the published size, and what is missing."""

    dataset: str
    lines: list[str] = field(default_factory=list)
    short: bool = False

    def count(self, what: str, found: int, missing: Sequence[str] = ()) -> None:
        expected = PUBLISHED[self.dataset][what]
        ok = found >= expected
        self.short |= not ok
        line = f"  {'ok  ' if ok else 'SHORT'} {what}: {found:,} of {expected:,}"
        if not ok:
            line += f" ({expected - found:,} missing)"
        if missing:
            line += f"; missing files: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
        self.lines.append(line)

    def note(self, text: str) -> None:
        self.lines.append(f"  note  {text}")

    def __str__(self) -> str:
        verdict = "complete" if not self.short else "INCOMPLETE (counts below the published sizes)"
        return f"{self.dataset}: {verdict}\n" + "\n".join(self.lines)


# --------------------------------------------------------------------------------------------------- archives


def _need(path: str | Path | None, what: str) -> Path:
    if path is None:
        raise PrepareError(f"{what} is required")
    path = Path(path).expanduser()
    if not path.exists():
        raise PrepareError(f"{what} '{path}' does not exist")
    return path


def _write_atomic(target: Path, data: bytes | Callable[[Path], None]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if callable(data):
        data(tmp)
    else:
        tmp.write_bytes(data)
    os.replace(tmp, target)


def _members(archive: Path) -> Iterator[tuple[str, int, Callable[[], bytes]]]:
    """``(name, size, read)`` of every regular file of a zip or tar archive."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        yield info.filename, info.file_size, lambda info=info: zf.read(info)
            return
        with tarfile.open(archive) as tf:
            for info in tf:
                if info.isfile():
                    yield info.name, info.size, lambda info=info: tf.extractfile(info).read()
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as err:
        raise PrepareError(f"{archive}: cannot read the archive ({err})") from err


def extract(archive: Path, dest: Path, rename: Callable[[str], str | None]) -> tuple[int, int]:
    """Extract the members ``rename`` maps to a relative path (``None``: skip) into ``dest``; a file already
    there with the member's size is kept. Returns ``(written, kept)``; raises when no member matched."""
    written = kept = 0
    for name, size, read in _members(archive):
        rel = rename(name)
        if rel is None:
            continue
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise PrepareError(f"{archive}: member '{name}' points outside the output folder")
        target = dest / rel
        if target.is_file() and target.stat().st_size == size:
            kept += 1
            continue
        _write_atomic(target, read())
        written += 1
    if written + kept == 0:
        raise PrepareError(f"{archive}: none of the expected members is in the archive (is it the right file?)")
    return written, kept


def _strip(prefix: str) -> Callable[[str], str | None]:
    """Members under ``prefix`` (a regular expression matched at the start), with the prefix removed."""
    pattern = re.compile(prefix)

    def rename(name: str) -> str | None:
        m = pattern.match(name)
        return name[m.end() :] if m else None

    return rename


def _files(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


# --------------------------------------------------------------------------------------------------- ADE20K


def prepare_ade20k(archive: str | Path, out: str | Path) -> Report:
    """``ADEChallengeData2016.zip`` -> ``<out>/ade/ADEChallengeData2016/``."""
    archive = _need(archive, "ADEChallengeData2016.zip")
    root = Path(out) / "ade"
    extract(archive, root, _strip(r"(?=ADEChallengeData2016/)"))
    report = Report("ade20k")
    base = root / "ADEChallengeData2016"
    for sub, suffix in (("images", "jpg"), ("annotations", "png")):
        for split in ("training", "validation"):
            report.count(f"{sub}/{split}", len(_files(base / sub / split, f"*.{suffix}")))
    images = {p.stem for p in _files(base / "images" / "validation", "*.jpg")}
    lonely = sorted(images - {p.stem for p in _files(base / "annotations" / "validation", "*.png")})
    if lonely:
        report.short = True
        report.note(f"{len(lonely)} validation image(s) without annotation: {', '.join(lonely[:5])}")
    return report


# --------------------------------------------------------------------------------------------------- Cityscapes


def convert_cityscapes_labels(label_ids: Path, target: Path) -> None:
    """``*_gtFine_labelIds.png`` -> ``*_gtFine_labelTrainIds.png`` (cityscapesScripts' table; 255 without one)."""
    from vpd_lightning.data.cityscapes import CITYSCAPES_NUM_LABEL_IDS, CITYSCAPES_TRAIN_IDS

    with Image.open(label_ids) as img:
        ids = np.asarray(img)
    if ids.ndim != 2 or ids.dtype != np.uint8:
        raise PrepareError(f"{label_ids}: expected an 8-bit single-channel labelIds PNG, got {ids.dtype} {ids.shape}")
    bad = np.unique(ids[ids >= CITYSCAPES_NUM_LABEL_IDS])
    if bad.size:
        raise PrepareError(
            f"{label_ids}: label ids {bad.tolist()} are outside the Cityscapes labelId table "
            f"(0..{CITYSCAPES_NUM_LABEL_IDS - 1})"
        )
    table = np.full(256, 255, np.uint8)
    for label, train_id in CITYSCAPES_TRAIN_IDS.items():
        table[label] = train_id
    _write_atomic(target, lambda tmp: Image.fromarray(table[ids]).save(tmp, format="PNG"))


def prepare_cityscapes(gtfine: str | Path, leftimg: str | Path, out: str | Path) -> Report:
    """The two ``*_trainvaltest.zip`` -> ``<out>/cityscapes/`` with ``*_labelTrainIds.png`` next to the labelIds."""
    gtfine, leftimg = _need(gtfine, "gtFine_trainvaltest.zip"), _need(leftimg, "leftImg8bit_trainvaltest.zip")
    root = Path(out) / "cityscapes"
    extract(gtfine, root, _strip(r"(?=gtFine/(train|val|test)/)"))
    extract(leftimg, root, _strip(r"(?=leftImg8bit/(train|val|test)/)"))
    for label in _files(root / "gtFine", "*/*/*_gtFine_labelIds.png"):
        target = label.with_name(label.name.replace("_labelIds.png", "_labelTrainIds.png"))
        if not target.is_file():
            convert_cityscapes_labels(label, target)
    report = Report("cityscapes")
    for split in ("train", "val"):
        images = _files(root / "leftImg8bit" / split, "*/*_leftImg8bit.png")
        labels = _files(root / "gtFine" / split, "*/*_gtFine_labelTrainIds.png")
        have = {p.name.replace("_gtFine_labelTrainIds.png", "") for p in labels}
        missing = [p.name for p in images if p.name.replace("_leftImg8bit.png", "") not in have]
        report.count(f"leftImg8bit/{split}", len(images))
        report.count(
            f"gtFine/{split}", len(labels), [m.replace("leftImg8bit", "gtFine_labelTrainIds") for m in missing]
        )
    return report


# --------------------------------------------------------------------------------------------------- VOC


def _sbd_mask(data: bytes, where: str) -> np.ndarray:
    from scipy.io import loadmat

    try:
        mat = loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)
        seg = np.asarray(mat["GTcls"].Segmentation)
    except (KeyError, AttributeError, ValueError, TypeError) as err:
        raise PrepareError(f"{where}: expected SBD's GTcls struct with a Segmentation field ({err})") from err
    if seg.ndim != 2 or seg.max(initial=0) > 20:
        raise PrepareError(f"{where}: Segmentation must be an H x W map of classes 0..20")
    return seg.astype(np.uint8)


def prepare_voc(voc_tar: str | Path, sbd: str | Path | None, out: str | Path) -> Report:
    """VOC 2012 trainval tar (+ SBD ``benchmark.tgz``) -> ``<out>/VOCdevkit/VOC2012/`` with
    ``SegmentationClassAug`` and ``ImageSets/Segmentation/aug.txt`` as mmseg's ``voc_aug.py``."""
    voc_tar = _need(voc_tar, "VOCtrainval_11-May-2012.tar")
    base = Path(out) / "VOCdevkit" / "VOC2012"
    wanted = r"VOCdevkit/VOC2012/(?=(JPEGImages|SegmentationClass|ImageSets/Segmentation)/)"
    extract(voc_tar, base, _strip(wanted))
    report = Report("voc")
    lists = base / "ImageSets" / "Segmentation"
    names = {s: _read_names(lists / f"{s}.txt") for s in ("train", "val")}
    report.count("JPEGImages", len(_files(base / "JPEGImages", "*.jpg")))
    report.count("SegmentationClass", len(_files(base / "SegmentationClass", "*.png")))
    for split in ("train", "val"):
        missing = [n for n in names[split] if not (base / "SegmentationClass" / f"{n}.png").is_file()]
        report.count(f"{split}.txt", len(names[split]) - len(missing), [f"{n}.png" for n in missing])
    if sbd is None:
        report.note("no SBD archive given: SegmentationClassAug and aug.txt not written (data.train_lists=[train])")
        report.short = True
        return report
    sbd = _need(sbd, "SBD benchmark.tgz")
    aug_dir = base / "SegmentationClassAug"
    sbd_lists: dict[str, list[str]] = {}
    count = 0
    for name, _, read in _members(sbd):
        m = re.match(r"(?:.*/)?dataset/cls/([^/]+)\.mat$", name)
        if m:
            count += 1
            target = aug_dir / f"{m.group(1)}.png"
            if not target.is_file():
                mask = _sbd_mask(read(), f"{sbd}:{name}")
                _write_atomic(target, lambda tmp, mask=mask: Image.fromarray(mask).save(tmp, format="PNG"))
        elif re.match(r"(?:.*/)?dataset/(train|val)\.txt$", name):
            sbd_lists[name.rsplit("/", 1)[1]] = read().decode().split()
    if count == 0 or len(sbd_lists) < 2:
        raise PrepareError(f"{sbd}: expected benchmark_RELEASE/dataset/cls/*.mat and dataset/{{train,val}}.txt")
    report.count("SBD masks", count)
    # mmseg voc_aug.py: (VOC train + SBD train + SBD val) - VOC val, sorted
    aug = sorted((set(names["train"]) | set(sbd_lists["train.txt"]) | set(sbd_lists["val.txt"])) - set(names["val"]))
    filled = 0
    for n in aug:  # a VOC train image without an SBD mask: its VOC label, as the usual SegmentationClassAug has
        target, voc = aug_dir / f"{n}.png", base / "SegmentationClass" / f"{n}.png"
        if not target.is_file() and voc.is_file():
            with Image.open(voc) as img:
                label = np.asarray(img)
            _write_atomic(target, lambda tmp, label=label: Image.fromarray(label).save(tmp, format="PNG"))
            filled += 1
    if filled:
        report.note(f"{filled} aug image(s) without an SBD mask took their VOC SegmentationClass label")
    _write_atomic(lists / "aug.txt", "".join(f"{n}\n" for n in aug).encode())
    missing = [f"{n}.png" for n in aug if not (aug_dir / f"{n}.png").is_file()]
    missing += [f"{n}.jpg" for n in aug if not (base / "JPEGImages" / f"{n}.jpg").is_file()]
    report.count("aug.txt", len(aug) - len({m.rsplit(".", 1)[0] for m in missing}), missing)
    return report


def _read_names(path: Path) -> list[str]:
    if not path.is_file():
        raise PrepareError(f"'{path}' is not in the archive")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------------- NYUv2


def prepare_nyuv2(
    labeled_mat: str | Path, splits_mat: str | Path, out: str | Path, sync: str | Path | None = None
) -> Report:
    """NYUv2's labeled ``.mat`` + ``splits.mat`` -> ``<out>/nyu_depth_v2/official_splits/{train,test}`` and
    ``test_list.txt``, as BTS's ``extract_official_train_test_set_from_mat.py`` (``rgb_%05d.jpg`` and
    ``sync_depth_%05d.png`` in millimetres, numbered by the 0-based image index, one folder per scene type). As
    there, the depth is the *raw* Kinect depth (``rawDepths``, holes = 0 = invalid; not the colourisation-filled
    ``depths``) and the image keeps only rows 7..473 and columns 7..631 (the rest black: the frame the Kinect
    projection leaves empty);
    with BTS's ``sync.zip`` also ``sync/`` and ``train_list.txt``."""
    import h5py
    from scipy.io import loadmat

    labeled_mat, splits_mat = _need(labeled_mat, "nyu_depth_v2_labeled.mat"), _need(splits_mat, "splits.mat")
    root = Path(out) / "nyu_depth_v2"
    try:
        splits = loadmat(splits_mat)
        test_ids = {int(i) for i in np.ravel(splits["testNdxs"])}
        train_ids = {int(i) for i in np.ravel(splits["trainNdxs"])}
    except (KeyError, ValueError, OSError) as err:
        raise PrepareError(f"{splits_mat}: expected MATLAB variables testNdxs and trainNdxs ({err})") from err
    lists: dict[str, list[str]] = {"train": [], "test": []}
    try:
        f = h5py.File(labeled_mat, "r")
    except OSError as err:
        raise PrepareError(f"{labeled_mat}: not a MATLAB v7.3 (HDF5) file ({err})") from err
    with f:
        missing = [k for k in ("images", "rawDepths", "sceneTypes") if k not in f]
        if missing:
            raise PrepareError(f"{labeled_mat}: variable(s) {missing} missing (expected images, rawDepths, sceneTypes)")
        images, depths = f["images"], f["rawDepths"]
        scenes = ["".join(chr(c) for c in np.ravel(f[ref][()])) for ref in np.ravel(f["sceneTypes"][()])]
        for i in range(images.shape[0]):
            idx = i + 1
            split = "test" if idx in test_ids else "train" if idx in train_ids else None
            if split is None:
                continue
            folder = root / "official_splits" / split / scenes[i]
            rgb_path, depth_path = folder / f"rgb_{i:05d}.jpg", folder / f"sync_depth_{i:05d}.png"
            if not (rgb_path.is_file() and depth_path.is_file()):
                full = np.asarray(images[i]).T  # MATLAB's column-major [3, W, H] -> [H, W, 3]
                rgb = np.zeros_like(full)  # BTS: the 7/6/7/8-pixel frame of a 480x640 image black
                rgb[7 : full.shape[0] - 6, 7 : full.shape[1] - 8] = full[7 : full.shape[0] - 6, 7 : full.shape[1] - 8]
                depth_mm = (np.asarray(depths[i]).T * 1000.0).astype(np.uint16)
                _write_atomic(rgb_path, lambda tmp, rgb=rgb: Image.fromarray(rgb).save(tmp, format="JPEG", quality=95))
                _write_atomic(depth_path, lambda tmp, d=depth_mm: Image.fromarray(d).save(tmp, format="PNG"))
            lists[split].append(f"/{scenes[i]}/rgb_{i:05d}.jpg /{scenes[i]}/sync_depth_{i:05d}.png")
    _write_atomic(root / "test_list.txt", "\n".join(lists["test"]).encode())
    report = Report("nyuv2")
    report.count("official test images", len(lists["test"]))
    report.count("official train images", len(lists["train"]))
    if sync is None:
        report.note("no sync.zip given: the training split (sync/, train_list.txt) is missing; evaluation works")
        report.short = True
        return report
    extract(_need(sync, "sync.zip"), root, _strip(r"(?:.*/)?(?=sync/)"))
    pairs = []
    for rgb in _files(root / "sync", "*/rgb_*.jpg"):
        depth = rgb.with_name(rgb.name.replace("rgb_", "sync_depth_").replace(".jpg", ".png"))
        if depth.is_file():
            pairs.append(f"/{rgb.parent.name}/{rgb.name} /{rgb.parent.name}/{depth.name}")
    _write_atomic(root / "train_list.txt", ("\n".join(pairs) + "\n").encode())
    report.count("sync training pairs", len(pairs))
    return report


# --------------------------------------------------------------------------------------------------- KITTI


def prepare_kitti(
    raw: str | Path, annotated: str | Path, train_list: str | Path, test_list: str | Path, out: str | Path
) -> Report:
    """KITTI raw drive zips (a folder of ``*_sync.zip``) + ``data_depth_annotated.zip`` + BTS's Eigen lists ->
    ``<out>/kitti/{input,gt_depth}`` and ``{train,test}_list.txt`` (the annotated train/ and val/ merged)."""
    raw, annotated = (
        _need(raw, "the folder of KITTI raw *_sync.zip files"),
        _need(annotated, "data_depth_annotated.zip"),
    )
    train_list, test_list = _need(train_list, "the Eigen train list"), _need(test_list, "the Eigen test list")
    root = Path(out) / "kitti"
    zips = sorted(raw.glob("*_sync.zip")) if raw.is_dir() else [raw]
    if not zips:
        raise PrepareError(f"no KITTI raw *_sync.zip in '{raw}'")
    for z in zips:  # only the colour cameras the Eigen split uses
        extract(z, root / "input", _strip(r"(?=\d{4}_\d{2}_\d{2}/[^/]+_sync/image_0[23]/data/)"))
    extract(annotated, root / "gt_depth", _strip(r"(?:train|val)/(?=[^/]+_sync/proj_depth/groundtruth/image_0[23]/)"))
    report = Report("kitti")
    for name, src in (("train", train_list), ("test", test_list)):
        lines = [x for x in src.read_text().splitlines() if x.strip()]
        _write_atomic(root / f"{name}_list.txt", ("\n".join(lines) + "\n").encode())
        missing = []
        with_gt = 0
        for line in lines:
            parts = line.split()
            if not (root / "input" / parts[0].lstrip("/")).is_file():
                missing.append(parts[0])
            if len(parts) > 1 and parts[1] != "None":
                with_gt += 1
                if not (root / "gt_depth" / parts[1].lstrip("/")).is_file():
                    missing.append(parts[1])
        report.count(f"{name}_list.txt lines", len(lines), missing)
        if name == "test":
            report.count("test_list.txt lines with ground truth", with_gt)
        if missing:
            report.short = True
            report.note(f"{name}_list.txt: {len(missing)} listed file(s) missing")
    return report


# --------------------------------------------------------------------------------------------------- RefCOCO


def prepare_refcoco(refs: Sequence[str | Path], coco_train2014: str | Path, out: str | Path) -> Report:
    """REFER's ``refcoco.zip`` / ``refcoco+.zip`` / ``refcocog.zip`` + COCO ``train2014.zip`` -> ``<out>/refer/``
    (``<dataset>/refs(*).p``, ``instances.json``; ``images/mscoco/images/train2014/``)."""
    root = Path(out) / "refer"
    done = []
    for archive in refs:
        archive = _need(archive, "a REFER archive")
        extract(archive, root, _strip(r"(?:.*/)?(?=(refcoco|refcoco\+|refcocog)/(refs\(\w+\)\.p|instances\.json)$)"))
    extract(_need(coco_train2014, "train2014.zip"), root / "images/mscoco/images", _strip(r"(?=train2014/)"))
    report = Report("refcoco")
    image_dir = root / "images/mscoco/images/train2014"
    report.count("COCO train2014 images", len(_files(image_dir, "*.jpg")))
    for dataset, split_by in (("refcoco", "unc"), ("refcoco+", "unc"), ("refcocog", "umd")):
        refs_file = root / dataset / f"refs({split_by}).p"
        if not refs_file.is_file():
            report.note(f"{dataset}: {refs_file.name} not extracted (archive not given)")
            continue
        with open(refs_file, "rb") as f:
            ref_list = pickle.load(f, encoding="latin1")
        instances = json.loads((root / dataset / "instances.json").read_text())
        files = {i["id"]: i["file_name"] for i in instances["images"]}
        missing = sorted({files[r["image_id"]] for r in ref_list if not (image_dir / files[r["image_id"]]).is_file()})
        report.count(f"{dataset} refs", len(ref_list), missing)
        if missing:
            report.short = True
        done.append(dataset)
    if not done:
        raise PrepareError("no refs(*).p found in the REFER archives given")
    return report
