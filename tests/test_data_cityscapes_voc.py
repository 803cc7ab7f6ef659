"""Cityscapes and Pascal VOC 2012 (+ SBD aug) in the mmsegmentation layouts: loaders, errors, fit -> evaluate."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_config import make_cfg, tiny_task

from vpd_lightning.data import CITYSCAPES_CLASSES, VOC_CLASSES, CityscapesDataModule, DataFormatError, VOCDataModule
from vpd_lightning.data.errors import DatasetNotFoundError
from vpd_lightning.data.generate_segmentation import generate_cityscapes, generate_voc, to_train_ids

PIPELINE = {"crop_size": [48, 96], "img_scale": [256, 64]}


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory):
    return generate_cityscapes(tmp_path_factory.mktemp("data") / "cityscapes", 3, 2, 64, 128, seed=0)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return generate_voc(tmp_path_factory.mktemp("data") / "VOC2012", 3, 2, 3, 60, 80, seed=0)


def test_train_id_table_is_cityscapes_scripts():
    ids = np.arange(34, dtype=np.uint8)
    train = to_train_ids(ids)
    # road 7 -> 0, sky 23 -> 10, car 26 -> 13, bicycle 33 -> 18; unlabeled, parking, caravan, trailer -> 255
    assert (train[7], train[23], train[26], train[33]) == (0, 10, 13, 18)
    assert all(train[i] == 255 for i in (0, 1, 6, 9, 29, 30))
    assert sorted(set(train.tolist()) - {255}) == list(range(19)) and len(CITYSCAPES_CLASSES) == 19


def test_cityscapes_pairs_and_evaluation_labels(cs_root):
    dm = CityscapesDataModule(cs_root, **PIPELINE)
    dm.setup()
    assert len(dm.train_set) == 3 and len(dm.val_set) == 2
    image, label = dm.val_set.images[0], dm.val_set.labels[0]
    assert image.name.endswith("_leftImg8bit.png") and image.parent.name == "frankfurt"
    assert label == cs_root / "gtFine/val/frankfurt" / image.name.replace("leftImg8bit", "gtFine_labelTrainIds")
    sample = dm.val_set[0]
    ids = np.asarray(Image.open(str(label).replace("labelTrainIds", "labelIds")))
    assert np.array_equal(sample["label"].numpy(), to_train_ids(ids))  # full size, no reduction
    assert 255 in sample["label"] and sample["image"].shape == (3, 64, 128)
    assert dm.train_set[0]["image"].shape == (3, 48, 96)  # the training crop


def test_cityscapes_without_train_ids_points_at_the_conversion(tmp_path):
    root = generate_cityscapes(tmp_path / "raw", 1, 1, 32, 64, train_ids=False)
    with pytest.raises(DataFormatError, match="labelIds.png are there: convert them with scripts/prepare_data.py"):
        CityscapesDataModule(root)
    with pytest.raises(DatasetNotFoundError, match="leftImg8bit/"):
        CityscapesDataModule(tmp_path)


def test_cityscapes_label_outside_the_train_ids(cs_root, tmp_path):
    root = tmp_path / "cs"
    shutil.copytree(cs_root, root)
    dm = CityscapesDataModule(root, **PIPELINE)
    dm.setup("validate")
    label = dm.val_set.labels[0]
    Image.fromarray(np.full((64, 128), 26, np.uint8)).save(label)  # a labelId (car) where a trainId belongs
    with pytest.raises(DataFormatError, match=rf"{label.name}: label values \[26\] outside 0..18 or 255"):
        dm.val_set[0]


def test_voc_aug_lists_concatenate_and_palette_labels_read_as_indices(voc_root):
    dm = VOCDataModule(voc_root, crop_size=[48, 48], img_scale=[256, 64])
    dm.setup()
    # train.txt (3, SegmentationClass) + aug.txt (3 train + 3 SBD-only, SegmentationClassAug), as mmseg
    assert len(dm.train_set) == 9 and len(dm.val_set) == 2 and len(VOC_CLASSES) == 21
    assert dm.train_set.labels[3].parent.name == "SegmentationClassAug"
    label_path = dm.val_set.labels[0]
    with Image.open(label_path) as img:
        assert img.mode == "P"  # VOC's palette PNGs: the pixel values are the class indices
        expected = np.asarray(img)
    sample = dm.val_set[0]
    assert np.array_equal(sample["label"].numpy(), expected) and 255 in expected
    assert set(np.unique(expected)) - {255} <= set(range(21))
    only = VOCDataModule(voc_root, train_lists=["train"], ann_dirs=["SegmentationClass"])
    only.setup("fit")
    assert len(only.train_set) == 3


def test_voc_list_naming_a_missing_file(voc_root, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(voc_root, root)
    (root / "SegmentationClassAug" / "2008_000001.png").unlink()
    dm = VOCDataModule(root)
    with pytest.raises(DataFormatError, match=r"aug.txt: listed file\(s\) missing: .*2008_000001.png"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="pair one to one"):
        VOCDataModule(root, train_lists=["train", "aug"], ann_dirs=["SegmentationClass"])


@pytest.mark.parametrize("dataset", ["cityscapes", "voc2012"])
def test_experiment_recipes(dataset):
    cfg = make_cfg([f"experiment={dataset}_vpd", "data.root=/nonexistent"])
    assert cfg.data._target_.endswith("CityscapesDataModule" if dataset == "cityscapes" else "VOCDataModule")
    assert len(cfg.data.class_names) == (19 if dataset == "cityscapes" else 21)
    if dataset == "cityscapes":
        assert list(cfg.data.crop_size) == [512, 1024] and cfg.trainer.max_steps == 80000
        assert list(cfg.model.test_scale) == [2048, 1024] and list(cfg.model.crop_size) == [512, 1024]
    else:
        assert list(cfg.data.train_lists) == ["train", "aug"] and cfg.trainer.max_steps == 20000
    assert cfg.model.optimizer.lr == 8e-5 and cfg.model.unet_lr_mult == 0.1


def test_cityscapes_fit_then_evaluate(cs_root, tiny_sd_dir, tmp_path):
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.train import train

    overrides = [
        *tiny_task("segmentation", cs_root, tiny_sd_dir, tmp_path),
        "experiment=cityscapes_vpd",
        "data.crop_size=[48,96]",
        "model.crop_size=[48,96]",
        "model.stride=[32,64]",
        "trainer=cpu",
        "data.batch_size=2",
        f"paths.output_dir={tmp_path / 'out'}",
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
    ]
    metrics, objects = train(make_cfg(overrides))
    assert objects["model"].num_classes == 19 and "traffic light" in objects["model"].per_class_table
    best = objects["trainer"].checkpoint_callback.best_model_path
    evaluated = evaluate(make_cfg([*overrides, "train=false", f"ckpt_path={Path(best)}"]))
    assert evaluated["test/miou"] == pytest.approx(metrics["test/miou"], abs=1e-6)


@pytest.mark.slow
def test_voc_fit_then_evaluate(voc_root, tiny_sd_dir, tmp_path):
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.train import train

    overrides = [
        *tiny_task("segmentation", voc_root, tiny_sd_dir, tmp_path),
        "experiment=voc2012_vpd",
        "data.crop_size=[48,48]",
        "model.crop_size=[48,48]",
        "model.stride=[32,32]",
        "trainer=cpu",
        "data.batch_size=2",
        f"paths.output_dir={tmp_path / 'out'}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
    ]
    metrics, objects = train(make_cfg(overrides))
    assert objects["model"].num_classes == 21 and "aeroplane" in objects["model"].per_class_table
    best = objects["trainer"].checkpoint_callback.best_model_path
    evaluated = evaluate(make_cfg([*overrides, "train=false", f"ckpt_path={Path(best)}"]))
    assert evaluated["test/miou"] == pytest.approx(metrics["test/miou"], abs=1e-6)
