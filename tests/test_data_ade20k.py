"""Tests for the ADE20K / segmentation-folder data sets and data module (vpd_lightning.data.ade20k)."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vpd_lightning.data.seg_transforms as seg_transforms
from vpd_lightning.data import (
    ADE20K_CLASSES,
    ADE20KDataModule,
    ADE20KDataset,
    DataFormatError,
    DatasetNotFoundError,
    SegmentationFolderDataset,
)
from vpd_lightning.data.seg_transforms import ADE20KTrainTransform, rescale_size, resize_image, resize_label

N_TRAIN, N_VAL = 8, 3  # the conftest ``ade_root`` fixture


# ----------------------------------------------------------------------------------------------- helpers
def _jpeg(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "JPEG"
        return np.asarray(img.convert("RGB"))


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as lab:
        assert lab.mode == "L"
        return np.asarray(lab)


def _reduce(raw: np.ndarray) -> np.ndarray:
    """reduce_zero_label done by hand: 0 -> 255, k -> k - 1."""
    out = raw.astype(np.int64) - 1
    out[raw == 0] = 255
    return out


def _write_pair(
    image_dir: Path,
    label_dir: Path,
    stem: str,
    image: np.ndarray,
    label: np.ndarray | None,
    image_suffix: str = ".jpg",
) -> tuple[Path, Path]:
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    image_path, label_path = image_dir / f"{stem}{image_suffix}", label_dir / f"{stem}.png"
    Image.fromarray(image.astype(np.uint8)).save(image_path, quality=95)
    if label is not None:
        Image.fromarray(label.astype(np.uint8)).save(label_path)  # mode "L"
    return image_path, label_path


def _gradient_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An asymmetric image (so a horizontal flip is visible), values 20..235."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([20 + 200 * xx / max(w - 1, 1), 20 + 200 * yy / max(h - 1, 1), 120 + 0 * xx], axis=-1)
    img = img + rng.integers(0, 16, size=img.shape)
    return img.clip(0, 255).astype(np.uint8)


def _folder(tmp_path: Path, name: str = "ds") -> tuple[Path, Path]:
    return tmp_path / name / "images", tmp_path / name / "labels"


# ----------------------------------------------------------------------------------------------- validation split
def test_validation_samples_match_files(ade_root):
    ds = ADE20KDataset(ade_root, split="validation")
    assert ds.train is False and ds.transform is None
    assert len(ds) == N_VAL
    image_dir, label_dir = ade_root / "images" / "validation", ade_root / "annotations" / "validation"
    saw_ignore = False
    for i in range(len(ds)):
        stem = f"ADE_val_{i + 1:08d}"
        sample = ds[i]
        assert sample["filename"] == f"{stem}.jpg"
        image, label = sample["image"], sample["label"]
        raw_image = _jpeg(image_dir / f"{stem}.jpg")
        raw_label = _png(label_dir / f"{stem}.png")
        h, w = raw_label.shape
        assert image.dtype == torch.float32 and tuple(image.shape) == (3, h, w)
        assert label.dtype == torch.int64 and tuple(label.shape) == (h, w)
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        expected = torch.from_numpy(raw_image.astype(np.float32) / 255.0).permute(2, 0, 1)
        torch.testing.assert_close(image, expected, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(label.numpy(), _reduce(raw_label))
        values = set(torch.unique(label).tolist())
        assert values <= set(range(150)) | {255}
        assert values - {255}, "a generated label should contain at least one class"
        saw_ignore |= 255 in values
    # the generator writes 0 ("other") somewhere iff it became 255; make sure the mapping was exercised
    raw_zero = any((_png(p) == 0).any() for p in sorted(label_dir.glob("*.png")))
    assert saw_ignore == raw_zero


def test_validation_split_is_not_augmented_by_default(ade_root):
    ds = ADE20KDataset(ade_root, split="validation")
    a, b = ds[0], ds[0]
    torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
    assert torch.equal(a["label"], b["label"])
    assert ds.num_classes == 150 and ds.reduce_zero_label is True


def test_training_split_defaults_to_train(ade_root):
    ds = ADE20KDataset(ade_root, split="training", crop_size=(48, 48), img_scale=(256, 64))
    assert ds.train is True and isinstance(ds.transform, ADE20KTrainTransform)
    assert len(ds) == N_TRAIN
    assert ds[0]["filename"] == "ADE_train_00000001.jpg"


def test_reduce_zero_label_false_keeps_raw_values(tmp_path):
    image_dir, label_dir = _folder(tmp_path)
    raw = np.zeros((16, 24), np.uint8)
    raw[:, 6:12] = 1
    raw[:, 12:18] = 149
    raw[:, 18:] = 255
    _write_pair(image_dir, label_dir, "a", _gradient_image(16, 24), raw)
    ds = SegmentationFolderDataset(image_dir, label_dir, num_classes=150, reduce_zero_label=False)
    label = ds[0]["label"]
    assert label.dtype == torch.int64
    np.testing.assert_array_equal(label.numpy(), raw.astype(np.int64))
    # with reduction the same file is invalid: raw 255 is not an ADE value (0..150)
    ds_reduced = SegmentationFolderDataset(image_dir, label_dir, num_classes=150, reduce_zero_label=True)
    with pytest.raises(DataFormatError, match=r"\[255\]"):
        ds_reduced[0]


def test_reduce_zero_label_false_rejects_num_classes(tmp_path):
    image_dir, label_dir = _folder(tmp_path)
    raw = np.zeros((16, 24), np.uint8)
    raw[:, 12:] = 150
    _, label_path = _write_pair(image_dir, label_dir, "a", _gradient_image(16, 24), raw)
    ds = SegmentationFolderDataset(image_dir, label_dir, num_classes=150, reduce_zero_label=False)
    with pytest.raises(DataFormatError) as info:
        ds[0]
    msg = str(info.value)
    assert str(label_path) in msg and "[150]" in msg and "0..149" in msg


def test_palette_label_png_is_read_as_indices(tmp_path):
    image_dir, label_dir = _folder(tmp_path)
    raw = np.zeros((10, 12), np.uint8)
    raw[:, 6:] = 3
    raw[0, 0] = 150
    _, label_path = _write_pair(image_dir, label_dir, "p", _gradient_image(10, 12), raw)
    pal = Image.new("P", (12, 10))
    pal.putdata(raw.ravel().tolist())
    pal.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    pal.save(label_path)
    with Image.open(label_path) as check:
        assert check.mode == "P"
    ds = SegmentationFolderDataset(image_dir, label_dir, num_classes=150)
    np.testing.assert_array_equal(ds[0]["label"].numpy(), _reduce(raw))


# ----------------------------------------------------------------------------------------------- training split
def test_training_samples_have_crop_size(ade_root):
    torch.manual_seed(0)
    ds = ADE20KDataset(ade_root, split="training", train=True, crop_size=(48, 48), img_scale=(256, 64))
    for i in range(len(ds)):
        sample = ds[i]
        image, label = sample["image"], sample["label"]
        assert image.dtype == torch.float32 and tuple(image.shape) == (3, 48, 48)
        assert label.dtype == torch.int64 and tuple(label.shape) == (48, 48)
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        assert set(torch.unique(label).tolist()) <= set(range(150)) | {255}
        assert sample["filename"] == f"ADE_train_{i + 1:08d}.jpg"


def test_training_sample_equals_transform_then_pad(ade_root):
    """The dataset is: read, reduce, ADE20KTrainTransform (same RNG draws), /255, pad to the crop."""
    ds = ADE20KDataset(ade_root, split="training", crop_size=(48, 48), img_scale=(256, 64))
    stem = "ADE_train_00000002"
    raw_image = _jpeg(ade_root / "images" / "training" / f"{stem}.jpg")
    raw_label = _reduce(_png(ade_root / "annotations" / "training" / f"{stem}.png")).astype(np.uint8)
    for seed in range(4):
        torch.manual_seed(seed)
        sample = ds[1]
        torch.manual_seed(seed)
        image, label = ds.transform(raw_image, raw_label)
        h, w = label.shape
        torch.testing.assert_close(
            sample["image"][:, :h, :w],
            torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1),
            rtol=0,
            atol=1e-6,
        )
        np.testing.assert_array_equal(sample["label"][:h, :w].numpy(), label.astype(np.int64))
        assert torch.all(sample["image"][:, h:, :] == 0.5) and torch.all(sample["image"][:, :, w:] == 0.5)
        assert torch.all(sample["label"][h:, :] == 255) and torch.all(sample["label"][:, w:] == 255)


def test_training_pads_small_hand_made_image(tmp_path):
    image_dir, label_dir = _folder(tmp_path)
    h, w = 20, 30
    raw_image = _gradient_image(h, w, seed=1)
    raw = np.zeros((h, w), np.uint8)
    raw[:, :10] = 1
    raw[:, 10:22] = 2
    raw[5:9, 24:] = 3
    image_path, _ = _write_pair(image_dir, label_dir, "small", raw_image, raw)
    decoded = _jpeg(image_path).astype(np.float32) / 255.0
    expected_image = torch.from_numpy(decoded).permute(2, 0, 1)
    expected_label = torch.from_numpy(_reduce(raw))
    ds = SegmentationFolderDataset(
        image_dir,
        label_dir,
        num_classes=150,
        train=True,
        crop_size=(48, 48),
        img_scale=(30, 20),
        ratio_range=(1.0, 1.0),
        photometric=False,
    )
    flips = set()
    torch.manual_seed(0)
    for _ in range(12):
        sample = ds[0]
        image, label = sample["image"], sample["label"]
        assert tuple(image.shape) == (3, 48, 48) and tuple(label.shape) == (48, 48)
        # padded region: bottom rows and right columns
        assert torch.all(image[:, h:, :] == 0.5) and torch.all(image[:, :, w:] == 0.5)
        assert torch.all(label[h:, :] == 255) and torch.all(label[:, w:] == 255)
        # unpadded region: the original (the only randomness left is the horizontal flip)
        top_image, top_label = image[:, :h, :w], label[:h, :w]
        flipped = not torch.allclose(top_image, expected_image, rtol=0, atol=1e-6)
        flips.add(flipped)
        if flipped:
            torch.testing.assert_close(top_image, expected_image.flip(-1), rtol=0, atol=1e-6)
            assert torch.equal(top_label, expected_label.flip(-1))
        else:
            assert torch.equal(top_label, expected_label)
    assert flips == {True, False}, "12 draws of a p=0.5 flip should give both outcomes"


def test_training_pads_after_small_rescale(ade_root):
    """img_scale far below the crop: the rescaled image (long side 16) is padded to 48x48."""
    ds = ADE20KDataset(
        ade_root, split="training", crop_size=(48, 48), img_scale=(16, 16), ratio_range=(1.0, 1.0), photometric=False
    )
    stem = "ADE_train_00000003"
    raw_image = _jpeg(ade_root / "images" / "training" / f"{stem}.jpg")
    raw_label = _reduce(_png(ade_root / "annotations" / "training" / f"{stem}.png")).astype(np.uint8)
    nh, nw = rescale_size(*raw_label.shape, (16, 16))
    assert max(nh, nw) == 16 and min(nh, nw) < 48
    exp_image = torch.from_numpy(resize_image(raw_image, (nh, nw)).astype(np.float32) / 255.0).permute(2, 0, 1)
    exp_label = torch.from_numpy(resize_label(raw_label, (nh, nw)).astype(np.int64))
    torch.manual_seed(3)
    for _ in range(4):
        sample = ds[2]
        image, label = sample["image"], sample["label"]
        assert tuple(image.shape) == (3, 48, 48) and tuple(label.shape) == (48, 48)
        assert torch.all(image[:, nh:, :] == 0.5) and torch.all(image[:, :, nw:] == 0.5)
        assert torch.all(label[nh:, :] == 255) and torch.all(label[:, nw:] == 255)
        top_image, top_label = image[:, :nh, :nw], label[:nh, :nw]
        if torch.equal(top_label, exp_label) and torch.allclose(top_image, exp_image, rtol=0, atol=1e-6):
            continue
        torch.testing.assert_close(top_image, exp_image.flip(-1), rtol=0, atol=1e-6)
        assert torch.equal(top_label, exp_label.flip(-1))


# ----------------------------------------------------------------------------------------------- cat_max_ratio
def test_cat_max_ratio_default_is_passed_to_random_crop(ade_root, monkeypatch):
    original = seg_transforms.random_crop
    signature = inspect.signature(original)
    seen: list[float] = []

    def spy(*args, **kwargs):
        seen.append(signature.bind(*args, **kwargs).arguments.get("cat_max_ratio", "default"))
        return original(*args, **kwargs)

    monkeypatch.setattr(seg_transforms, "random_crop", spy)
    ds = ADE20KDataset(ade_root, split="training", crop_size=(48, 48), img_scale=(256, 64))
    assert ds.transform.cat_max_ratio == 0.75
    ds[0]
    ds[1]
    assert seen == [0.75, 0.75]

    seen.clear()
    custom = ADE20KDataset(ade_root, split="training", crop_size=(48, 48), img_scale=(256, 64), cat_max_ratio=0.5)
    custom[0]
    assert seen == [0.5]


def _max_class_fraction(label: torch.Tensor) -> float:
    values, counts = torch.unique(label[label != 255], return_counts=True)
    assert values.numel() >= 1
    return float(counts.max()) / float(counts.sum())


def test_cat_max_ratio_rule_changes_the_crops(tmp_path):
    """A 20x40 label half class A / half class B, 20x20 crops: 9 of the 21 windows satisfy the rule.

    With the rule (0.75) a crop violating it needs 11 bad windows in a row (p ~ 0.002); without it
    (1.0) about 12/21 of the crops violate it.
    """
    image_dir, label_dir = _folder(tmp_path)
    raw = np.ones((20, 40), np.uint8)
    raw[:, 20:] = 2
    _write_pair(image_dir, label_dir, "half", _gradient_image(20, 40), raw)
    common = dict(
        num_classes=150, train=True, crop_size=(20, 20), img_scale=(40, 20), ratio_range=(1.0, 1.0), photometric=False
    )
    n = 40

    def violations(cat_max_ratio: float) -> int:
        ds = SegmentationFolderDataset(image_dir, label_dir, cat_max_ratio=cat_max_ratio, **common)
        torch.manual_seed(1234)
        count = 0
        for _ in range(n):
            label = ds[0]["label"]
            assert tuple(label.shape) == (20, 20)
            count += _max_class_fraction(label) >= 0.75
        return count

    assert violations(0.75) <= 2
    assert violations(1.0) >= 10


# ----------------------------------------------------------------------------------------------- data module
def test_datamodule_batches(ade_root):
    dm = ADE20KDataModule(ade_root, crop_size=(48, 48), img_scale=(256, 64), batch_size=2, num_workers=0)
    assert dm.class_names == list(ADE20K_CLASSES)
    assert len(dm.class_names) == 150 and dm.class_names[0] == "wall"
    dm.setup("fit")
    assert len(dm.train_set) == N_TRAIN and len(dm.val_set) == N_VAL
    assert dm.train_set.train is True and dm.val_set.train is False
    assert dm.train_set.transform.cat_max_ratio == 0.75
    torch.manual_seed(0)
    batch = next(iter(dm.train_dataloader()))
    assert {"image", "label"} <= set(batch)
    assert tuple(batch["image"].shape) == (2, 3, 48, 48) and batch["image"].dtype == torch.float32
    assert tuple(batch["label"].shape) == (2, 48, 48) and batch["label"].dtype == torch.int64
    assert len(dm.train_dataloader()) == N_TRAIN // 2

    loader = dm.val_dataloader()
    assert loader.batch_size == 1 and len(loader) == N_VAL
    for i, val in enumerate(loader):
        raw_label = _png(ade_root / "annotations" / "validation" / f"ADE_val_{i + 1:08d}.png")
        h, w = raw_label.shape
        assert tuple(val["image"].shape) == (1, 3, h, w)
        assert tuple(val["label"].shape) == (1, h, w)
        np.testing.assert_array_equal(val["label"][0].numpy(), _reduce(raw_label))
        assert list(val["filename"]) == [f"ADE_val_{i + 1:08d}.jpg"]
    assert len(dm.test_dataloader()) == N_VAL


def test_datamodule_setup_validate_only_builds_val_set(ade_root):
    dm = ADE20KDataModule(ade_root, num_workers=0)
    dm.setup("validate")
    assert dm.train_set is None and dm.val_set is not None and len(dm.val_set) == N_VAL


def test_datamodule_passes_options(ade_root):
    dm = ADE20KDataModule(
        ade_root, crop_size=(40, 32), img_scale=(128, 32), cat_max_ratio=0.5, photometric=False, num_workers=0
    )
    dm.setup("fit")
    t = dm.train_set.transform
    assert t.crop_size == (40, 32) and t.img_scale == (128.0, 32.0)
    assert t.cat_max_ratio == 0.5 and t.photometric is False
    assert tuple(dm.train_set[0]["label"].shape) == (40, 32)


def test_datamodule_custom_folders(tmp_path):
    dirs = {}
    for split, n in (("training", 4), ("validation", 2)):
        image_dir, label_dir = tmp_path / "custom" / split / "img", tmp_path / "custom" / split / "lab"
        for i in range(n):
            h, w = 24 + 2 * i, 28
            raw = np.zeros((h, w), np.uint8)
            raw[:, 10:20] = 1
            raw[:, 20:] = 2
            raw[:3, :3] = 255
            _write_pair(image_dir, label_dir, f"s{i}", _gradient_image(h, w, seed=i), raw)
        dirs[split] = (str(image_dir), str(label_dir))
    names = ["background", "road", "car"]
    dm = ADE20KDataModule(
        None,
        class_names=names,
        reduce_zero_label=False,
        crop_size=(16, 16),
        img_scale=(64, 32),
        batch_size=2,
        num_workers=0,
        image_dirs={s: d[0] for s, d in dirs.items()},
        label_dirs={s: d[1] for s, d in dirs.items()},
    )
    assert dm.class_names == names
    dm.setup("fit")
    assert dm.train_set.num_classes == 3 and dm.val_set.num_classes == 3
    assert len(dm.train_set) == 4 and len(dm.val_set) == 2
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["image"].shape) == (2, 3, 16, 16) and tuple(batch["label"].shape) == (2, 16, 16)
    assert set(torch.unique(batch["label"]).tolist()) <= {0, 1, 2, 255}
    for i, val in enumerate(dm.val_dataloader()):
        raw = _png(Path(dirs["validation"][1]) / f"s{i}.png")
        np.testing.assert_array_equal(val["label"][0].numpy(), raw.astype(np.int64))  # raw values kept
    # 3 classes: a label value of 3 is outside 0..2
    bad_dir = tmp_path / "custom" / "validation" / "lab" / "s0.png"
    raw = _png(bad_dir).copy()
    raw[0, 0] = 3
    Image.fromarray(raw).save(bad_dir)
    with pytest.raises(DataFormatError, match=r"\[3\].*0\.\.2"):
        dm.val_set[0]


# ----------------------------------------------------------------------------------------------- bad input
def test_missing_root(tmp_path):
    missing = tmp_path / "nowhere" / "ADEChallengeData2016"
    with pytest.raises(DatasetNotFoundError, match="Expected layout") as info:
        ADE20KDataset(missing, split="validation")
    assert str(missing) in str(info.value)
    with pytest.raises(DatasetNotFoundError, match="Expected layout") as info:
        ADE20KDataModule(missing, num_workers=0)
    assert str(missing) in str(info.value)
    with pytest.raises(DatasetNotFoundError, match="data.root"):
        ADE20KDataModule(None)
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


def test_root_without_split_folders(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    (root / "images" / "validation").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="Expected layout") as info:
        ADE20KDataset(root, split="validation")
    assert str(root / "annotations" / "validation") in str(info.value)


def test_image_without_annotation(tmp_path):
    image_dir, label_dir = _folder(tmp_path)
    _write_pair(image_dir, label_dir, "ok", _gradient_image(12, 12), np.ones((12, 12), np.uint8))
    lonely, _ = _write_pair(image_dir, label_dir, "lonely", _gradient_image(12, 12), None)
    with pytest.raises(DataFormatError) as info:
        SegmentationFolderDataset(image_dir, label_dir, num_classes=150)
    msg = str(info.value)
    assert str(lonely) in msg and str(label_dir / "lonely.png") in msg
    assert "ok.png" not in msg


def test_annotation_size_differs_from_image(tmp_path):
    image_dir, label_dir = _folder(tmp_path)
    _, label_path = _write_pair(image_dir, label_dir, "a", _gradient_image(20, 32), np.ones((20, 30), np.uint8))
    ds = SegmentationFolderDataset(image_dir, label_dir, num_classes=150)
    with pytest.raises(DataFormatError) as info:
        ds[0]
    msg = str(info.value)
    assert str(label_path) in msg and "30x20" in msg and "32x20" in msg


def test_label_value_out_of_range(tmp_path):
    image_dir, label_dir = _folder(tmp_path)
    raw = np.ones((12, 16), np.uint8)
    raw[3, 4] = 200
    _, label_path = _write_pair(image_dir, label_dir, "a", _gradient_image(12, 16), raw)
    ds = SegmentationFolderDataset(image_dir, label_dir, num_classes=150)
    with pytest.raises(DataFormatError) as info:
        ds[0]
    msg = str(info.value)
    assert str(label_path) in msg and "200" in msg and "0..150" in msg
    # 150 itself is valid for ADE20K (the last class), 151 is not
    raw[3, 4] = 150
    Image.fromarray(raw).save(label_path)
    assert int(ds[0]["label"][3, 4]) == 149
    raw[3, 4] = 151
    Image.fromarray(raw).save(label_path)
    with pytest.raises(DataFormatError, match=r"\[151\]"):
        ds[0]


def test_rgb_label_png(tmp_path):
    image_dir, label_dir = _folder(tmp_path)
    _, label_path = _write_pair(image_dir, label_dir, "a", _gradient_image(12, 16), None)
    Image.fromarray(np.ones((12, 16, 3), np.uint8)).save(label_path)
    ds = SegmentationFolderDataset(image_dir, label_dir, num_classes=150)
    with pytest.raises(DataFormatError) as info:
        ds[0]
    msg = str(info.value)
    assert str(label_path) in msg and "RGB" in msg


def test_unreadable_image(tmp_path):
    image_dir, label_dir = _folder(tmp_path)
    image_path, _ = _write_pair(image_dir, label_dir, "a", _gradient_image(12, 16), np.ones((12, 16), np.uint8))
    image_path.write_bytes(b"this is not a jpeg at all" * 10)
    ds = SegmentationFolderDataset(image_dir, label_dir, num_classes=150)
    with pytest.raises(DataFormatError) as info:
        ds[0]
    msg = str(info.value)
    assert str(image_path) in msg and "cannot read the image" in msg


def test_unreadable_annotation(tmp_path):
    image_dir, label_dir = _folder(tmp_path)
    _, label_path = _write_pair(image_dir, label_dir, "a", _gradient_image(12, 16), np.ones((12, 16), np.uint8))
    label_path.write_bytes(b"\x00garbage" * 20)
    ds = SegmentationFolderDataset(image_dir, label_dir, num_classes=150)
    with pytest.raises(DataFormatError) as info:
        ds[0]
    assert str(label_path) in str(info.value)


def test_empty_images_folder(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    for sub in ("images", "annotations"):
        (root / sub / "validation").mkdir(parents=True)
    (root / "images" / "validation" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetNotFoundError, match="no images") as info:
        ADE20KDataset(root, split="validation")
    assert str(root / "images" / "validation") in str(info.value) and "Expected layout" in str(info.value)


def test_bad_split_name(ade_root):
    with pytest.raises(ValueError, match="testing") as info:
        ADE20KDataset(ade_root, split="testing")
    assert "training" in str(info.value) and "validation" in str(info.value)
    assert not isinstance(info.value, DataFormatError)
