"""Tests for the synthetic RefCOCO / RefCOCO+ / RefCOCOg generator (vpd_lightning.data.generate)."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vpd_lightning.data.generate import (
    REFCOCO_COLOURS,
    REFCOCO_SHAPE_CATEGORY,
    REFCOCO_SHAPE_WORDS,
    REFCOCO_SPLITS,
    generate_refcoco,
    main,
    render_refcoco_image,
)

mask_api = pytest.importorskip("pycocotools.mask")

IMAGE_DIR = Path("images/mscoco/images/train2014")
REF_KEYS = {"ref_id", "ann_id", "image_id", "category_id", "split", "sentences", "sent_ids", "file_name"}
SENT_KEYS = {"sent", "sent_id", "tokens", "raw"}
PALETTE_NAMES = list(REFCOCO_COLOURS)
PALETTE = np.array([REFCOCO_COLOURS[c] for c in PALETTE_NAMES], np.float64)
CATEGORY_SHAPE = {v: k for k, v in REFCOCO_SHAPE_CATEGORY.items()}
SHAPE_OF_WORD = {w: s for s, words in REFCOCO_SHAPE_WORDS.items() for w in words}
POSITION_WORDS = ("left", "right", "top", "bottom")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _load(root: Path, dataset: str, split_by: str) -> tuple[list[dict], dict]:
    with open(root / dataset / f"refs({split_by}).p", "rb") as fh:
        refs = pickle.load(fh)
    instances = json.loads((root / dataset / "instances.json").read_text())
    return refs, instances


def _decode(seg, h: int, w: int) -> np.ndarray:
    """(H, W) sum over the segmentation's parts, like REFER.getMask (VPD / LAVT)."""
    rle = mask_api.frPyObjects(seg, h, w) if isinstance(seg, list) else seg
    m = mask_api.decode(rle)
    return m.sum(axis=2) if m.ndim == 3 else m.astype(np.int64)


def _nearest_colour(rgb: np.ndarray) -> str:
    return PALETTE_NAMES[int(np.argmin(((PALETTE - rgb) ** 2).sum(axis=1)))]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


class _Scene:
    """Per image: its pixels and, per annotation, decoded mask, seen colour, shape and centroid."""

    def __init__(self, root: Path, instances: dict):
        self.images = {im["id"]: im for im in instances["images"]}
        self.anns = {a["id"]: a for a in instances["annotations"]}
        self.by_image: dict[int, list[int]] = {}
        self.info: dict[int, dict] = {}
        pixels = {}
        for a in instances["annotations"]:
            im = self.images[a["image_id"]]
            if im["id"] not in pixels:
                pixels[im["id"]] = np.asarray(Image.open(root / IMAGE_DIR / im["file_name"]).convert("RGB"))
            m = _decode(a["segmentation"], im["height"], im["width"]) > 0
            ys, xs = np.nonzero(m)
            self.by_image.setdefault(im["id"], []).append(a["id"])
            self.info[a["id"]] = dict(
                colour=_nearest_colour(pixels[im["id"]][m].astype(np.float64).mean(axis=0)),
                shape=CATEGORY_SHAPE[a["category_id"]],
                cx=xs.mean() + 0.5,
                cy=ys.mean() + 0.5,
                area=int(m.sum()),
                w=im["width"],
                h=im["height"],
            )

    def resolve(self, image_id: int, tokens: list[str]) -> list[int]:
        """The annotations a listener would pick for ``tokens``: filter by colour and shape words,
        then take the extreme one for each size / position word."""
        cands = list(self.by_image[image_id])
        for t in tokens:
            if t in REFCOCO_COLOURS:
                cands = [a for a in cands if self.info[a]["colour"] == t]
            if t in SHAPE_OF_WORD:
                cands = [a for a in cands if self.info[a]["shape"] == SHAPE_OF_WORD[t]]
        if not cands:
            return cands
        key = {
            "left": lambda a: self.info[a]["cx"],
            "right": lambda a: -self.info[a]["cx"],
            "top": lambda a: self.info[a]["cy"],
            "bottom": lambda a: -self.info[a]["cy"],
            "big": lambda a: -self.info[a]["area"],
            "large": lambda a: -self.info[a]["area"],
            "small": lambda a: self.info[a]["area"],
        }
        for t in tokens:
            if t in key:
                cands = [min(cands, key=key[t])]
        return cands


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def refroot(tmp_path_factory) -> Path:
    """refcoco (unc, 24 images) and refcocog (umd, 12 images) under one refer root."""
    root = tmp_path_factory.mktemp("refer") / "data"
    t0 = time.perf_counter()
    out = generate_refcoco(root, "refcoco", num_images=24, seed=0)
    elapsed = time.perf_counter() - t0
    assert out == root and isinstance(out, Path)
    assert elapsed < 2.0, f"24 images took {elapsed:.2f} s"
    generate_refcoco(root, "refcocog", num_images=12, height=96, width=128, seed=1)
    return root


