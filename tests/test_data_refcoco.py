"""RefCOCO / RefCOCO+ / G-Ref loading: mask decoding, the image/text pipeline, split conventions, bad input."""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from vpd_lightning.data.errors import DataFormatError, DatasetNotFoundError
from vpd_lightning.data.refcoco import (
    IMAGE_SUBDIR,
    REFER_SPLITS,
    RefCOCODataModule,
    RefCOCODataset,
    decode_mask,
)

H, W = 40, 50
SQUARE = [[10, 10, 20, 10, 20, 20, 10, 20]]  # 10 x 10 = 100 pixels, rows/cols 10..19
OVERLAP = [SQUARE[0], [15, 15, 25, 15, 25, 25, 15, 25]]  # 5 x 5 shared: sum==1 -> 150 pixels, union -> 175


def _rect() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[3:8, 4:11] = 1  # 35 pixels
    return m


def _compressed_rle(m: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(m: np.ndarray) -> dict:
    flat = m.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": [H, W], "counts": counts}


SEGMENTATIONS = [SQUARE, OVERLAP, _compressed_rle(_rect()), _uncompressed_rle(_rect())]
PIXELS_QUIRK = [100, 150, 35, 35]


def make_refer(root: Path, dataset: str = "refcoco", split_by: str = "unc", refs_per_split: int = 3, seed: int = 0):
    """Write a tiny REFER tree: ``refs_per_split`` refs per split, each on its own image, 1-3 sentences each.

    Ref ``n`` uses ``SEGMENTATIONS[n % 4]`` and has ``1 + n % 3`` sentences (sent_id ``10 n + j``).
    """
    rng = np.random.default_rng(seed)
    image_dir = root / IMAGE_SUBDIR
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, refs = [], [], []
    for split in REFER_SPLITS[dataset][split_by]:
        for _ in range(refs_per_split):
            n = len(refs)
            image_id, ann_id = 100 + n, 1000 + n
            file_name = f"COCO_train2014_{image_id:012d}.jpg"
            Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(image_dir / file_name)
            images.append({"id": image_id, "file_name": file_name, "height": H, "width": W})
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": SEGMENTATIONS[n % 4],
                    "bbox": [0, 0, 1, 1],
                    "area": 1.0,
                    "iscrowd": 0,
                }
            )
            sentences = []
            for j in range(1 + n % 3):
                text = f"the {split} thing number {n} way {j}"
                sentences.append({"sent": text, "raw": text, "tokens": text.split(), "sent_id": 10 * n + j})
            refs.append(
                {
                    "ref_id": n,
                    "ann_id": ann_id,
                    "image_id": image_id,
                    "category_id": 1,
                    "split": split,
                    "sentences": sentences,
                    "sent_ids": [s["sent_id"] for s in sentences],
                    "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
                }
            )
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    instances = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}
    (folder / "instances.json").write_text(json.dumps(instances))
    with open(folder / f"refs({split_by}).p", "wb") as f:
        pickle.dump(refs, f)
    return root


