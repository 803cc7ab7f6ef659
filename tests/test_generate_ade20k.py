"""Tests for the synthetic ADE20K generator (vpd_lightning.data.generate.generate_ade20k)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vpd_lightning.data.generate import (
    ADE20K_CLASSES,
    ADE20K_DEFAULT_CLASS_IDS,
    generate_ade20k,
    generate_nyuv2,
    main,
    render_ade_scene,
)

H, W = 64, 80
N_TRAIN, N_VAL = 24, 8
SPLITS = (("training", "train", N_TRAIN), ("validation", "val", N_VAL))


def _stems(prefix: str, n: int) -> list[str]:
    return [f"ADE_{prefix}_{i:08d}" for i in range(1, n + 1)]


def _pair(root: Path, split: str, stem: str) -> tuple[np.ndarray, np.ndarray]:
    with Image.open(root / "images" / split / f"{stem}.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        rgb = np.array(im)
    with Image.open(root / "annotations" / split / f"{stem}.png") as an:
        assert an.format == "PNG" and an.mode == "L"
        label = np.array(an)
    assert label.dtype == np.uint8 and label.ndim == 2
    assert rgb.shape == (*label.shape, 3)
    return rgb, label


def _split(root: Path, split: str, prefix: str, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [_pair(root, split, s) for s in _stems(prefix, n)]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ade(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "ADEChallengeData2016"
    out = generate_ade20k(root, num_train=N_TRAIN, num_val=N_VAL, height=H, width=W, seed=0)
    assert out == root and isinstance(out, Path)
    return root


def test_class_names():
    assert len(ADE20K_CLASSES) == 150
    assert len(set(ADE20K_CLASSES)) == 150
    assert ADE20K_CLASSES[0] == "wall" and ADE20K_CLASSES[-1] == "flag"
    assert ADE20K_CLASSES[3] == "floor"
    assert ADE20K_CLASSES[7] == "bed "  # sic, mmseg's trailing space
    assert ADE20K_CLASSES[149] == "flag" and ADE20K_CLASSES[14] == "door"
    assert all(isinstance(c, str) and c.strip() for c in ADE20K_CLASSES)
    assert ADE20K_DEFAULT_CLASS_IDS[-1] == 150 and {1, 4} <= set(ADE20K_DEFAULT_CLASS_IDS)


def test_layout_and_naming(ade: Path):
    expected = {".generator.json", "objectInfo150.txt", "sceneCategories.txt"}
    for split, prefix, n in SPLITS:
        expected |= {f"images/{split}/{s}.jpg" for s in _stems(prefix, n)}
        expected |= {f"annotations/{split}/{s}.png" for s in _stems(prefix, n)}
    assert set(_tree(ade)) == expected
    assert (ade / "images/training/ADE_train_00000001.jpg").is_file()
    assert (ade / "annotations/validation/ADE_val_00000001.png").is_file()

    info = (ade / "objectInfo150.txt").read_text().splitlines()
    assert info[0] == "Idx\tRatio\tTrain\tVal\tName"
    assert len(info) == 151
    for i, line in enumerate(info[1:], start=1):
        idx, ratio, ntr, nval, name = line.split("\t")
        assert int(idx) == i and float(ratio) == 0.0 and int(ntr) == 0 and int(nval) == 0
        assert name == ADE20K_CLASSES[i - 1].strip()

    scenes = (ade / "sceneCategories.txt").read_text().splitlines()
    assert [line.split(" ")[0] for line in scenes] == _stems("train", N_TRAIN) + _stems("val", N_VAL)
    assert all(re.fullmatch(r"ADE_(train|val)_\d{8} [a-z_]+", line) for line in scenes)

    marker = json.loads((ade / ".generator.json").read_text())
    assert marker["complete"] is True and marker["config"]["dataset"] == "ade20k"


def test_pairs_and_label_values(ade: Path):
    ids = set(ADE20K_DEFAULT_CLASS_IDS)
    seen: dict[str, set[int]] = {}
    for split, prefix, n in SPLITS:
        values: set[int] = set()
        for _, label in _split(ade, split, prefix, n):
            u = set(np.unique(label).tolist())
            assert u <= ids | {0}
            assert {1, 4} <= u and len(u - {0, 1, 4}) >= 1  # wall, floor and at least one object
            assert 0 in u  # every image has some "other" pixels
            values |= u
        seen[split] = values
    assert {0, 150} <= seen["training"]
    assert seen["training"] == ids | {0}  # round-robin: every class occurs in training


def test_sizes_vary(ade: Path):
    sizes = set()
    for split, prefix, n in SPLITS:
        for s in _stems(prefix, n):
            with Image.open(ade / "images" / split / f"{s}.jpg") as im:
                w, h = im.size
            with Image.open(ade / "annotations" / split / f"{s}.png") as an:
                assert an.size == (w, h)
            assert round(0.75 * H) <= h <= round(1.25 * H)
            assert round(0.75 * W) <= w <= round(1.25 * W)
            sizes.add((h, w))
    assert len(sizes) >= N_TRAIN // 2
    aspects = [w / h for h, w in sizes]
    assert max(aspects) / min(aspects) > 1.3


def test_render_ade_scene_pure():
    a = render_ade_scene(50, 70, np.random.default_rng(7), ADE20K_DEFAULT_CLASS_IDS)
    b = render_ade_scene(50, 70, np.random.default_rng(7), ADE20K_DEFAULT_CLASS_IDS)
    c = render_ade_scene(50, 70, np.random.default_rng(8), ADE20K_DEFAULT_CLASS_IDS)
    rgb, label = a
    assert rgb.shape == (50, 70, 3) and rgb.dtype == np.uint8
    assert label.shape == (50, 70) and label.dtype == np.uint8
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    _, label = render_ade_scene(40, 40, np.random.default_rng(0), (1, 4, 23, 150), include=150)
    assert 150 in label
    with pytest.raises(ValueError, match="include"):
        render_ade_scene(40, 40, np.random.default_rng(0), (1, 4, 23), include=4)


def test_determinism(ade: Path, tmp_path: Path):
    again = generate_ade20k(tmp_path / "a" / "ADEChallengeData2016", N_TRAIN, N_VAL, H, W, seed=0)
    assert _tree(again) == _tree(ade)
    other = generate_ade20k(tmp_path / "b" / "ADEChallengeData2016", N_TRAIN, N_VAL, H, W, seed=1)
    first = "images/training/ADE_train_00000001.jpg"
    assert _tree(other)[first] != _tree(ade)[first]


def test_idempotent_and_regenerates(tmp_path: Path):
    root = tmp_path / "ADEChallengeData2016"
    generate_ade20k(root, 6, 3, 40, 48, seed=0)
    first = root / "images/training/ADE_train_00000001.jpg"
    stamp = first.stat().st_mtime_ns
    before = _tree(root)
    time.sleep(0.01)
    generate_ade20k(root, 6, 3, 40, 48, seed=0)
    assert first.stat().st_mtime_ns == stamp and _tree(root) == before

    # a different config replaces the generated set, leaving no stale files behind
    generate_ade20k(root, 3, 2, 40, 48, seed=0)
    assert not (root / "images/training/ADE_train_00000004.jpg").exists()
    assert not (root / "annotations/validation/ADE_val_00000003.png").exists()
    assert len((root / "sceneCategories.txt").read_text().splitlines()) == 5

    # an incomplete set (a file gone) is regenerated
    (root / "annotations/training/ADE_train_00000002.png").unlink()
    generate_ade20k(root, 3, 2, 40, 48, seed=0)
    assert (root / "annotations/training/ADE_train_00000002.png").is_file()


def test_refuses_foreign_dataset(tmp_path: Path):
    real = tmp_path / "real" / "ADEChallengeData2016"
    (real / "images" / "training").mkdir(parents=True)
    (real / "images" / "training" / "ADE_train_00000001.jpg").write_bytes(b"not ours")
    with pytest.raises(FileExistsError):
        generate_ade20k(real, 2, 1, 32, 32)
    assert (real / "images" / "training" / "ADE_train_00000001.jpg").read_bytes() == b"not ours"

    nyu = generate_nyuv2(tmp_path / "nyu", 2, 1, 32, 32)  # another generator's folder
    with pytest.raises(FileExistsError):
        generate_ade20k(nyu, 2, 1, 32, 32)


@pytest.mark.parametrize(
    "kw, bad",
    [
        (dict(num_train=0), "num_train"),
        (dict(num_val=0), "num_val"),
        (dict(height=16), "height"),
        (dict(width=8), "width"),
        (dict(seed=-1), "seed"),
        (dict(num_train=2.5), "num_train"),
        (dict(class_ids=(1, 4, 151)), "class_ids"),
        (dict(class_ids=(0, 1, 4)), "class_ids"),
        (dict(class_ids=(1, 4)), "class_ids"),
        (dict(class_ids=(1, 4, "5")), "class_ids"),
        (dict(class_ids=5), "class_ids"),
    ],
)
def test_bad_args(tmp_path: Path, kw: dict, bad: str):
    with pytest.raises(ValueError, match=bad):
        generate_ade20k(tmp_path / "ade", **{**dict(num_train=2, num_val=1, height=32, width=32), **kw})
    assert not (tmp_path / "ade").exists()


def test_custom_class_ids(tmp_path: Path):
    root = generate_ade20k(tmp_path / "ade", 6, 2, 40, 40, seed=3, class_ids=[12, 150, 3, 7, 7])
    values = set()
    for split, prefix, n in (("training", "train", 6), ("validation", "val", 2)):
        for _, label in _split(root, split, prefix, n):
            values |= set(np.unique(label).tolist())
    assert values == {0, 3, 7, 12, 150}
    assert json.loads((root / ".generator.json").read_text())["config"]["class_ids"] == [3, 7, 12, 150]


def test_default_speed(tmp_path: Path):
    t0 = time.perf_counter()
    root = generate_ade20k(tmp_path / "ADEChallengeData2016")  # 64 + 16 images around 128 px
    assert time.perf_counter() - t0 < 3.0
    assert len(list((root / "images" / "training").iterdir())) == 64
    assert len(list((root / "annotations" / "validation").iterdir())) == 16


def test_segmentation_is_learnable_from_colour(tmp_path: Path):
    """A nearest-class-mean RGB classifier beats the majority class by a wide margin."""
    root = generate_ade20k(tmp_path / "ade", 32, 12, 64, 64, seed=5)
    ids = np.array(ADE20K_DEFAULT_CLASS_IDS)

    def pixels(split: str, prefix: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = _split(root, split, prefix, n)
        x = np.concatenate([r.reshape(-1, 3) for r, _ in pairs]).astype(np.float64)
        y = np.concatenate([lb.reshape(-1) for _, lb in pairs])
        keep = y != 0  # reduce-zero-label: 0 is ignored
        return x[keep], y[keep]

    xt, yt = pixels("training", "train", 32)
    xv, yv = pixels("validation", "val", 12)
    means = np.stack([xt[yt == c].mean(0) for c in ids])
    pred = ids[np.argmin(((xv[:, None, :] - means[None]) ** 2).sum(-1), axis=1)]
    acc = float((pred == yv).mean())
    majority = ids[np.argmax([(yt == c).sum() for c in ids])]
    base = float((yv == majority).mean())
    assert acc >= base + 0.15, (acc, base)
    assert acc > 0.8, acc


def test_cli(tmp_path: Path, capsys):
    root = tmp_path / "ADEChallengeData2016"
    args = ["ade20k", "--root", str(root), "--num-train", "3", "--num-val", "2", "--height", "40", "--width", "48"]
    assert main(args + ["--seed", "2", "--class-ids", "1", "4", "150"]) == 0
    assert capsys.readouterr().out.strip() == str(root)
    assert sorted(p.name for p in (root / "images" / "validation").iterdir()) == [f"{s}.jpg" for s in _stems("val", 2)]
    assert (root / "annotations" / "training" / "ADE_train_00000003.png").is_file()
    with pytest.raises(SystemExit):
        main(args + ["--class-ids", "151", "1", "4"])