@pytest.fixture(scope="module")
def refcoco(refroot: Path):
    refs, instances = _load(refroot, "refcoco", "unc")
    return refs, instances, _Scene(refroot, instances)


# ---------------------------------------------------------------------------------------------
# layout and file formats
# ---------------------------------------------------------------------------------------------


def test_exact_paths(refroot: Path):
    assert (refroot / "refcoco" / "refs(unc).p").is_file()
    assert (refroot / "refcoco" / "instances.json").is_file()
    assert (refroot / "refcocog" / "refs(umd).p").is_file()
    assert (refroot / "refcocog" / "instances.json").is_file()
    assert not (refroot / "refcoco" / "refs(google).p").exists()
    assert not (refroot / "refcoco+").exists()
    jpgs = sorted((refroot / IMAGE_DIR).iterdir())
    assert len(jpgs) == 24 + 12
    for p in jpgs:
        assert re.fullmatch(r"COCO_train2014_\d{12}\.jpg", p.name), p.name
    with open(refroot / "refcoco" / "refs(unc).p", "rb") as fh:
        assert fh.read(2) == b"\x80\x02"  # pickle protocol 2, like the originals


def test_refs_pickle_structure(refcoco):
    refs, instances, _ = refcoco
    assert isinstance(refs, list) and len(refs) == len(instances["annotations"])
    assert len({r["ref_id"] for r in refs}) == len(refs)
    sent_ids = []
    for r in refs:
        assert isinstance(r, dict) and set(r) == REF_KEYS
        assert all(isinstance(r[k], int) for k in ("ref_id", "ann_id", "image_id", "category_id"))
        assert r["split"] in REFCOCO_SPLITS[("refcoco", "unc")]
        assert r["file_name"] == f"COCO_train2014_{r['image_id']:012d}_{r['ann_id']}.jpg"
        assert 1 <= len(r["sentences"]) <= 3
        assert r["sent_ids"] == [s["sent_id"] for s in r["sentences"]]
        for s in r["sentences"]:
            assert set(s) == SENT_KEYS
            assert s["tokens"] == s["sent"].split() and s["tokens"]
            assert s["raw"].lower().split() == s["tokens"]
        assert len({s["sent"] for s in r["sentences"]}) == len(r["sentences"])
        sent_ids += r["sent_ids"]
    assert len(set(sent_ids)) == len(sent_ids)


