"""Tests for the NYU Depth v2 data set and data module (vpd_lightning.data.nyuv2)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vpd_lightning.data.nyuv2 as nyuv2_module
from vpd_lightning.data import (
    NYU_SCENE_CLASSES,
    DataFormatError,
    DatasetNotFoundError,
    NYUv2DataModule,
    NYUv2Dataset,
    scene_class_id,
)
from vpd_lightning.data.generate import generate_nyuv2

H, W = 64, 96
NUM_TRAIN, NUM_TEST = 8, 4
KITCHEN, STUDY, STUDY_ROOM, OFFICE_KITCHEN, OFFICE = 6, 3, 5, 19, 25


# ----------------------------------------------------------------------------------------------- helpers
def _read_list(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()[:2]) for line in path.read_text().splitlines() if line.strip()]


def _raw_depth(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        arr = np.asarray(img)
    assert arr.dtype == np.uint16
    return arr


def _raw_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _write_pair(folder: Path, index: int, h: int = 16, w: int = 24, seed: int = 0) -> tuple[str, str]:
    """A random RGB JPEG + uint16 depth PNG (mm) in ``folder``; returns the list-file paths."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"rgb_{index:05d}.jpg")
    depth = rng.integers(300, 9900, (h, w)).astype(np.uint16)
    Image.fromarray(depth).save(folder / f"sync_depth_{index:05d}.png")
    return f"/{folder.name}/rgb_{index:05d}.jpg", f"/{folder.name}/sync_depth_{index:05d}.png"