def edit_refs(root: Path, edit, dataset: str = "refcoco", split_by: str = "unc") -> None:
    path = root / dataset / f"refs({split_by}).p"
    refs = pickle.loads(path.read_bytes())
    edit(refs)
    path.write_bytes(pickle.dumps(refs))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A folder with ``tokenizer/``: the 514-token byte-level CLIP tokenizer (each byte one token)."""
    from vpd_lightning.backbone.tiny import write_byte_level_clip_tokenizer

    folder = tmp_path_factory.mktemp("tok")
    write_byte_level_clip_tokenizer(folder / "tokenizer")
    return folder


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from vpd_lightning.backbone.loading import load_tokenizer

    return load_tokenizer(str(tokenizer_dir))


@pytest.fixture(scope="module")
def refer_root(tmp_path_factory):
    return make_refer(tmp_path_factory.mktemp("refer"))


@pytest.fixture
def fresh_root(tmp_path):
    return make_refer(tmp_path / "refer", refs_per_split=2)


def _refs(root: Path, dataset: str = "refcoco", split_by: str = "unc") -> list[dict]:
    return pickle.loads((root / dataset / f"refs({split_by}).p").read_bytes())


# ------------------------------------------------------------------------------------------------ decode_mask


def test_decode_polygon_square():
    m = decode_mask(SQUARE, H, W)
    assert m.dtype == np.uint8 and m.shape == (H, W)
    assert m.sum() == 100
    rows, cols = np.nonzero(m)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (10, 19, 10, 19)


def test_decode_overlapping_polygons_quirk_and_union():
    quirk = decode_mask(OVERLAP, H, W, overlap_quirk=True)
    union = decode_mask(OVERLAP, H, W, overlap_quirk=False)
    assert quirk.sum() == 150 and union.sum() == 175
    assert quirk[15:20, 15:20].sum() == 0 and union[15:20, 15:20].all()  # the shared 5x5 block
    assert set(np.unique(quirk)) == {0, 1} and set(np.unique(union)) == {0, 1}


def test_decode_rle_compressed_and_uncompressed():
    rect = _rect()
    compressed = _compressed_rle(rect)
    for seg in (compressed, {**compressed, "counts": compressed["counts"].encode()}, _uncompressed_rle(rect)):
        m = decode_mask(seg, H, W)
        assert m.shape == (H, W) and m.dtype == np.uint8
        assert m.sum() == 35 and np.array_equal(m, rect)
    both = decode_mask([compressed, _uncompressed_rle(rect)], H, W, overlap_quirk=False)  # list of RLEs
    assert np.array_equal(both, rect)


@pytest.mark.parametrize(
    "seg, match",
    [
        ([[1, 2, 3, 4]], "polygon 0 has 4 coordinates"),
        ([], "non-empty list"),
        ("abc", "non-empty list"),
        ({"size": [H, W + 1], "counts": "abc"}, "RLE size"),
        ({"size": [H, W], "counts": [5, 5]}, "sum to 10"),
        ({"counts": "abc"}, "needs 'counts' and 'size'"),
    ],
)
def test_decode_bad_segmentation(seg, match):
    with pytest.raises(DataFormatError, match=match):
        decode_mask(seg, H, W)


# ------------------------------------------------------------------------------------------------ samples


def test_sample_shapes_dtypes_and_values(refer_root, tokenizer):
    ds = RefCOCODataset(refer_root, split="val", tokenizer=tokenizer, image_size=64)
    assert not ds.train
    for index in range(len(ds)):
        s = ds[index]
        assert set(s) == {"image", "mask", "input_ids", "attention_mask", "sentence", "ref_id", "sent_id"}
        assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
        assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
        assert s["mask"].shape == (64, 64) and s["mask"].dtype == torch.int64
        assert set(s["mask"].unique().tolist()) == {0, 1}
        assert s["input_ids"].shape == (40,) and s["input_ids"].dtype == torch.int64
        assert s["attention_mask"].shape == (40,) and s["attention_mask"].dtype == torch.int64
        assert isinstance(s["sentence"], str) and isinstance(s["ref_id"], int) and isinstance(s["sent_id"], int)


def test_image_is_pil_bilinear_resize_and_mask_nearest(refer_root, tokenizer):
    ds = RefCOCODataset(refer_root, split="train", tokenizer=tokenizer, image_size=64, train=False)
    for index in range(len(ds)):
        s = ds[index]
        ref = next(r for r in _refs(refer_root) if r["ref_id"] == s["ref_id"])
        path = refer_root / IMAGE_SUBDIR / f"COCO_train2014_{ref['image_id']:012d}.jpg"
        expected = np.asarray(Image.open(path).convert("RGB").resize((64, 64), Image.BILINEAR)) / 255.0
        assert torch.allclose(s["image"], torch.from_numpy(expected).permute(2, 0, 1).float(), atol=1e-6)
        full = decode_mask(SEGMENTATIONS[ref["ref_id"] % 4], H, W)
        assert full.sum() == PIXELS_QUIRK[ref["ref_id"] % 4]
        nearest = np.asarray(Image.fromarray(full).resize((64, 64), Image.NEAREST))
        assert np.array_equal(s["mask"].numpy(), nearest)


def test_overlap_quirk_option_reaches_the_mask(refer_root, tokenizer):
    kwargs = {"split": "train", "tokenizer": tokenizer, "image_size": W, "train": False}
    quirk = RefCOCODataset(refer_root, **kwargs)
    union = RefCOCODataset(refer_root, overlap_quirk=False, **kwargs)
    index = next(i for i, (r, _) in enumerate(quirk.pairs) if quirk.items[r].ref_id % 4 == 1)  # OVERLAP ref
    assert union[index]["mask"].sum() > quirk[index]["mask"].sum()


def test_lengths_train_refs_eval_sentences(refer_root, tokenizer):
    refs = [r for r in _refs(refer_root) if r["split"] == "train"]
    train = RefCOCODataset(refer_root, split="train", tokenizer=tokenizer, image_size=32)
    evaluation = RefCOCODataset(refer_root, split="train", tokenizer=tokenizer, image_size=32, train=False)
    assert train.train and len(train) == len(refs) == 3
    assert len(evaluation) == sum(len(r["sentences"]) for r in refs) == evaluation.num_sentences == 6
    pairs = {(evaluation[i]["ref_id"], evaluation[i]["sent_id"]) for i in range(len(evaluation))}
    assert pairs == {(r["ref_id"], s["sent_id"]) for r in refs for s in r["sentences"]}


def test_train_item_draws_one_of_its_sentences(refer_root, tokenizer):
    ds = RefCOCODataset(refer_root, split="train", tokenizer=tokenizer, image_size=16)
    index = next(i for i, item in enumerate(ds.items) if len(item.sentences) == 3)
    ref = next(r for r in _refs(refer_root) if r["ref_id"] == ds.items[index].ref_id)
    by_id = {s["sent_id"]: s["sent"] for s in ref["sentences"]}
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        s = ds[index]
        assert s["ref_id"] == ref["ref_id"] and by_id[s["sent_id"]] == s["sentence"]
        seen.add(s["sentence"])
        torch.manual_seed(seed)
        assert ds[index]["sentence"] == s["sentence"]  # torch's RNG decides
    assert len(seen) > 1


# ------------------------------------------------------------------------------------------------ text


def test_tokens_match_the_tokenizer(refer_root, tokenizer):
    ds = RefCOCODataset(refer_root, split="val", tokenizer=tokenizer, image_size=16, max_tokens=40)
    s = ds[0]
    direct = tokenizer(s["sentence"], padding="max_length", truncation=True, max_length=40)
    assert s["input_ids"].tolist() == direct["input_ids"]
    assert s["attention_mask"].tolist() == direct["attention_mask"]
    n = len(tokenizer.tokenize(s["sentence"])) + 2
    assert s["attention_mask"].sum() == n and s["attention_mask"][:n].all()
    assert s["input_ids"][0] == tokenizer.bos_token_id and (s["input_ids"][n - 1 :] == tokenizer.eos_token_id).all()


def test_tokenizer_given_as_a_path_and_default_budget(refer_root, tokenizer_dir, tokenizer):
    ds = RefCOCODataset(refer_root, split="val", tokenizer=str(tokenizer_dir), image_size=16, max_tokens=None)
    assert len(ds.tokenizer) == 514 and ds.max_tokens == 40
    assert ds[0]["input_ids"].tolist() == tokenizer(ds[0]["sentence"], padding="max_length", max_length=40)["input_ids"]


def test_long_sentence_truncated_with_one_warning(fresh_root, tokenizer):
    long_text = "the very long description of the small red object on the left side of the table"

    def lengthen(refs):
        refs[0]["sentences"][0]["sent"] = long_text

    edit_refs(fresh_root, lengthen)
    ds = RefCOCODataset(fresh_root, split="train", tokenizer=tokenizer, image_size=16, train=False)
    with pytest.warns(UserWarning, match=r"ref 0 sentence 0: \d+ tokens exceed the budget of max_tokens=40"):
        s = ds[0]
    assert s["sentence"] == long_text
    assert s["input_ids"].shape == (40,) and s["attention_mask"].all()
    direct = tokenizer(long_text, padding="max_length", truncation=True, max_length=40)
    assert s["input_ids"].tolist() == direct["input_ids"]
    assert s["input_ids"][-1] == tokenizer.eos_token_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds[0]  # the same sentence warns once only


# ------------------------------------------------------------------------------------------------ conventions


@pytest.mark.parametrize(
    "dataset, split_by",
    [("refcoco", "unc"), ("refcoco", "google"), ("refcoco+", "unc"), ("refcocog", "umd"), ("refcocog", "google")],
)
def test_split_conventions(tmp_path, tokenizer, dataset, split_by):
    root = make_refer(tmp_path, dataset, split_by, refs_per_split=1)
    splits = REFER_SPLITS[dataset][split_by]
    sentences = {r["split"]: len(r["sentences"]) for r in _refs(root, dataset, split_by)}  # one ref per split
    assert set(sentences) == set(splits)
    for split in splits:
        ds = RefCOCODataset(root, dataset, split_by, split, tokenizer=tokenizer, max_tokens=None, image_size=16)
        assert ds.train == (split == "train") and len(ds.items) == 1
        assert len(ds) == (1 if split == "train" else sentences[split])
        assert ds.max_tokens == (77 if dataset == "refcocog" else 40)
        assert ds[0]["input_ids"].shape == (ds.max_tokens,)
    wrong = "testA" if split_by != "unc" else "test"
    with pytest.raises(ValueError, match=f"must be one of {list(splits)}".replace("[", r"\[").replace("]", r"\]")):
        RefCOCODataset(root, dataset, split_by, wrong, tokenizer=tokenizer)


def test_split_names():
    assert REFER_SPLITS["refcoco"]["unc"] == ("train", "val", "testA", "testB")
    assert REFER_SPLITS["refcocog"]["umd"] == ("train", "val", "test")
    assert REFER_SPLITS["refcocog"]["google"] == ("train", "val")
    assert set(REFER_SPLITS["refcoco+"]) == {"unc"}


# ------------------------------------------------------------------------------------------------ datamodule


def test_datamodule_batches(refer_root, tokenizer_dir):
    dm = RefCOCODataModule(
        refer_root, tokenizer=str(tokenizer_dir), image_size=32, batch_size=2, eval_batch_size=4, num_workers=0
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["mask"].shape == (2, 32, 32)
    assert batch["input_ids"].shape == (2, 40) and batch["attention_mask"].dtype == torch.int64
    assert len(batch["sentence"]) == 2 and batch["ref_id"].dtype == torch.int64
    val = list(dm.val_dataloader())
    ids = [(r, s) for b in val for r, s in zip(b["ref_id"].tolist(), b["sent_id"].tolist())]
    assert ids == [(dm.val_set[i]["ref_id"], dm.val_set[i]["sent_id"]) for i in range(len(dm.val_set))]  # in order
    assert len(ids) == dm.val_set.num_sentences
    dm.setup("test")
    assert dm.test_set is dm.val_set  # test_split defaults to val
    assert next(iter(dm.test_dataloader()))["image"].shape[1:] == (3, 32, 32)


def test_datamodule_checks_root_and_splits(tmp_path, refer_root, tokenizer):
    with pytest.raises(DatasetNotFoundError, match="Expected layout"):
        RefCOCODataModule(tmp_path / "nowhere", tokenizer=tokenizer)
    with pytest.raises(DatasetNotFoundError, match="not set"):
        RefCOCODataModule("???", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="testA"):
        RefCOCODataModule(refer_root, tokenizer=tokenizer, test_split="test")


# ------------------------------------------------------------------------------------------------ bad input


def test_missing_root_and_files(tmp_path, fresh_root, tokenizer):
    with pytest.raises(DatasetNotFoundError, match="Expected layout"):
        RefCOCODataset(tmp_path / "missing", tokenizer=tokenizer)
    with pytest.raises(DatasetNotFoundError, match=r"refcoco\+"):
        RefCOCODataset(fresh_root, "refcoco+", tokenizer=tokenizer)  # no refcoco+/ folder
    with pytest.raises(DatasetNotFoundError, match=r"refs\(google\)\.p"):
        RefCOCODataset(fresh_root, "refcoco", "google", tokenizer=tokenizer)
    (fresh_root / "refcoco" / "instances.json").unlink()
    with pytest.raises(DatasetNotFoundError, match="instances.json"):
        RefCOCODataset(fresh_root, tokenizer=tokenizer)


def test_bad_choices(fresh_root, tokenizer):
    with pytest.raises(ValueError, match=r"refcoco\+.*refcocog"):
        RefCOCODataset(fresh_root, "refclef", tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"\['umd'\]|'google', 'umd'"):
        RefCOCODataset(fresh_root, "refcocog", "unc", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="testA"):
        RefCOCODataset(fresh_root, split="training", tokenizer=tokenizer)


def test_missing_annotation(fresh_root, tokenizer):
    edit_refs(fresh_root, lambda refs: refs[1].update(ann_id=999999))
    with pytest.raises(DataFormatError, match="ref 1 refers to annotation 999999"):
        RefCOCODataset(fresh_root, tokenizer=tokenizer)


def test_missing_image_entry(fresh_root, tokenizer):
    edit_refs(fresh_root, lambda refs: refs[0].update(image_id=424242))
    with pytest.raises(DataFormatError, match="ref 0 is on image 424242"):
        RefCOCODataset(fresh_root, tokenizer=tokenizer)


def test_missing_image_file(fresh_root, tokenizer):
    path = fresh_root / IMAGE_SUBDIR / "COCO_train2014_000000000101.jpg"
    path.unlink()
    with pytest.raises(DataFormatError, match=re.escape(str(path))):
        RefCOCODataset(fresh_root, tokenizer=tokenizer)
    RefCOCODataset(fresh_root, split="val", tokenizer=tokenizer)  # other splits still load


def test_unreadable_image(fresh_root, tokenizer):
    path = fresh_root / IMAGE_SUBDIR / "COCO_train2014_000000000100.jpg"
    ds = RefCOCODataset(fresh_root, tokenizer=tokenizer, image_size=16)
    path.write_bytes(b"not a jpeg")
    with pytest.raises(DataFormatError, match="cannot read the image"):
        ds[0]


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_sentence(fresh_root, tokenizer, text):
    edit_refs(fresh_root, lambda refs: refs[1]["sentences"][1].update(sent=text))
    with pytest.raises(DataFormatError, match="ref 1 sentence 11 is empty"):
        RefCOCODataset(fresh_root, tokenizer=tokenizer)


def test_split_without_refs(fresh_root, tokenizer):
    edit_refs(fresh_root, lambda refs: [r.update(split="train") for r in refs if r["split"] == "testB"])
    with pytest.raises(DataFormatError, match="no refs in split 'testB'"):
        RefCOCODataset(fresh_root, split="testB", tokenizer=tokenizer)


def test_bad_segmentation_named_at_load(fresh_root, tokenizer):
    instances_path = fresh_root / "refcoco" / "instances.json"
    instances = json.loads(instances_path.read_text())
    instances["annotations"][0]["segmentation"] = [[1, 2, 3]]
    instances_path.write_text(json.dumps(instances))
    ds = RefCOCODataset(fresh_root, tokenizer=tokenizer, image_size=16)
    with pytest.raises(DataFormatError, match=r"annotation 1000 \(ref 0\)"):
        ds[0]


# ------------------------------------------------------------------------------------------------ generator


def test_reads_generated_refcoco(tmp_path, tokenizer):
    from vpd_lightning.data import generate

    if not hasattr(generate, "generate_refcoco"):
        pytest.skip("generate_refcoco is not there yet")
    generate.generate_refcoco(tmp_path, dataset="refcoco", split_by=None, num_images=8, height=48, width=64, seed=0)
    for split in ("train", "val"):
        ds = RefCOCODataset(tmp_path, split=split, tokenizer=tokenizer, image_size=32)
        s = ds[0]
        assert s["image"].shape == (3, 32, 32) and s["mask"].shape == (32, 32)
