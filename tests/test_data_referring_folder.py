"""The referring folder data set (JSON lines of image, sentence, mask PNG or polygon): loader, errors, fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_config import make_cfg, tiny_task

from vpd_lightning.data import DataFormatError, DatasetNotFoundError, ReferringFolderDataModule, ReferringFolderDataset
from vpd_lightning.data.generate_folders import generate_referring_folder


@pytest.fixture(scope="module")
def referring_root(tmp_path_factory):
    return generate_referring_folder(tmp_path_factory.mktemp("data") / "my_referring", 6, 2, 64, 64, seed=0)


@pytest.fixture(scope="module")
def tokenizer(tiny_sd_dir):
    from vpd_lightning.backbone.loading import load_tokenizer

    return load_tokenizer(tiny_sd_dir)


def test_mask_png_and_polygon_lines(referring_root, tokenizer):
    ds = ReferringFolderDataset(referring_root, "val", tokenizer=tokenizer, max_tokens=12, image_size=32)
    lines = [json.loads(x) for x in (referring_root / "val.jsonl").read_text().splitlines()]
    # evaluation: every sentence of every line (2 + 1 per picture)
    assert len(ds) == sum(len(x.get("sentences", [0])) for x in lines) == 6
    sample = ds[0]
    assert sample["sentence"] == lines[0]["sentences"][0] and sample["ref_id"] == 1 and sample["sent_id"] == 0
    png = np.asarray(Image.open(referring_root / lines[0]["mask"])) > 0
    expected = np.asarray(Image.fromarray(png.astype(np.uint8)).resize((32, 32), Image.Resampling.NEAREST))
    assert sample["mask"].shape == (32, 32) and np.array_equal(sample["mask"].numpy(), expected)
    assert sample["input_ids"].shape == (12,) and sample["image"].shape == (3, 32, 32)
    # the polygon line: its triangle rasterised (pycocotools), a few hundred pixels of the 64x64 image
    tri = ds._read_mask(ds.items[1])
    x = lines[1]["polygon"][0]
    area = 0.5 * abs((x[2] - x[0]) * (x[5] - x[1]) - (x[4] - x[0]) * (x[3] - x[1]))
    assert abs(int(tri.sum()) - area) < 0.25 * area  # rasterisation adds or drops border pixels
    assert ReferringFolderDataset(referring_root, "train", tokenizer=tokenizer, max_tokens=12).__len__() == 12


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"image": "images/0000.jpg", "mask": "masks/0000_0.png"}', "needs a non-empty 'sentence'"),
        ('{"image": "images/0000.jpg", "sentence": "x"}', "needs the object as 'mask'"),
        ('{"image": "images/nope.jpg", "sentence": "x", "mask": "masks/0000_0.png"}', "cannot read the image"),
        ('{"image": "images/0000.jpg", "sentence": "x", "mask": "masks/nope.png"}', "nope.png' does not exist"),
        ("not json", "not a JSON object"),
    ],
)
def test_bad_lines_are_named(referring_root, tmp_path, tokenizer, line, message):
    root = tmp_path / "bad"
    shutil.copytree(referring_root, root)
    (root / "val.jsonl").write_text(line + "\n")
    with pytest.raises(DataFormatError, match=message) as err:
        ReferringFolderDataset(root, "val", tokenizer=tokenizer)
    assert "val.jsonl:1" in str(err.value)


def test_mask_of_another_size(referring_root, tmp_path, tokenizer):
    root = tmp_path / "size"
    shutil.copytree(referring_root, root)
    Image.new("L", (10, 10)).save(root / "masks" / "0006_0.png")  # the first val picture's box
    ds = ReferringFolderDataset(root, "val", tokenizer=tokenizer, max_tokens=12)
    with pytest.raises(DataFormatError, match=r"0006_0.png: the mask must be a single-channel 64x64 PNG"):
        ds[0]


def test_missing_val_file(tmp_path, tokenizer):
    with pytest.raises(DatasetNotFoundError, match="val.jsonl' does not exist"):
        ReferringFolderDataModule(tmp_path, tokenizer=tokenizer)


def test_referring_folder_fit_then_evaluate(referring_root, tiny_sd_dir, tmp_path):
    from vpd_lightning.evaluate import evaluate
    from vpd_lightning.train import train

    overrides = [
        *tiny_task("referring", referring_root, tiny_sd_dir, tmp_path),
        "data=referring_folder",
        "data.image_size=32",
        "data.max_tokens=12",
        "data.batch_size=4",
        "data.eval_batch_size=4",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        f"paths.output_dir={tmp_path / 'out'}",
    ]
    metrics, objects = train(make_cfg(overrides))
    assert 0 <= metrics["test/oiou"] <= 1 and 0 <= metrics["test/miou"] <= 1
    best = Path(objects["trainer"].checkpoint_callback.best_model_path)
    evaluated = evaluate(make_cfg([*overrides, "train=false", f"ckpt_path={best}"]))
    assert evaluated["test/oiou"] == pytest.approx(metrics["test/oiou"], abs=1e-6)