def _make_layout(root: Path, train_dirs: list[str], test_dirs: list[str], h: int = 16, w: int = 24) -> Path:
    """A hand-made NYUv2 layout: one sample per directory."""
    lines = {"train": [], "test": []}
    for split, dirs, base in (("train", train_dirs, root / "sync"), ("test", test_dirs, root / "official_splits/test")):
        base.mkdir(parents=True, exist_ok=True)
        for i, d in enumerate(dirs):
            rgb, depth = _write_pair(base / d, i + 1, h, w, seed=i)
            lines[split].append(f"{rgb} {depth}")
    (root / "train_list.txt").write_text("\n".join(lines["train"]) + "\n")
    (root / "test_list.txt").write_text("\n".join(lines["test"]))
    return root


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def nyu(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen") / "nyu_depth_v2"
    return generate_nyuv2(root, num_train=NUM_TRAIN, num_test=NUM_TEST, height=H, width=W, seed=0)


@pytest.fixture(scope="module")
def handmade(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hand") / "nyu_depth_v2"
    return _make_layout(
        root,
        train_dirs=["office_kitchen_0001a", "study_room_0002b", "kitchen_0003c", "office_0004d"],
        test_dirs=["office_kitchen", "study_room", "kitchen", "office"],
    )


@pytest.fixture
def layout(tmp_path) -> Path:
    """A fresh, writable hand-made layout for the bad-input tests."""
    return _make_layout(tmp_path / "nyu_depth_v2", ["kitchen_0001a", "bedroom_0002a"], ["kitchen", "bedroom"])


# ----------------------------------------------------------------------------------------------- samples
def test_train_sample_keys_shapes_dtypes(nyu):
    ds = NYUv2Dataset(nyu, "train", crop_size=(48, 48))
    assert len(ds) == NUM_TRAIN
    assert ds.augment is True and ds.cutdepth is True
    sample = ds[0]
    assert set(sample) == {"image", "depth", "class_id", "filename"}
    image, depth = sample["image"], sample["depth"]
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, 48, 48)
    assert depth.dtype == torch.float32 and tuple(depth.shape) == (1, 48, 48)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.max() > 0.05  # not all black
    # metres: the generator clips to [0.3, 9.9] m, 0 = invalid
    valid = depth[depth > 0]
    assert valid.numel() > 0.9 * depth.numel()
    assert valid.min() >= 0.3 - 1e-6 and valid.max() <= 9.9 + 1e-6
    assert sample["class_id"].dtype == torch.int64 and sample["class_id"].ndim == 0
    rgb_rel, _ = _read_list(nyu / "train_list.txt")[0]
    scene_dir, name = rgb_rel.strip("/").split("/")
    assert sample["filename"] == f"{scene_dir}_{name}"


def test_train_depth_values_come_from_png(nyu):
    """With no photometric jitter and a full-size crop, depth is the PNG (maybe flipped) / 1000."""
    ds = NYUv2Dataset(nyu, "train", crop_size=(H, W), photometric=False, cutdepth=False)
    _, depth_rel = _read_list(nyu / "train_list.txt")[1]
    raw = _raw_depth(nyu / "sync" / depth_rel.lstrip("/")).astype(np.float32) / np.float32(1000.0)
    for _ in range(4):
        got = ds[1]["depth"][0].numpy()
        assert got.shape == (H, W)
        assert np.array_equal(got, raw) or np.array_equal(got, raw[:, ::-1])


def test_test_split_full_images_exact(nyu):
    ds = NYUv2Dataset(nyu, "test")
    assert len(ds) == NUM_TEST and ds.augment is False and ds.cutdepth is False
    base = nyu / "official_splits" / "test"
    pairs = _read_list(nyu / "test_list.txt")
    for i, (rgb_rel, depth_rel) in enumerate(pairs):
        sample = ds[i]
        assert tuple(sample["image"].shape) == (3, H, W)
        assert tuple(sample["depth"].shape) == (1, H, W)
        raw_depth = _raw_depth(base / depth_rel.lstrip("/"))
        assert raw_depth.max() > 0
        expected_depth = torch.from_numpy(raw_depth.astype(np.float32) / np.float32(1000.0))
        assert torch.equal(sample["depth"][0], expected_depth)
        expected_image = torch.from_numpy(_raw_rgb(base / rgb_rel.lstrip("/")).astype(np.float32) / 255.0)
        assert torch.allclose(sample["image"], expected_image.permute(2, 0, 1), atol=1e-7, rtol=0)
        scene_dir, name = rgb_rel.strip("/").split("/")
        assert sample["filename"] == f"{scene_dir}_{name}"
    # deterministic: no augmentation on the test split
    assert torch.equal(ds[0]["image"], ds[0]["image"])


def test_generated_class_ids(nyu):
    ds = NYUv2Dataset(nyu, "train", crop_size=(48, 48))
    by_scene = {}
    for key, cid in zip(ds.keys, ds.class_ids):
        by_scene[re.sub(r"_\d{4}[a-z]_rgb_\d{5}\.jpg$", "", key)] = cid
    assert by_scene["office_kitchen"] == KITCHEN
    assert by_scene["study_room"] == STUDY
    assert by_scene["kitchen"] == KITCHEN
    assert by_scene["bedroom"] == NYU_SCENE_CLASSES.index("bedroom")
    assert by_scene["office"] == OFFICE


# ----------------------------------------------------------------------------------------------- class ids
def test_class_ids_first_substring(handmade):
    train = NYUv2Dataset(handmade, "train", crop_size=(16, 16))
    assert train.keys == [
        "office_kitchen_0001a_rgb_00001.jpg",
        "study_room_0002b_rgb_00002.jpg",
        "kitchen_0003c_rgb_00003.jpg",
        "office_0004d_rgb_00004.jpg",
    ]
    assert train.class_ids == [KITCHEN, STUDY, KITCHEN, OFFICE]
    assert [int(train[i]["class_id"]) for i in range(4)] == [KITCHEN, STUDY, KITCHEN, OFFICE]
    test = NYUv2Dataset(handmade, "test")
    assert test.class_ids == [KITCHEN, STUDY, KITCHEN, OFFICE]


def test_class_ids_exact(handmade):
    train = NYUv2Dataset(handmade, "train", crop_size=(16, 16), scene_match="exact")
    assert train.class_ids == [OFFICE_KITCHEN, STUDY_ROOM, KITCHEN, OFFICE]
    test = NYUv2Dataset(handmade, "test", scene_match="exact")
    assert test.class_ids == [OFFICE_KITCHEN, STUDY_ROOM, KITCHEN, OFFICE]
    assert int(test[0]["class_id"]) == OFFICE_KITCHEN


def test_custom_class_names(handmade):
    names = ["office", "kitchen", "study_room"]
    ds = NYUv2Dataset(handmade, "test", class_names=names)
    # first substring: "office" is in "office_kitchen"
    assert ds.class_ids == [0, 2, 1, 0]
    with pytest.raises(DataFormatError, match="office_kitchen"):
        NYUv2Dataset(handmade, "train", class_names=["kitchen"], scene_match="exact")


def test_scene_class_id_unit():
    names = NYU_SCENE_CLASSES
    assert len(names) == 27 and names[0] == "printer_room" and names[-1] == "bookstore"
    assert names[KITCHEN] == "kitchen" and names[OFFICE_KITCHEN] == "office_kitchen"
    assert scene_class_id("office_kitchen_0001a_rgb_00045.jpg", names) == KITCHEN
    assert scene_class_id("office_kitchen_0001a_rgb_00045.jpg", names, "exact") == OFFICE_KITCHEN
    assert scene_class_id("study_room_0005b_rgb_00001.jpg", names) == STUDY
    assert scene_class_id("study_room_0005b_rgb_00001.jpg", names, "exact") == STUDY_ROOM
    assert scene_class_id("study_room_rgb_00001.jpg", names, "exact") == STUDY_ROOM  # test-split dir
    assert scene_class_id("bedroom_0012_rgb_00001.jpg", names, "exact") == names.index("bedroom")
    assert scene_class_id("home_office_0001a_rgb_00001.jpg", names) == names.index("home_office")
    assert scene_class_id("printer_room_rgb_00001.jpg", names) == 0
    assert scene_class_id("garage_0001a_rgb_00001.jpg", names) is None
    assert scene_class_id("garage_0001a_rgb_00001.jpg", names, "exact") is None
    assert scene_class_id("kitchenette_0001a_rgb_00001.jpg", names, "exact") is None
    assert scene_class_id("kitchenette_0001a_rgb_00001.jpg", names) == KITCHEN
    assert scene_class_id("a_b_rgb_1.jpg", ["b", "a"]) == 0


def test_scene_class_id_invalid_rule(handmade):
    with pytest.raises(ValueError, match="scene_match.*'fuzzy'"):
        scene_class_id("kitchen_rgb_00001.jpg", NYU_SCENE_CLASSES, "fuzzy")
    with pytest.raises(ValueError, match="fuzzy"):
        NYUv2Dataset(handmade, "test", scene_match="fuzzy")


# ----------------------------------------------------------------------------------------------- CutDepth
@pytest.fixture
def cutdepth_calls(monkeypatch):
    calls = []
    original = nyuv2_module.cutdepth

    def counting(image, depth, *args, **kwargs):
        calls.append((image.shape, depth.shape, kwargs.get("mode")))
        return original(image, depth, *args, **kwargs)

    monkeypatch.setattr(nyuv2_module, "cutdepth", counting)
    return calls


def test_cutdepth_every_fourth_sample(nyu, cutdepth_calls):
    ds = NYUv2Dataset(nyu, "train", crop_size=(H, W), photometric=False)
    seen = []
    for i in range(8):
        before = len(cutdepth_calls)
        ds[i % 3]  # the counter counts samples served, not indices
        seen.append(len(cutdepth_calls) - before)
    assert seen == [1, 0, 0, 0, 1, 0, 0, 0]
    assert len(cutdepth_calls) == 2
    assert cutdepth_calls[0] == ((H, W, 3), (H, W), "reference")
    ds[0]
    assert len(cutdepth_calls) == 3  # sample 8


def test_cutdepth_mode_forwarded_and_disabled(nyu, cutdepth_calls):
    ds = NYUv2Dataset(nyu, "train", crop_size=(48, 48), cutdepth_mode="normalized")
    ds[0]
    assert cutdepth_calls[-1][2] == "normalized"
    n = len(cutdepth_calls)
    off = NYUv2Dataset(nyu, "train", crop_size=(48, 48), cutdepth=False)
    for i in range(5):
        off[i]
    test = NYUv2Dataset(nyu, "test")
    for i in range(NUM_TEST):
        test[i]
    assert len(cutdepth_calls) == n


def test_cutdepth_changes_the_image(nyu, monkeypatch):
    """Sample 0 (CutDepth) shows a strip of depth mod 256; samples 1-3 are the plain (maybe flipped) image."""
    monkeypatch.setattr(nyuv2_module, "cutdepth", lambda image, depth, mode: np.zeros_like(image))
    ds = NYUv2Dataset(nyu, "train", crop_size=(H, W), photometric=False)
    assert float(ds[0]["image"].abs().max()) == 0.0
    plain = torch.from_numpy(_raw_rgb(nyu / "sync" / _read_list(nyu / "train_list.txt")[0][0].lstrip("/")).copy())
    plain = plain.permute(2, 0, 1).float() / 255.0
    for _ in range(3):
        img = ds[0]["image"]
        assert torch.equal(img, plain) or torch.equal(img, plain.flip(-1))


# ----------------------------------------------------------------------------------------------- data module
def test_datamodule_loaders(nyu):
    dm = NYUv2DataModule(nyu, crop_size=(48, 48), batch_size=2, num_workers=0, pin_memory=False)
    assert dm.train_set is None and dm.test_set is None
    dm.setup("fit")
    assert len(dm.train_set) == NUM_TRAIN and len(dm.test_set) == NUM_TEST
    loader = dm.train_dataloader()
    assert loader.batch_size == 2 and loader.drop_last is True
    batch = next(iter(loader))
    assert set(batch) == {"image", "depth", "class_id", "filename"}
    assert batch["image"].dtype == torch.float32 and tuple(batch["image"].shape) == (2, 3, 48, 48)
    assert batch["depth"].dtype == torch.float32 and tuple(batch["depth"].shape) == (2, 1, 48, 48)
    assert batch["class_id"].dtype == torch.int64 and tuple(batch["class_id"].shape) == (2,)
    assert isinstance(batch["filename"], list) and len(batch["filename"]) == 2
    assert all(f.endswith(".jpg") for f in batch["filename"])
    assert len(loader) == NUM_TRAIN // 2

    expected_names = [
        f"{d.strip('/').split('/')[0]}_{d.rsplit('/', 1)[1]}" for d, _ in _read_list(nyu / "test_list.txt")
    ]
    for make in (dm.val_dataloader, dm.test_dataloader, dm.predict_dataloader):
        batches = list(make())
        assert len(batches) == NUM_TEST
        for b in batches:
            assert tuple(b["image"].shape) == (1, 3, H, W)
            assert tuple(b["depth"].shape) == (1, 1, H, W)
            assert tuple(b["class_id"].shape) == (1,)
        assert [b["filename"][0] for b in batches] == expected_names  # no shuffling


def test_datamodule_setup_test_only(nyu):
    dm = NYUv2DataModule(nyu, num_workers=0)
    dm.setup("test")
    assert dm.train_set is None
    assert len(dm.test_set) == NUM_TEST
    assert dm.test_set.augment is False


def test_datamodule_options_forwarded(handmade):
    dm = NYUv2DataModule(handmade, crop_size=(8, 8), scene_match="exact", num_workers=0, cutdepth=False)
    dm.setup("fit")
    assert dm.train_set.class_ids == [OFFICE_KITCHEN, STUDY_ROOM, KITCHEN, OFFICE]
    assert dm.test_set.class_ids == [OFFICE_KITCHEN, STUDY_ROOM, KITCHEN, OFFICE]
    assert dm.train_set.cutdepth is False
    assert tuple(dm.train_set[0]["image"].shape) == (3, 8, 8)


def test_datamodule_custom_list_files(handmade, tmp_path):
    lines = _read_list(handmade / "test_list.txt")
    custom = tmp_path / "my_test.txt"
    custom.write_text(" ".join(lines[2]) + "\n")
    dm = NYUv2DataModule(handmade, test_list=custom, num_workers=0)
    dm.setup("test")
    assert dm.test_set.keys == ["kitchen_rgb_00003.jpg"]


# ----------------------------------------------------------------------------------------------- bad input
def test_missing_root(tmp_path):
    missing = tmp_path / "no_such_nyu"
    with pytest.raises(DatasetNotFoundError) as err:
        NYUv2Dataset(missing, "train")
    msg = str(err.value)
    assert "Expected layout" in msg and str(missing) in msg and "sync" in msg
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(DatasetNotFoundError) as err:
        NYUv2DataModule(missing, num_workers=0)
    assert "Expected layout" in str(err.value) and str(missing) in str(err.value)


@pytest.mark.parametrize("root", ["", "???"])
def test_datamodule_root_not_set(root):
    with pytest.raises(DatasetNotFoundError, match="data.root is not set"):
        NYUv2DataModule(root)


def test_missing_split_dir_and_list(layout):
    (layout / "train_list.txt").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        NYUv2Dataset(layout, "train")
    assert str(layout / "train_list.txt") in str(err.value) and "Expected layout" in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="my_list.txt"):
        NYUv2Dataset(layout, "test", list_file=layout / "my_list.txt")
    with pytest.raises(ValueError, match="split"):
        NYUv2Dataset(layout, "val")


