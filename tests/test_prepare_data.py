"""scripts/prepare_data.py on small archives written in the official formats (real member names, a MATLAB v7.3
file written with h5py under the real variable names, SBD's MATLAB v5 structs)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from script_loader import load_script

from vpd_lightning.data.prepare import PrepareError, extract

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cli():
    return load_script("prepare_data").main


def zip_tree(path: Path, tree: Path, prefix: str, keep=lambda rel: True) -> Path:
    """``tree``'s files as members ``prefix + relative path``."""
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(tree.rglob("*")):
            rel = f.relative_to(tree).as_posix()
            if f.is_file() and not rel.startswith(".") and keep(rel):
                zf.write(f, prefix + rel)
    return path


def run(cli, capsys, *args) -> tuple[int, str]:
    rc = cli([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


# ----------------------------------------------------------------------------------------------- ADE20K


def test_ade20k_from_the_zip_resumable_and_reported(cli, capsys, ade_root, tmp_path):
    from vpd_lightning.data import ADE20KDataModule

    archive = zip_tree(tmp_path / "ADEChallengeData2016.zip", ade_root, "ADEChallengeData2016/")
    rc, out = run(cli, capsys, "ade20k", "--zip", archive, "--out", tmp_path / "data")
    assert rc == 1  # 8 + 3 generated images are far from the published 20,210 + 2,000
    assert "SHORT images/training: 8 of 20,210 (20,202 missing)" in out and "images/validation: 3 of 2,000" in out
    dm = ADE20KDataModule(tmp_path / "data" / "ade" / "ADEChallengeData2016", crop_size=[32, 32])
    dm.setup("validate")
    assert len(dm.val_set) == 3
    # resumable: everything already there is kept
    assert extract(archive, tmp_path / "data" / "ade", lambda n: n) == (0, 8 * 2 + 3 * 2 + 2)


def test_archive_without_the_expected_members(cli, capsys, tmp_path):
    with zipfile.ZipFile(tmp_path / "wrong.zip", "w") as zf:
        zf.writestr("something/else.txt", "x")
    rc, out = run(cli, capsys, "ade20k", "--zip", tmp_path / "wrong.zip", "--out", tmp_path / "data")
    assert rc == 1 and "wrong.zip: none of the expected members is in the archive" in out
    rc, out = run(cli, capsys, "ade20k", "--zip", tmp_path / "absent.zip", "--out", tmp_path / "data")
    assert rc == 1 and "ADEChallengeData2016.zip" in out and "absent.zip' does not exist" in out


# ----------------------------------------------------------------------------------------------- Cityscapes


def test_cityscapes_train_id_conversion(cli, capsys, tmp_path):
    from vpd_lightning.data import CityscapesDataModule
    from vpd_lightning.data.generate_segmentation import generate_cityscapes, to_train_ids

    tree = generate_cityscapes(tmp_path / "official", 2, 1, 32, 64, train_ids=False)
    gt = zip_tree(tmp_path / "gtFine_trainvaltest.zip", tree, "", lambda r: r.startswith("gtFine/"))
    left = zip_tree(tmp_path / "leftImg8bit_trainvaltest.zip", tree, "", lambda r: r.startswith("leftImg8bit/"))
    rc, out = run(cli, capsys, "cityscapes", "--gtfine", gt, "--leftimg", left, "--out", tmp_path / "data")
    assert rc == 1 and "gtFine/train: 2 of 2,975" in out
    root = tmp_path / "data" / "cityscapes"
    label_ids = sorted(root.glob("gtFine/val/*/*_labelIds.png"))[0]
    train_ids = np.asarray(Image.open(str(label_ids).replace("labelIds", "labelTrainIds")))
    assert np.array_equal(train_ids, to_train_ids(np.asarray(Image.open(label_ids))))
    CityscapesDataModule(root).setup("validate")
    # an id outside the labelId table (0..33) is named with its file
    Image.fromarray(np.full((32, 64), 40, np.uint8)).save(tree / label_ids.relative_to(root))
    bad = zip_tree(tmp_path / "bad.zip", tree, "", lambda r: r.startswith("gtFine/"))
    rc, out = run(cli, capsys, "cityscapes", "--gtfine", bad, "--leftimg", left, "--out", tmp_path / "data2")
    assert rc == 1 and f"{label_ids.name}: label ids [40] are outside the Cityscapes labelId table" in out


# ----------------------------------------------------------------------------------------------- VOC + SBD


def test_voc_with_sbd_aug(cli, capsys, tmp_path):
    from scipy.io import savemat

    from vpd_lightning.data import VOCDataModule
    from vpd_lightning.data.generate_segmentation import generate_voc

    tree = generate_voc(tmp_path / "official", 3, 2, 3, 40, 48, seed=0)  # JPEGImages holds the SBD images too
    voc_tar = tmp_path / "VOCtrainval_11-May-2012.tar"
    with tarfile.open(voc_tar, "w") as tf:
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            for f in sorted((tree / sub).iterdir()):
                if f.name != "aug.txt":
                    tf.add(f, f"VOCdevkit/VOC2012/{sub}/{f.name}")
    train = (tree / "ImageSets/Segmentation/train.txt").read_text().split()
    sbd_only = [p.stem for p in sorted((tree / "SegmentationClassAug").iterdir()) if p.stem not in train]
    sbd_names = train[1:] + sbd_only  # the first VOC train image has no SBD mask: it takes its VOC label
    sbd = tmp_path / "benchmark.tgz"
    with tarfile.open(sbd, "w:gz") as tf:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        for n in sbd_names:
            seg = np.asarray(Image.open(tree / "SegmentationClassAug" / f"{n}.png"))
            buf = io.BytesIO()
            savemat(buf, {"GTcls": {"Segmentation": seg, "Boundaries": np.zeros(1), "CategoriesPresent": np.ones(1)}})
            add(f"benchmark_RELEASE/dataset/cls/{n}.mat", buf.getvalue())
        add("benchmark_RELEASE/dataset/train.txt", "\n".join(sbd_names[:3]).encode())
        add("benchmark_RELEASE/dataset/val.txt", "\n".join(sbd_names[3:]).encode())
    rc, out = run(cli, capsys, "voc", "--voc", voc_tar, "--sbd", sbd, "--out", tmp_path / "data")
    assert rc == 1 and "SBD masks: 5 of 11,355" in out and "1 aug image(s) without an SBD mask" in out
    base = tmp_path / "data" / "VOCdevkit" / "VOC2012"
    aug = (base / "ImageSets/Segmentation/aug.txt").read_text().split()
    assert aug == sorted(train + sbd_only)  # (VOC train + SBD train + val) - VOC val, sorted
    for n in sbd_names:  # the SBD masks converted to PNGs exactly
        expected = np.asarray(Image.open(tree / "SegmentationClassAug" / f"{n}.png"))
        assert np.array_equal(np.asarray(Image.open(base / "SegmentationClassAug" / f"{n}.png")), expected)
    dm = VOCDataModule(base)
    dm.setup("fit")
    assert len(dm.train_set) == 3 + 6


# ----------------------------------------------------------------------------------------------- NYUv2


def write_nyu_labeled_mat(path: Path, images: np.ndarray, depths: np.ndarray, scenes: list[str]) -> None:
    """A MATLAB v7.3 file as nyu_depth_v2_labeled.mat: HDF5 behind MATLAB's 512-byte header, column-major
    arrays (images [N, 3, W, H] uint8, rawDepths [N, W, H] float32) and sceneTypes a 1 x N cell of char arrays."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("images", data=images.transpose(0, 3, 2, 1))
        f.create_dataset("rawDepths", data=depths.transpose(0, 2, 1))
        f.create_dataset("depths", data=np.full_like(depths.transpose(0, 2, 1), 5.0))  # filled: not the one used
        refs = f.create_group("#refs#")
        cells = []
        for j, scene in enumerate(scenes):
            ds = refs.create_dataset(f"s{j}", data=np.array([[ord(c)] for c in scene], np.uint16))
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            cells.append(ds.ref)
        f.create_dataset("sceneTypes", data=np.array([cells], dtype=h5py.ref_dtype))
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan 01 00:00:00 2024 HDF5 schema 1.00 .")


def test_nyuv2_from_the_labeled_mat_and_sync_zip(cli, capsys, nyu_root, tmp_path):
    from scipy.io import savemat

    from vpd_lightning.data import NYUv2DataModule

    rng = np.random.default_rng(0)
    n, y, x, c = np.ogrid[0:5, 0:48, 0:64, 0:3]
    images = (2 * x + y + 30 * c + 5 * n).astype(np.uint8)  # smooth: JPEG keeps it within a few levels
    depths = rng.uniform(0.5, 9.0, (5, 48, 64)).astype(np.float32)
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    write_nyu_labeled_mat(mat, images, depths, ["bathroom", "kitchen", "bathroom", "office", "kitchen"])
    savemat(tmp_path / "splits.mat", {"testNdxs": np.array([[1], [2], [5]]), "trainNdxs": np.array([[3], [4]])})
    sync = zip_tree(tmp_path / "sync.zip", nyu_root / "sync", "sync/")
    rc, out = run(cli, capsys, "nyuv2", "--mat", mat, "--splits", tmp_path / "splits.mat", "--sync", sync,
                  "--out", tmp_path / "data")  # fmt: skip
    assert rc == 1 and "official test images: 3 of 654" in out and "sync training pairs: 8 of 24,231" in out
    root = tmp_path / "data" / "nyu_depth_v2"
    # BTS's naming: the 0-based image index, one folder per scene type, depth in millimetres
    depth = np.asarray(Image.open(root / "official_splits/test/kitchen/sync_depth_00004.png"))
    assert np.array_equal(depth, (depths[4] * 1000).astype(np.uint16))
    rgb = np.asarray(Image.open(root / "official_splits/test/kitchen/rgb_00004.jpg")).astype(int)
    assert rgb.shape == (48, 64, 3) and np.abs(rgb - images[4])[16:32, 16:48].max() <= 8  # JPEG MCUs clear of the frame
    # BTS's black frame: rows < 7 and >= H-6, columns < 7 and >= W-8 (JPEG rings a level or two at its edge)
    for strip, source in ((rgb[:6], images[4][:6]), (rgb[-5:], images[4][-5:]), (rgb[:, :6], images[4][:, :6]),
                          (rgb[:, -7:], images[4][:, -7:])):  # fmt: skip
        assert strip.mean() < 3 < 20 < source.mean()
    assert (root / "official_splits/train/office/rgb_00003.jpg").is_file()
    first = (root / "test_list.txt").read_text().splitlines()[0]
    assert first == "/bathroom/rgb_00000.jpg /bathroom/sync_depth_00000.png"
    dm = NYUv2DataModule(root, crop_size=[32, 32])
    dm.setup()
    assert len(dm.test_set) == 3 and len(dm.train_set) == 8


def test_nyuv2_mat_without_the_variables(cli, capsys, tmp_path):
    import h5py
    from scipy.io import savemat

    with h5py.File(tmp_path / "x.mat", "w") as f:
        f.create_dataset("images", data=np.zeros((1, 3, 4, 4), np.uint8))
    savemat(tmp_path / "splits.mat", {"testNdxs": np.array([[1]]), "trainNdxs": np.array([[2]])})
    rc, out = run(cli, capsys, "nyuv2", "--mat", tmp_path / "x.mat", "--splits", tmp_path / "splits.mat")
    assert rc == 1 and "variable(s) ['rawDepths', 'sceneTypes'] missing" in out


# ----------------------------------------------------------------------------------------------- KITTI


def test_kitti_from_drive_zips_and_the_annotated_zip(cli, capsys, tmp_path):
    from vpd_lightning.data import KITTIDataModule
    from vpd_lightning.data.generate_kitti import generate_kitti

    tree = generate_kitti(tmp_path / "official", 3, 2, 40, 104)
    raw = tmp_path / "raw"
    raw.mkdir()
    drives = sorted(p.name for p in (tree / "input" / "2011_09_26").iterdir())
    for drive in drives:
        zip_tree(raw / f"{drive}.zip", tree / "input", "", lambda r, d=drive: f"/{d}/" in f"/{r}")
    test_drives = {line.split()[0].split("/")[1] for line in (tree / "test_list.txt").read_text().splitlines()}
    annotated = tmp_path / "data_depth_annotated.zip"
    with zipfile.ZipFile(annotated, "w") as zf:  # KITTI's train/ and val/ drive folders
        for f in sorted((tree / "gt_depth").rglob("*.png")):
            rel = f.relative_to(tree / "gt_depth").as_posix()
            zf.write(f, ("val/" if rel.split("/")[0] in test_drives else "train/") + rel)
    args = ["kitti", "--raw", raw, "--annotated", annotated, "--train-list", tree / "train_list.txt",
            "--test-list", tree / "test_list.txt", "--out", tmp_path / "data"]  # fmt: skip
    rc, out = run(cli, capsys, *args)
    assert rc == 1 and "train_list.txt lines: 3 of 23,158" in out and "lines with ground truth: 2 of 652" in out
    assert "missing files" not in out
    dm = KITTIDataModule(tmp_path / "data" / "kitti", kb_crop=[32, 96], crop_size=[32, 48])
    dm.setup()
    assert len(dm.train_set) == 3 and len(dm.test_set) == 2
    # a drive's archive not given: its listed images are named as missing
    (raw / f"{drives[0]}.zip").unlink()
    rc, out = run(cli, capsys, *args[:-1], tmp_path / "data2")
    assert rc == 1 and f"missing files: 2011_09_26/{drives[0]}/image_02/data/" in out


# ----------------------------------------------------------------------------------------------- RefCOCO


def test_refcoco_from_the_refer_and_coco_zips(cli, capsys, refer_root, tmp_path):
    from vpd_lightning.data.refcoco import ReferData

    refs = zip_tree(tmp_path / "refcoco.zip", refer_root, "", lambda r: r.startswith("refcoco/"))
    coco = zip_tree(tmp_path / "train2014.zip", refer_root / "images/mscoco/images", "")
    rc, out = run(cli, capsys, "refcoco", "--refs", refs, "--coco", coco, "--out", tmp_path / "data")
    assert rc == 1 and "COCO train2014 images: 16 of 82,783" in out and "refcoco+: refs(unc).p not extracted" in out
    data = ReferData.load(tmp_path / "data" / "refer", "refcoco", "unc")
    assert len(data.refs) > 0 and all((data.image_dir / i["file_name"]).is_file() for i in data.images.values())
    with pytest.raises(PrepareError, match="train2014.zip"):
        from vpd_lightning.data.prepare import prepare_refcoco

        prepare_refcoco([refs], tmp_path / "nope.zip", tmp_path / "data")