def test_instances_and_images(refroot: Path, refcoco):
    refs, instances, _ = refcoco
    assert {"images", "annotations", "categories"} <= set(instances)
    images = {im["id"]: im for im in instances["images"]}
    anns = {a["id"]: a for a in instances["annotations"]}
    cats = {c["id"]: c for c in instances["categories"]}
    assert len(images) == 24 and len(anns) == len(instances["annotations"])
    assert set(REFCOCO_SHAPE_CATEGORY.values()) <= set(cats)
    for c in cats.values():
        assert set(c) >= {"id", "name", "supercategory"}
    for im in images.values():
        assert im["file_name"] == f"COCO_train2014_{im['id']:012d}.jpg"
        with Image.open(refroot / IMAGE_DIR / im["file_name"]) as pic:
            assert pic.format == "JPEG" and pic.mode == "RGB"
            assert pic.size == (im["width"], im["height"])
        assert 0.8 * 160 <= im["height"] <= 1.2 * 160 and 0.8 * 200 <= im["width"] <= 1.2 * 200
    per_image = Counter(a["image_id"] for a in anns.values())
    assert set(per_image) == set(images) and set(per_image.values()) <= {2, 3, 4}
    for a in anns.values():
        assert set(a) >= {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"}
        assert a["category_id"] in cats and a["iscrowd"] == 0 and len(a["bbox"]) == 4
    assert Counter(r["ann_id"] for r in refs) == Counter(list(anns))  # one ref per annotation
    for r in refs:
        a = anns[r["ann_id"]]
        assert a["image_id"] == r["image_id"] and a["category_id"] == r["category_id"]
        assert (refroot / IMAGE_DIR / images[r["image_id"]]["file_name"]).is_file()


def test_segmentations_decode(refcoco):
    _, instances, _ = refcoco
    images = {im["id"]: im for im in instances["images"]}
    n_rect = n_rle = n_poly = 0
    for a in instances["annotations"]:
        im = images[a["image_id"]]
        h, w = im["height"], im["width"]
        seg = a["segmentation"]
        m = _decode(seg, h, w)
        assert m.shape == (h, w)
        if isinstance(seg, dict):
            n_rle += 1
            assert seg["size"] == [h, w] and isinstance(seg["counts"], str)
            assert m.max() == 1 and int(m.sum()) == a["area"]
            again = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
            assert again["counts"].decode() == seg["counts"]  # what pycocotools would write
        else:
            n_poly += 1
            assert all(len(p) >= 6 and len(p) % 2 == 0 for p in seg)
            assert abs(int((m > 0).sum()) - a["area"]) <= 0.03 * a["area"] + 2
            if len(seg) == 1 and len(seg[0]) == 8:
                x0, y0, x1, y0b, x1b, y1, x0b, y1b = seg[0]
                if (x0, x1, y0) == (x0b, x1b, y0b) and y1 == y1b and all(float(v).is_integer() for v in seg[0]):
                    n_rect += 1
                    assert int(m.sum()) == (x1 - x0) * (y1 - y0) == a["area"]
                    assert a["bbox"] == [x0, y0, x1 - x0, y1 - y0]
        ys, xs = np.nonzero(m)
        x, y, bw, bh = a["bbox"]
        assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1
        assert abs(xs.max() + 1 - (x + bw)) <= 1 and abs(ys.max() + 1 - (y + bh)) <= 1
    assert n_rect >= 3 and n_rle >= 3 and n_poly > n_rle


def test_split_and_overlapping_polygons(refroot: Path, refcoco):
    _, instances, _ = refcoco
    images = {im["id"]: im for im in instances["images"]}
    split = overlap = 0
    for a in instances["annotations"]:
        seg = a["segmentation"]
        if not isinstance(seg, list) or len(seg) < 2:
            continue
        im = images[a["image_id"]]
        parts = mask_api.decode(mask_api.frPyObjects(seg, im["height"], im["width"]))
        total = parts.sum(axis=2)
        if total.max() == 2:  # one object, two overlapping polygons: VPD turns the overlap into background
            overlap += 1
            (xa0, _, xa1, *_), (xb0, y0, xb1, _, _, y1, *_) = seg
            assert int((total == 2).sum()) == (min(xa1, xb1) - max(xa0, xb0)) * (y1 - y0) > 0
            assert int((total == 1).sum()) + int((total == 2).sum()) == a["area"]
        else:  # one object in two parts, split by an occluding pole
            split += 1
            assert total.max() == 1 and all(parts[..., k].any() for k in range(parts.shape[2]))
            pic = np.asarray(Image.open(refroot / IMAGE_DIR / im["file_name"])).astype(np.float64)
            (_, y0, xa1, *_), (xb0, *_) = seg
            gap = pic[int(y0) + 1 : int(a["bbox"][1] + a["bbox"][3]) - 1, int(xa1) : int(xb0)]
            assert gap.size and gap.mean() < 110  # the dark pole, not the object's colour
    assert split >= 1 and overlap >= 1


def test_splits(refroot: Path, refcoco):
    refs, _, _ = refcoco
    for dataset, split_by, n in (("refcoco", "unc", 24), ("refcocog", "umd", 12)):
        refs, _ = _load(refroot, dataset, split_by)
        names = REFCOCO_SPLITS[(dataset, split_by)]
        image_split: dict[int, str] = {}
        for r in refs:
            assert image_split.setdefault(r["image_id"], r["split"]) == r["split"]  # one split per image
        counts = Counter(image_split.values())
        assert set(counts) == set(names), counts
        assert counts["train"] > sum(v for k, v in counts.items() if k != "train")
        assert sum(counts.values()) == n


def test_split_by_google_adds_refs_only(tmp_path: Path):
    root = tmp_path / "refer"
    generate_refcoco(root, "refcoco", num_images=10, height=64, width=80)
    inst = _digest(root / "refcoco" / "instances.json")
    unc = _digest(root / "refcoco" / "refs(unc).p")
    generate_refcoco(root, "refcoco", "google", num_images=10, height=64, width=80)
    assert _digest(root / "refcoco" / "instances.json") == inst
    assert _digest(root / "refcoco" / "refs(unc).p") == unc
    refs_g, _ = _load(root, "refcoco", "google")
    refs_u, _ = _load(root, "refcoco", "unc")
    assert {r["split"] for r in refs_g} == {"train", "val", "test"}
    strip = [{k: v for k, v in r.items() if k != "split"} for r in refs_u]
    assert strip == [{k: v for k, v in r.items() if k != "split"} for r in refs_g]  # only splits differ
    before = _tree_digest(root)
    generate_refcoco(root, "refcoco", "unc", num_images=10, height=64, width=80)
    generate_refcoco(root, "refcoco", "google", num_images=10, height=64, width=80)
    assert _tree_digest(root) == before
    generate_refcoco(root, "refcocog", "google", num_images=3, height=64, width=80)
    refs, _ = _load(root, "refcocog", "google")
    assert {r["split"] for r in refs} == {"train", "val"}


def test_coexisting_datasets(refroot: Path):
    refs_c, inst_c = _load(refroot, "refcoco", "unc")
    refs_g, inst_g = _load(refroot, "refcocog", "umd")
    ids_c = {im["id"] for im in inst_c["images"]}
    ids_g = {im["id"] for im in inst_g["images"]}
    assert len(ids_g) == 12 and not ids_c & ids_g
    assert {r["image_id"] for r in refs_c} == ids_c and {r["image_id"] for r in refs_g} == ids_g
    for im in inst_g["images"]:
        with Image.open(refroot / IMAGE_DIR / im["file_name"]) as pic:
            assert pic.size == (im["width"], im["height"])
    assert all(len(s["tokens"]) >= 3 for r in refs_g for s in r["sentences"])  # RefCOCOg: longer sentences


def test_idempotent_and_deterministic(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate_refcoco(a, "refcoco+", num_images=6, height=64, width=80, seed=3)
    first = _tree_digest(a)
    mtimes = {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()}
    t0 = time.perf_counter()
    assert generate_refcoco(a, "refcoco+", num_images=6, height=64, width=80, seed=3) == a
    assert time.perf_counter() - t0 < 0.2
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()} == mtimes
    generate_refcoco(b, "refcoco+", num_images=6, height=64, width=80, seed=3)
    assert _tree_digest(b) == first
    # another seed: different data; the old images are replaced, not left behind
    generate_refcoco(b, "refcoco+", num_images=4, height=64, width=80, seed=4)
    assert len(list((b / IMAGE_DIR).iterdir())) == 4
    assert _digest(b / "refcoco+" / "instances.json") != first["refcoco+/instances.json"]
    # an incomplete data set (a deleted image) is regenerated
    victim = next((a / IMAGE_DIR).iterdir())
    victim.unlink()
    generate_refcoco(a, "refcoco+", num_images=6, height=64, width=80, seed=3)
    assert _tree_digest(a) == first


def test_refuses_foreign_data(tmp_path: Path):
    (tmp_path / "refcoco").mkdir()
    (tmp_path / "refcoco" / "instances.json").write_text("{}")
    with pytest.raises(FileExistsError):
        generate_refcoco(tmp_path, "refcoco", num_images=2)
    assert (tmp_path / "refcoco" / "instances.json").read_text() == "{}"


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        (dict(dataset="refclef"), "dataset"),
        (dict(dataset=None), "dataset"),
        (dict(dataset="refcoco", split_by="umd"), "split_by"),
        (dict(dataset="refcoco+", split_by="google"), "split_by"),
        (dict(dataset="refcocog", split_by="unc"), "split_by"),
        (dict(num_images=0), "num_images"),
        (dict(num_images=True), "num_images"),
        (dict(num_images=2.0), "num_images"),
        (dict(height=16), "height"),
        (dict(width="200"), "width"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_args(tmp_path: Path, kwargs: dict, option: str):
    with pytest.raises(ValueError, match=option):
        generate_refcoco(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# content: the sentences are grounded in the pictures
# ---------------------------------------------------------------------------------------------


def test_sentences_grounded(refcoco):
    refs, _, scene = refcoco
    n_colour = n_position = n_shape_only = 0
    for im_id, ann_ids in scene.by_image.items():  # distinct colours within an image, as seen in the pixels
        colours = [scene.info[a]["colour"] for a in ann_ids]
        assert len(set(colours)) == len(colours), (im_id, colours)
    for r in refs:
        info = scene.info[r["ann_id"]]
        for s in r["sentences"]:
            toks = s["tokens"]
            named = [t for t in toks if t in REFCOCO_COLOURS]
            if named:
                n_colour += 1
                assert named == [info["colour"]], (s["sent"], info)  # the mask's mean RGB is that colour
            for t in toks:
                if t in SHAPE_OF_WORD:
                    assert SHAPE_OF_WORD[t] == info["shape"], s["sent"]
            if "left" in toks:
                assert info["cx"] < info["w"] / 2, s["sent"]
            if "right" in toks:
                assert info["cx"] > info["w"] / 2, s["sent"]
            if "top" in toks:
                assert info["cy"] < info["h"] / 2, s["sent"]
            if "bottom" in toks:
                assert info["cy"] > info["h"] / 2, s["sent"]
            n_position += any(t in POSITION_WORDS for t in toks)
            n_shape_only += not named and any(t in SHAPE_OF_WORD for t in toks)
            assert scene.resolve(r["image_id"], toks) == [r["ann_id"]], s["sent"]  # unambiguous
    assert n_colour >= 40 and n_position >= 10 and n_shape_only >= 5


def test_refcoco_plus_has_no_location_words(tmp_path: Path):
    generate_refcoco(tmp_path, "refcoco+", num_images=12, height=96, width=120, seed=2)
    refs, instances = _load(tmp_path, "refcoco+", "unc")
    scene = _Scene(tmp_path, instances)
    for r in refs:
        for s in r["sentences"]:
            assert not set(s["tokens"]) & set(POSITION_WORDS), s["sent"]
            assert scene.resolve(r["image_id"], s["tokens"]) == [r["ann_id"]], s["sent"]


def test_render_refcoco_image_pure():
    rgb, objects = render_refcoco_image(96, 128, np.random.default_rng(5))
    rgb2, objects2 = render_refcoco_image(96, 128, np.random.default_rng(5))
    assert rgb.shape == (96, 128, 3) and rgb.dtype == np.uint8 and np.array_equal(rgb, rgb2)
    assert [o["colour"] for o in objects] == [o["colour"] for o in objects2]
    assert 2 <= len(objects) <= 4 and len({o["colour"] for o in objects}) == len(objects)
    union = np.zeros((96, 128), int)
    for o in objects:
        assert o["shape"] in REFCOCO_SHAPE_CATEGORY and o["category_id"] == REFCOCO_SHAPE_CATEGORY[o["shape"]]
        assert o["mask"].shape == (96, 128) and o["mask"].dtype == bool and o["area"] == o["mask"].sum() > 20
        union += o["mask"]
    assert union.max() == 1  # objects do not overlap


def test_render_masks_match_pycocotools():
    rng = np.random.default_rng(11)
    kinds = Counter()
    for k in range(12):
        _, objects = render_refcoco_image(80, 100, rng, split_object=k % 2 == 0, overlap_object=k % 3 == 0)
        kinds.update(o["kind"] for o in objects)
        for o in objects:
            decoded = _decode(o["polygons"], 80, 100) > 0
            iou = (decoded & o["mask"]).sum() / (decoded | o["mask"]).sum()
            assert iou > 0.9, (o["shape"], iou)
            if o["shape"] in ("square", "rectangle"):
                assert np.array_equal(decoded, o["mask"])
    assert kinds["split"] >= 1 and kinds["overlap"] >= 1


def test_cli(tmp_path: Path, capsys):
    argv = ["refcoco", "--root", str(tmp_path), "--dataset", "refcocog", "--num-images", "3", "--height", "64"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)
    assert (tmp_path / "refcocog" / "refs(umd).p").is_file()
    with pytest.raises(SystemExit):
        main(["refcoco", "--root", str(tmp_path), "--dataset", "refcoco+", "--split-by", "umd"])
    assert "split_by" in capsys.readouterr().err