def test_list_names_missing_image(layout):
    lst = layout / "train_list.txt"
    lst.write_text(lst.read_text() + "/kitchen_0001a/rgb_00099.jpg /kitchen_0001a/sync_depth_00001.png\n")
    with pytest.raises(DataFormatError) as err:
        NYUv2Dataset(layout, "train", crop_size=(8, 8))
    msg = str(err.value)
    assert f"{lst}:3:" in msg
    assert str(layout / "sync" / "kitchen_0001a" / "rgb_00099.jpg") in msg and "does not exist" in msg


def test_list_malformed_line(layout):
    lst = layout / "test_list.txt"
    lst.write_text("/kitchen/rgb_00001.jpg\n")
    with pytest.raises(DataFormatError) as err:
        NYUv2Dataset(layout, "test")
    msg = str(err.value)
    assert f"{lst}:1:" in msg and "/kitchen/rgb_00001.jpg" in msg and "<depth path>" in msg


def test_empty_list_file(layout):
    lst = layout / "test_list.txt"
    lst.write_text("\n  \n")
    with pytest.raises(DataFormatError, match="lists no samples") as err:
        NYUv2Dataset(layout, "test")
    assert str(lst) in str(err.value)


def test_depth_png_8bit(layout):
    depth = layout / "sync" / "kitchen_0001a" / "sync_depth_00001.png"
    Image.fromarray(np.full((16, 24), 100, dtype=np.uint8)).save(depth)
    ds = NYUv2Dataset(layout, "train", crop_size=(8, 8))
    with pytest.raises(DataFormatError) as err:
        ds[0]
    msg = str(err.value)
    assert str(depth) in msg and "16-bit" in msg and "uint16" in msg and "'L'" in msg
    assert tuple(ds[1]["image"].shape) == (3, 8, 8)  # the other sample still loads


