"""Tests for the synthetic NYU Depth v2 generator (vpd_lightning.data.generate)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vpd_lightning.data.generate import (
    NYU_DEFAULT_SCENES,
    NYU_SCENE_CLASSES,
    generate_nyuv2,
    main,
    render_room,
)

H, W = 48, 64
SRC = str(Path(__file__).resolve().parents[1] / "src")
TRAIN_DIR_RE = re.compile(r"^(?P<scene>[a-z_]+)_(?P<num>\d{4})(?P<letter>[a-z])$")


def _read_list(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        assert len(parts) == 2, line
        out.append((parts[0], parts[1]))
    return out


def _depth(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.mode == "I;16"
        arr = np.array(im)
    assert arr.dtype == np.uint16
    return arr


def _all_depths(root: Path) -> list[np.ndarray]:
    out = [_depth(root / "sync" / d.lstrip("/")) for _, d in _read_list(root / "train_list.txt")]
    out += [_depth(root / "official_splits/test" / d.lstrip("/")) for _, d in _read_list(root / "test_list.txt")]
    return out


@pytest.fixture(scope="module")
def nyu(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "nyu_depth_v2"
    out = generate_nyuv2(root, num_train=12, num_test=6, height=H, width=W, seed=0)
    assert out == root and isinstance(out, Path)
    return root


def test_scene_classes():
    assert len(NYU_SCENE_CLASSES) == 27
    assert NYU_SCENE_CLASSES[0] == "printer_room" and NYU_SCENE_CLASSES[-1] == "bookstore"
    assert NYU_SCENE_CLASSES[14] == "excercise_room"  # sic, as in VPD
    assert set(NYU_DEFAULT_SCENES) <= set(NYU_SCENE_CLASSES)
    for s in ("kitchen", "office_kitchen", "study_room", "bedroom", "bathroom", "living_room"):
        assert s in NYU_DEFAULT_SCENES


def test_layout_and_lists(nyu: Path):
    train = _read_list(nyu / "train_list.txt")
    test = _read_list(nyu / "test_list.txt")
    assert len(train) == 12 and len(test) == 6
    assert not (nyu / "test_list.txt").read_text().endswith("\n")

    train_scenes = set()
    for rgb, depth in train:
        assert rgb.startswith("/") and depth.startswith("/")
        d, name = rgb[1:].split("/")
        d2, dname = depth[1:].split("/")
        assert d == d2
        m = TRAIN_DIR_RE.match(d)
        assert m, d
        assert m["scene"] in NYU_SCENE_CLASSES
        train_scenes.add(m["scene"])
        idx = re.fullmatch(r"rgb_(\d{5})\.jpg", name)
        assert idx and dname == f"sync_depth_{idx[1]}.png"
        assert (nyu / "sync" / d / name).is_file() and (nyu / "sync" / d / dname).is_file()
    assert len(train_scenes) >= 6
    assert "office_kitchen" in train_scenes and "kitchen" in train_scenes

    test_scenes = set()
    for rgb, depth in test:
        d, name = rgb[1:].split("/")
        d2, dname = depth[1:].split("/")
        assert d == d2 and d in NYU_SCENE_CLASSES
        test_scenes.add(d)
        idx = re.fullmatch(r"rgb_(\d{5})\.jpg", name)
        assert idx and dname == f"sync_depth_{idx[1]}.png"
        assert (nyu / "official_splits/test" / d / name).is_file()
        assert (nyu / "official_splits/test" / d / dname).is_file()
    assert test_scenes <= train_scenes
    assert len({r for r, _ in test}) == len(test)

    # nothing on disk that the lists do not mention
    on_disk = {p.relative_to(nyu / "sync").as_posix() for p in (nyu / "sync").rglob("*") if p.is_file()}
    assert on_disk == {p.lstrip("/") for pair in train for p in pair}
    on_disk = {
        p.relative_to(nyu / "official_splits/test").as_posix()
        for p in (nyu / "official_splits/test").rglob("*")
        if p.is_file()
    }
    assert on_disk == {p.lstrip("/") for pair in test for p in pair}
    assert json.loads((nyu / ".generator.json").read_text())["complete"] is True


def test_depth_png_is_16bit_mm(nyu: Path):
    depths = _all_depths(nyu)
    for d in depths:
        assert d.shape == (H, W)
        assert d.max() <= 9900
        valid = d[d > 0]
        assert valid.min() >= 300
        assert 0.005 <= (d == 0).mean() <= 0.03
    allv = np.concatenate([d[d > 0] for d in depths])
    assert allv.max() > 255 and len(np.unique(allv)) > 256  # truly 16-bit millimetres
    assert 500 < np.median(allv) < 8000


def test_16bit_png_roundtrip(tmp_path: Path):
    arr = np.array([[0, 300, 9900], [1234, 65535, 1]], np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    back = np.array(Image.open(tmp_path / "d.png"))
    assert back.dtype == np.uint16 and np.array_equal(back, arr)


def test_rgb_jpegs(nyu: Path):
    for base, lst in ((nyu / "sync", "train_list.txt"), (nyu / "official_splits/test", "test_list.txt")):
        for rgb, _ in _read_list(nyu / lst):
            with Image.open(base / rgb.lstrip("/")) as im:
                assert im.format == "JPEG" and im.mode == "RGB" and im.size == (W, H)
                a = np.array(im)
            assert a.dtype == np.uint8 and a.std() > 5


def test_render_room_pure():
    rgb, depth = render_room(H, W, np.random.default_rng(3), "office_kitchen")
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert depth.shape == (H, W) and depth.dtype == np.float32
    valid = depth[depth > 0]
    assert valid.min() >= 0.3 - 1e-6 and valid.max() <= 9.9 + 1e-6
    rgb2, depth2 = render_room(H, W, np.random.default_rng(3), "office_kitchen")
    assert np.array_equal(rgb, rgb2) and np.array_equal(depth, depth2)
    _, nohole = render_room(H, W, np.random.default_rng(3), "office_kitchen", holes=False)
    assert (nohole > 0).all()
    with pytest.raises(ValueError):
        render_room(H, W, np.random.default_rng(0), "garage")


def test_determinism(nyu: Path, tmp_path: Path):
    again = generate_nyuv2(tmp_path / "a", num_train=12, num_test=6, height=H, width=W, seed=0)
    assert (again / "train_list.txt").read_text() == (nyu / "train_list.txt").read_text()
    assert (again / "test_list.txt").read_text() == (nyu / "test_list.txt").read_text()
    for a, b in zip(_all_depths(again), _all_depths(nyu)):
        assert np.array_equal(a, b)
    other = generate_nyuv2(tmp_path / "b", num_train=12, num_test=6, height=H, width=W, seed=1)
    da, db = _all_depths(nyu), _all_depths(other)
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(da, db))


def test_idempotent_and_regenerates(tmp_path: Path):
    root = tmp_path / "nyu_depth_v2"
    kw = dict(num_train=4, num_test=2, height=H, width=W, seed=5)
    generate_nyuv2(root, **kw)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    assert generate_nyuv2(str(root), **kw) == root
    assert sorted(p for p in root.rglob("*") if p.is_file()) == files
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes

    # different arguments: rewritten, with no stale files left behind
    generate_nyuv2(root, **{**kw, "num_train": 3, "seed": 6})
    train = _read_list(root / "train_list.txt")
    assert len(train) == 3
    on_disk = {p.relative_to(root / "sync").as_posix() for p in (root / "sync").rglob("*") if p.is_file()}
    assert on_disk == {p.lstrip("/") for pair in train for p in pair}

    # an incomplete data set (a file went missing) is regenerated
    (root / "sync" / train[0][1].lstrip("/")).unlink()
    generate_nyuv2(root, **{**kw, "num_train": 3, "seed": 6})
    assert (root / "sync" / train[0][1].lstrip("/")).is_file()


def test_refuses_foreign_dataset(tmp_path: Path):
    (tmp_path / "sync" / "kitchen_0001a").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        generate_nyuv2(tmp_path, num_train=1, num_test=1, height=H, width=W)
    assert (tmp_path / "sync" / "kitchen_0001a").is_dir()


@pytest.mark.parametrize(
    "kw, bad",
    [
        (dict(num_train=0), "num_train"),
        (dict(num_test=-1), "num_test"),
        (dict(height=16), "height"),
        (dict(width=31), "width"),
        (dict(num_train=2.5), "num_train"),
        (dict(seed=-1), "seed"),
        (dict(scenes=["kitchen", "garage"]), "garage"),
        (dict(scenes=["Kitchen"]), "Kitchen"),
        (dict(scenes=[]), "scenes"),
    ],
)
def test_bad_args(tmp_path: Path, kw: dict, bad: str):
    with pytest.raises(ValueError, match=bad):
        generate_nyuv2(tmp_path / "x", **{"num_train": 1, "num_test": 1, "height": H, "width": W, **kw})
    assert not (tmp_path / "x").exists()


def test_custom_scenes(tmp_path: Path):
    root = generate_nyuv2(tmp_path / "n", num_train=3, num_test=4, height=H, width=W, scenes=["cafe", "bookstore"])
    dirs = {TRAIN_DIR_RE.match(r[1:].split("/")[0])["scene"] for r, _ in _read_list(root / "train_list.txt")}
    assert dirs == {"cafe", "bookstore"}
    assert {r[1:].split("/")[0] for r, _ in _read_list(root / "test_list.txt")} <= dirs


def _features(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float64) / 255.0
    inten = x.mean(-1)
    log_i = np.log(inten + 0.02)
    rows = np.broadcast_to(np.linspace(0.0, 1.0, rgb.shape[0])[:, None], inten.shape)
    return np.stack([np.ones_like(inten), inten, log_i, log_i**2, x[..., 0], x[..., 1], x[..., 2], rows, rows**2], -1)


def _xy(root: Path, lst: str, sub: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for rgb, depth in _read_list(root / lst):
        img = np.array(Image.open(root / sub / rgb.lstrip("/")))
        d = np.array(Image.open(root / sub / depth.lstrip("/"))).astype(np.float64) / 1000.0
        valid = d > 0
        xs.append(_features(img)[valid])
        ys.append(d[valid])
    return np.concatenate(xs), np.concatenate(ys)


def test_depth_is_learnable_from_image(tmp_path: Path):
    """A per-pixel linear model on trivial image features must beat the mean-depth baseline."""
    root = generate_nyuv2(tmp_path / "n", num_train=16, num_test=8, height=H, width=W, seed=0)
    x_tr, y_tr = _xy(root, "train_list.txt", "sync")
    x_te, y_te = _xy(root, "test_list.txt", "official_splits/test")
    coef, *_ = np.linalg.lstsq(x_tr, y_tr, rcond=None)
    rmse = np.sqrt(np.mean((x_te @ coef - y_te) ** 2))
    baseline = np.sqrt(np.mean((y_tr.mean() - y_te) ** 2))
    assert baseline > 0.5  # depth actually varies
    assert rmse <= 0.75 * baseline, (rmse, baseline)


def test_cli(tmp_path: Path, capsys):
    root = tmp_path / "cli" / "nyu_depth_v2"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)}
    cmd = [
        sys.executable,
        "-m",
        "vpd_lightning.data.generate",
        "nyuv2",
        "--root",
        str(root),
        "--num-train",
        "3",
        "--num-test",
        "2",
        "--height",
        "32",
        "--width",
        "40",
        "--seed",
        "1",
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()) == root
    assert len(_read_list(root / "train_list.txt")) == 3 and len(_read_list(root / "test_list.txt")) == 2
    with Image.open(next((root / "official_splits" / "test").rglob("*.jpg"))) as im:
        assert im.size == (40, 32)
    # argument errors exit non-zero with the bad value named (checked in-process, to stay fast)
    with pytest.raises(SystemExit) as exc:
        main(["nyuv2", "--root", str(tmp_path / "bad"), "--scenes", "garage"])
    assert exc.value.code != 0 and "garage" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])  # a data set subcommand is required


def test_module_layout_and_old_names():
    """One generator module per data set in ``vpd_lightning.data.synthetic``; the data sets' own constants live in
    their data modules (which never import a generator); every former name still resolves to the same object."""
    import ast
    import importlib

    import vpd_lightning.data as data
    from vpd_lightning.data import ade20k, kitti, nyuv2, refcoco, synthetic, voc
    from vpd_lightning.data.synthetic import refcoco as syn_refcoco

    # constants: defined once, in the data modules; the generators' names are those objects (or views of them)
    assert NYU_SCENE_CLASSES is nyuv2.NYU_SCENE_CLASSES and len(NYU_SCENE_CLASSES) == 27
    old = importlib.import_module("vpd_lightning.data.generate")
    assert old.ADE20K_CLASSES is ade20k.ADE20K_CLASSES and len(ade20k.ADE20K_CLASSES) == ade20k.ADE20K_NUM_CLASSES
    assert old.NYU_FOCAL_LENGTH == nyuv2.NYU_FOCAL_LENGTH == 518.8579
    assert old.REFCOCO_DATASETS == tuple(refcoco.REFER_SPLITS) == ("refcoco", "refcoco+", "refcocog")
    assert old.REFCOCO_SPLITS[("refcoco", "unc")] == refcoco.REFER_SPLITS["refcoco"]["unc"] == (
        "train", "val", "testA", "testB")  # fmt: skip
    assert old.REFCOCO_SPLITS is syn_refcoco.REFCOCO_SPLITS
    assert old.REFCOCO_DEFAULT_SPLIT_BY == refcoco.DEFAULT_SPLIT_BY
    assert importlib.import_module("vpd_lightning.data.generate_kitti").KITTI_FOCAL is kitti.KITTI_FOCAL
    cmap = voc.voc_colormap()
    assert cmap.shape == (256, 3) and tuple(cmap[1]) == (128, 0, 0) and tuple(cmap[15]) == (192, 128, 128)

    # every name the four former modules exported is still there, and is the synthetic package's object
    for name, module in (
        ("generate", old),
        ("generate_kitti", "vpd_lightning.data.generate_kitti"),
        ("generate_segmentation", "vpd_lightning.data.generate_segmentation"),
        ("generate_folders", "vpd_lightning.data.generate_folders"),
    ):
        mod = importlib.import_module(module) if isinstance(module, str) else module
        for attr in mod.__all__:
            assert hasattr(mod, attr), (name, attr)
            if attr.startswith(("generate_", "render_")):
                assert getattr(mod, attr) is getattr(synthetic, attr), (name, attr)
    assert old.generate_nyuv2 is synthetic.generate_nyuv2 and old.render_room is render_room

    # no data module imports a generator (no cycles: the generators import the data modules)
    for path in Path(data.__file__).parent.glob("*.py"):
        if path.stem.startswith("generate"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            assert not any("synthetic" in n or "generate" in n for n in names), (path.name, names)
