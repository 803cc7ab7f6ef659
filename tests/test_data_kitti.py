"""KITTI depth (Eigen split, BTS/GLPDepth layout) and the depth folder data set: loaders, errors, a fit + evaluate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_config import make_cfg, tiny_task

from vpd_lightning.data import DataFormatError, DatasetNotFoundError, DepthFolderDataModule, KITTIDataModule
from vpd_lightning.data.generate_folders import generate_depth_folder
from vpd_lightning.data.generate_kitti import generate_kitti
from vpd_lightning.data.kitti import KITTIDataset

# tiny KITTI: 40x104 images, a 32x96 "KB crop" (bottom 32 rows, columns 4:100), 32x48 training crops
KB = (32, 96)


@pytest.fixture(scope="module")
def kitti_root(tmp_path_factory):
    return generate_kitti(tmp_path_factory.mktemp("data") / "kitti", 4, 2, 40, 104, seed=0)


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    return generate_depth_folder(tmp_path_factory.mktemp("data") / "my_depth", 4, 2, 48, 64, seed=0)


def test_kitti_layout_and_lists_are_the_bts_ones(kitti_root):
    line = (kitti_root / "train_list.txt").read_text().splitlines()[0].split()
    assert line[0].startswith("2011_09_26/2011_09_26_drive_") and line[0].endswith("/image_02/data/0000000005.png")
    assert line[1].endswith("_sync/proj_depth/groundtruth/image_02/0000000005.png") and line[2] == "721.5377"
    assert (kitti_root / "input" / line[0]).is_file() and (kitti_root / "gt_depth" / line[1]).is_file()
    assert sum(" None " in x for x in (kitti_root / "test_list.txt").read_text().splitlines()) == 1


def test_kitti_test_sample_is_kb_cropped_metres_of_the_png(kitti_root):
    ds = KITTIDataset(kitti_root, "test", kb_crop=KB, max_depth=80.0)
    assert len(ds) == 2 and ds.skipped == 1  # the line without ground truth is left out, as BTS
    sample = ds[0]
    image_path, depth_path = ds.pairs[0]
    raw = np.asarray(Image.open(depth_path)).astype(np.float64)
    rgb = np.asarray(Image.open(image_path).convert("RGB"))
    # KB crop: the bottom 32 rows, columns (104 - 96) // 2 = 4 .. 100
    expected = raw[8:40, 4:100] / 256.0
    expected[expected > 80.0] = 0
    assert sample["depth"].shape == (1, 32, 96) and sample["image"].shape == (3, 32, 96)
    np.testing.assert_allclose(sample["depth"][0].numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(sample["image"].permute(1, 2, 0).numpy() * 255, rgb[8:40, 4:100], atol=1e-3)
    assert float(sample["depth"].max()) > 20  # outdoor range, not NYU's 10 m
    assert sample["filename"].startswith("2011_09_26_drive_") and int(sample["class_id"]) == 0


def test_kitti_training_crop_and_max_depth(kitti_root):
    ds = KITTIDataset(kitti_root, "train", kb_crop=KB, crop_size=(32, 48), max_depth=30.0)
    sample = ds[1]
    assert sample["image"].shape == (3, 32, 48) and sample["depth"].shape == (1, 32, 48)
    assert float(sample["depth"].max()) <= 30.0  # deeper ground truth became "no measurement"


def test_kitti_scene_file_gives_each_drive_its_class(kitti_root, tmp_path):
    drives = sorted({p[0].parents[2].name for p in KITTIDataset(kitti_root, "test", kb_crop=KB).pairs})
    scene_file = tmp_path / "scenes.txt"
    scene_file.write_text(f"{drives[0]} city\n{drives[1]} residential\n")
    ds = KITTIDataset(kitti_root, "test", kb_crop=KB, class_names=["city", "residential"], scene_file=scene_file)
    assert sorted(ds.class_ids) == [0, 1]
    scene_file.write_text(f"{drives[0]} city\n")
    with pytest.raises(DataFormatError, match=f"no class for drive.*{drives[1]}"):
        KITTIDataset(kitti_root, "test", kb_crop=KB, class_names=["city"], scene_file=scene_file)


def test_kitti_depth_png_not_16_bit_is_named(kitti_root, tmp_path):
    import shutil

    root = tmp_path / "kitti"
    shutil.copytree(kitti_root, root)
    depth_path = KITTIDataset(root, "test", kb_crop=KB).pairs[0][1]
    Image.fromarray(np.zeros((40, 104), np.uint8)).save(depth_path)
    with pytest.raises(DataFormatError, match=rf"{depth_path.name}: depth must be a single-channel 16-bit PNG"):
        KITTIDataset(root, "test", kb_crop=KB)[0]


def test_kitti_missing_root_shows_the_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="gt_depth/<drive>_sync/proj_depth"):
        KITTIDataModule(tmp_path / "nowhere")


# ----------------------------------------------------------------------------------------------- depth folder


def test_folder_pairs_by_name_png_and_npy_agree(folder_root, tmp_path):
    npy_root = generate_depth_folder(tmp_path / "npy", 4, 2, 48, 64, seed=0, npy=True)
    png = DepthFolderDataModule(folder_root, depth_scale=1000.0, max_depth=10.0)
    npy = DepthFolderDataModule(npy_root, max_depth=10.0)
    png.setup("test"), npy.setup("test")
    a, b = png.test_set[1], npy.test_set[1]
    assert a["filename"] == "0001.jpg" and a["depth"].shape == (1, 48, 64)
    # the PNG holds rounded millimetres of the same metres the .npy holds
    assert torch.allclose(a["depth"], b["depth"], atol=0.5e-3 + 1e-6)


def test_folder_masks_and_max_depth_make_pixels_invalid(tmp_path):
    root = generate_depth_folder(tmp_path / "masked", 2, 1, 48, 64, seed=1, masks=True)
    dm = DepthFolderDataModule(root, max_depth=3.0)
    dm.setup("test")
    depth = dm.test_set[0]["depth"][0]
    assert float(depth[:, :6].abs().sum()) == 0  # the mask's left tenth (64 // 10 = 6 columns)
    assert float(depth.max()) <= 3.0 and float((depth > 0).float().mean()) > 0.05


def test_folder_unpaired_names_list_the_first_few(folder_root, tmp_path):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(folder_root, root)
    for j in range(4, 11):
        shutil.copy(root / "test" / "images" / "0000.jpg", root / "test" / "images" / f"extra{j:02d}.jpg")
    (root / "test" / "depth" / "0001.png").rename(root / "test" / "depth" / "other.png")
    with pytest.raises(DataFormatError) as err:
        DepthFolderDataModule(root)
    message = str(err.value)
    assert "8 image(s)" in message and "0001.jpg, extra04.jpg, extra05.jpg, extra06.jpg, extra07.jpg" in message
    assert "extra08" not in message and "1 depth map(s)" in message and "other.png" in message


def test_folder_depth_of_another_size_and_8_bit_png(folder_root, tmp_path):
    import shutil

    root = tmp_path / "sizes"
    shutil.copytree(folder_root, root)
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(root / "test" / "depth" / "0000.png")
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(root / "test" / "depth" / "0001.png")
    dm = DepthFolderDataModule(root)
    dm.setup("test")
    with pytest.raises(DataFormatError, match=r"0000.png: depth is 10x10, its RGB image is 64x48"):
        dm.test_set[0]
    with pytest.raises(DataFormatError, match=r"0001.png: depth must be a single-channel 16-bit PNG"):
        dm.test_set[1]


def test_folder_list_file_with_classes(folder_root, tmp_path):
    lst = tmp_path / "test.txt"
    lines = ["test/images/0001.jpg test/depth/0001.png kitchen", "/test/images/0000.jpg test/depth/0000.png office"]
    lst.write_text("\n".join(lines) + "\n")
    dm = DepthFolderDataModule(folder_root, test_list=lst, class_names=["office", "kitchen"])
    dm.setup("test")
    assert [int(dm.test_set[i]["class_id"]) for i in range(2)] == [1, 0]
    lst.write_text("test/images/0001.jpg test/depth/0001.png garage\n")
    with pytest.raises(DataFormatError, match="class 'garage' is not one of data.class_names"):
        DepthFolderDataModule(folder_root, test_list=lst, class_names=["office"])


# ----------------------------------------------------------------------------------------------- end to end


def test_kitti_fit_then_evaluate_with_both_protocols(kitti_root, tiny_sd_dir, tmp_path):
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.train import train

    overrides = [
        *tiny_task("depth", kitti_root, tiny_sd_dir, tmp_path),
        "experiment=kitti_vpd",
        "data.kb_crop=[32,96]",
        "data.crop_size=[32,48]",
        "data.batch_size=2",
        "trainer=cpu",
        "trainer.max_epochs=1",
        f"paths.output_dir={tmp_path / 'out'}",
    ]
    cfg = make_cfg(overrides)
    assert cfg.model.max_depth == 80.0 and cfg.data.max_depth == 80.0 and cfg.model.eval_crop == "kitti_garg"
    metrics, objects = train(cfg)
    assert set(metrics) >= {f"test/{m}" for m in ("d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10")}
    best = Path(objects["trainer"].checkpoint_callback.best_model_path)
    evaluated = evaluate(make_cfg([*overrides, "train=false", f"ckpt_path={best}"]))
    assert evaluated["test/rmse"] == pytest.approx(metrics["test/rmse"], rel=1e-5)
    affine = evaluate(make_cfg([*overrides, "train=false", f"ckpt_path={best}", "depth.protocol=affine_invariant"]))
    # the least-squares fit cannot be worse than no fit in the squared error it minimises (before clipping)
    assert affine["test/abs_rel"] != evaluated["test/abs_rel"]
    assert affine["test/rmse"] <= evaluated["test/rmse"] + 1e-9


@pytest.mark.slow
def test_depth_folder_fit_then_evaluate(folder_root, tiny_sd_dir, tmp_path):
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.train import train

    overrides = [
        *tiny_task("depth", folder_root, tiny_sd_dir, tmp_path),
        "data=depth_folder",
        "data.crop_size=[48,48]",
        "data.class_names=[room]",
        "data.batch_size=2",
        "model.eigen_crop=false",
        "trainer=cpu",
        "trainer.max_epochs=1",
        f"paths.output_dir={tmp_path / 'out'}",
    ]
    metrics, objects = train(make_cfg(overrides))
    best = Path(objects["trainer"].checkpoint_callback.best_model_path)
    evaluated = evaluate(make_cfg([*overrides, "train=false", f"ckpt_path={best}"]))
    assert evaluated["test/rmse"] == pytest.approx(metrics["test/rmse"], rel=1e-5)
    affine = evaluate(make_cfg([*overrides, "train=false", f"ckpt_path={best}", "depth.protocol=affine_invariant"]))
    assert affine["test/rmse"] <= evaluated["test/rmse"] + 1e-9