def test_depth_png_size_mismatch(layout):
    depth = layout / "official_splits" / "test" / "bedroom" / "sync_depth_00002.png"
    Image.fromarray(np.full((10, 12), 1000, dtype=np.uint16)).save(depth)
    ds = NYUv2Dataset(layout, "test")
    with pytest.raises(DataFormatError) as err:
        ds[1]
    msg = str(err.value)
    assert str(depth) in msg and "12x10" in msg and "24x16" in msg


def test_unreadable_image(layout):
    rgb = layout / "official_splits" / "test" / "kitchen" / "rgb_00001.jpg"
    rgb.write_bytes(b"this is not a jpeg at all" * 10)
    ds = NYUv2Dataset(layout, "test")
    with pytest.raises(DataFormatError) as err:
        ds[0]
    assert str(rgb) in str(err.value) and "cannot read the RGB image" in str(err.value)


def test_unreadable_depth(layout):
    depth = layout / "official_splits" / "test" / "kitchen" / "sync_depth_00001.png"
    depth.write_bytes(b"\x89PNG garbage")
    ds = NYUv2Dataset(layout, "test")
    with pytest.raises(DataFormatError) as err:
        ds[0]
    assert str(depth) in str(err.value) and "depth PNG" in str(err.value)


def test_unknown_scene_directory(layout):
    rgb, depth = _write_pair(layout / "sync" / "garage_0007a", 7)
    lst = layout / "train_list.txt"
    lst.write_text(lst.read_text() + f"{rgb} {depth}\n")
    with pytest.raises(DataFormatError) as err:
        NYUv2Dataset(layout, "train")
    msg = str(err.value)
    assert str(layout / "sync" / "garage_0007a" / "rgb_00007.jpg") in msg
    assert "'garage_0007a'" in msg and "data.class_names" in msg
    # ... and with the class added it loads
    ds = NYUv2Dataset(layout, "train", class_names=[*NYU_SCENE_CLASSES, "garage"], crop_size=(8, 8))
    assert ds.class_ids[-1] == len(NYU_SCENE_CLASSES)
