"""Prediction from checkpoints alone: Python API, file outputs, CLI, bad inputs (tiny models, 1 training step)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_config import make_cfg, tiny_task

from vpd_lightning.export import CheckpointError, WrongTaskError, load_checkpoint, load_model
from vpd_lightning.predict import (
    OutputNotWritableError,
    Predictor,
    depth_input_size,
    load_image,
    predict,
    predict_files,
    read_sentences,
    to_rgb_array,
)
from vpd_lightning.visualize import colorize, depth_picture

REPO = Path(__file__).resolve().parents[1]


def task_overrides(task: str, root: Path, tiny_sd_dir: Path, tmp: Path) -> list[str]:
    """Tiny training overrides of each task (as in test_train.py), one optimisation step, no test run."""
    extra = ["trainer.val_check_interval=1"] if task == "segmentation" else []
    return [
        *tiny_task(task, root, tiny_sd_dir, tmp),
        "trainer=cpu",
        "data.batch_size=2",
        f"paths.output_dir={tmp / 'out'}",
        "trainer.max_epochs=1",
        "trainer.max_steps=1",
        "trainer.limit_val_batches=1",
        "test=false",
        *extra,
    ]


def train_checkpoint(task: str, root: Path, tiny_sd_dir: Path, tmp: Path) -> Path:
    """A real checkpoint written by ``vpd_lightning.train`` (with its stored model description)."""
    from vpd_lightning.train import train

    train(make_cfg(task_overrides(task, root, tiny_sd_dir, tmp)))
    path = tmp / "out" / "checkpoints" / "last.ckpt"
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def checkpoints(task_checkpoints):
    """The session's three one-step checkpoints (``train_checkpoint`` of each task, tests/conftest.py)."""
    return task_checkpoints


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w, dtype=np.float64)[None, :, None] * np.ones((h, 1, 3))
    return np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def write_image_folder(folder: Path) -> dict[str, tuple[int, int]]:
    """PNG, JPEG, grayscale, RGBA and 16-bit images of different sizes, a corrupt PNG and a text file."""
    folder.mkdir(parents=True)
    Image.fromarray(_rgb(64, 96, 0)).save(folder / "rgb.png")
    Image.fromarray(_rgb(80, 60, 1)).save(folder / "portrait.jpg", quality=90)
    Image.fromarray(_rgb(50, 70, 2)[..., 0]).save(folder / "gray.png")
    rgba = np.concatenate([_rgb(64, 64, 3), np.full((64, 64, 1), 128, np.uint8)], axis=2)
    Image.fromarray(rgba).save(folder / "rgba.png")
    deep = (np.linspace(0, 65535, 40 * 130).reshape(40, 130)).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep16.png")  # 16-bit grayscale, 3.25:1
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20)
    (folder / "notes.txt").write_text("not an image")
    return {"rgb": (64, 96), "portrait": (80, 60), "gray": (50, 70), "rgba": (64, 64), "deep16": (40, 130)}


# ------------------------------------------------------------------------------------------------ units
def test_to_rgb_array_conversions():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_rgb_array(gray).shape == (3, 4, 3) and (to_rgb_array(gray)[..., 2] == gray).all()
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 7
    assert (to_rgb_array(rgba) == [200, 0, 0]).all()
    deep = np.array([[0, 65535]], np.uint16)
    assert to_rgb_array(deep)[0, :, 0].tolist() == [0, 255]
    assert to_rgb_array(Image.fromarray(deep))[0, :, 0].tolist() == [0, 255]  # PIL 16-bit mode
    assert to_rgb_array(np.array([[0.0, 1.0]]))[0, :, 0].tolist() == [0, 255]
    assert to_rgb_array(Image.fromarray(rgba, "RGBA").convert("LA")).shape == (2, 2, 3)
    palette = Image.fromarray(gray).convert("P")
    assert to_rgb_array(palette).shape == (3, 4, 3)
    with pytest.raises(ValueError, match="shape"):
        to_rgb_array(np.zeros((2, 2, 5)))


@pytest.mark.parametrize(("h", "w"), [(48, 48), (48, 80), (48, 150), (48, 333), (31, 47), (100, 40), (50, 51)])
def test_depth_input_size_keeps_the_aspect(h, w):
    crop = 48
    new_h, new_w, k = depth_input_size(h, w, crop, shift_size=2)
    assert min(new_h, new_w) == crop
    assert new_w == round(w * crop / min(h, w)) and new_h == round(h * crop / min(h, w))  # no rounding to windows
    assert k == (max(2, -(-new_w // new_h)) if new_w > new_h else 1)  # as many windows as cover the width
    # without input padding the model sees multiples of 8
    nh, nw, k = depth_input_size(h, w, 45, shift_size=2, input_padding=None)
    assert nh % 8 == 0 and (nw % 8 == 0 or nw > nh)


def test_load_image_applies_the_exif_orientation(tmp_path):
    """A phone photo stored landscape with EXIF Orientation 6 ("rotate 90° clockwise to view") is read upright."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = [255, 0, 0]  # left half red, right half blue, as stored
    stored[:, 20:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    Image.fromarray(stored).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    upright = load_image(tmp_path / "phone.jpg")
    assert upright.shape == (40, 20, 3)  # rotated: portrait
    # rotating 90° clockwise puts the stored left (red) half on top
    assert upright[5, 10, 0] > 200 and upright[5, 10, 2] < 60
    assert upright[35, 10, 2] > 200 and upright[35, 10, 0] < 60
    # without the tag nothing changes
    Image.fromarray(stored).save(tmp_path / "plain.jpg", quality=95)
    assert load_image(tmp_path / "plain.jpg").shape == (20, 40, 3)


def test_read_sentences(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"a.jpg": "the dog", "b.png": ["left cat", "right cat"]}))
    assert read_sentences(tmp_path / "s.json") == {"a.jpg": ["the dog"], "b.png": ["left cat", "right cat"]}
    (tmp_path / "l.json").write_text(
        json.dumps([{"image": "a.jpg", "sentence": "x"}, {"image": "a.jpg", "sentence": "y"}])
    )
    assert read_sentences(tmp_path / "l.json") == {"a.jpg": ["x", "y"]}
    (tmp_path / "s.csv").write_text('image,sentence\na.jpg,the dog\nb,"cat, on the left"\nb,big cat\n')
    assert read_sentences(tmp_path / "s.csv") == {"a.jpg": ["the dog"], "b": ["cat, on the left", "big cat"]}
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="bad.json"):
        read_sentences(tmp_path / "bad.json")


# ------------------------------------------------------------------------------------------------ depth
def test_depth_folder_outputs_and_values(checkpoints, tmp_path, capsys):
    sizes = write_image_folder(tmp_path / "in")
    predictor = Predictor.from_pretrained(checkpoints["depth"], batch_size=2)
    assert predictor.task == "depth" and predictor.crop_height == 48
    summary = predict_files(predictor, tmp_path / "in", tmp_path / "out", save_npy=True, progress=False)
    err = capsys.readouterr().err
    assert "broken.png" in err and "cannot decode" in err
    assert [Path(s["input"]).name for s in summary["skipped"]] == ["broken.png"]
    assert len(summary["written"]) == len(sizes)
    for name, (h, w) in sizes.items():
        png = Image.open(tmp_path / "out" / f"{name}_depth.png")
        depth_mm = np.asarray(png)
        assert depth_mm.dtype == np.uint16 and depth_mm.shape == (h, w), name
        colour = Image.open(tmp_path / "out" / f"{name}_depth_color.png")
        assert colour.mode == "RGB" and colour.size == (max(w, 160), h + 22)  # the map, its scale bar below
        npy = np.load(tmp_path / "out" / f"{name}_depth.npy")
        assert npy.dtype == np.float32 and npy.shape == (h, w)
        # one fixed colour range for every image: 0 to the model's max_depth (10 m), not the image's own
        assert np.array_equal(np.asarray(colour)[:h, :w], colorize(npy.astype(np.float64), 0.0, 10.0))
        assert np.abs(depth_mm / 1000.0 - npy).max() <= 0.0005 + 1e-6
    assert json.loads((tmp_path / "out" / "predictions.json").read_text())["skipped"][0]["input"].endswith("broken.png")
    # the written depth equals the API's prediction for the same file (within 1 mm)
    api = Predictor.from_pretrained(checkpoints["depth"])("%s" % (tmp_path / "in" / "portrait.jpg"))
    png = np.asarray(Image.open(tmp_path / "out" / "portrait_depth.png")).astype(np.float64) / 1000.0
    assert api.shape == (80, 60) and np.abs(png - api).max() <= 0.001


def test_depth_colour_range_option(checkpoints, tmp_path):
    """depth_range=[min, max] fixes the colours and the scale bar's numbers; auto uses each image's range."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_rgb(48, 64, 4)).save(folder / "a.png")
    model = load_checkpoint(checkpoints["depth"])
    for option, expected in [([1.0, 3.0], (1.0, 3.0)), ("auto", None)]:
        out = tmp_path / f"out-{expected}"
        predict_files(Predictor(model, depth_range=option), folder, out, save_npy=True, progress=False)
        depth = np.load(out / "a_depth.npy").astype(np.float64)
        low, high = expected or (float(depth.min()), float(depth.max()))
        picture = Image.open(out / "a_depth_color.png")
        assert np.array_equal(np.asarray(picture), np.asarray(depth_picture(depth, low, high)))
    for bad in ([3.0, 1.0], [1.0], "wide"):
        with pytest.raises(ValueError, match="depth_range"):
            Predictor(model, depth_range=bad)


def test_depth_api_is_the_task_protocol(checkpoints):
    """At the training crop height no resize happens: the API gives exactly ``predict_depth`` (2 windows + flips)."""
    model = load_checkpoint(checkpoints["depth"])
    predictor = Predictor(model, scene="kitchen")
    image = _rgb(48, 80, 5)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    kitchen = model.vpd_config["class_names"].index("kitchen")
    expected = model.predict_depth(x, torch.tensor([kitchen]))[0, 0].numpy()
    assert np.abs(predictor(image) - expected).max() < 1e-6
    # the default prompt is the mean scene embedding; the model's buffer is left as it was
    mean_pred = Predictor(model)(Image.fromarray(image))
    assert mean_pred.shape == (48, 80) and model.class_embeddings.shape[0] == 27
    assert model.hparams.shift_size == 2 and model.hparams.flip_test is True
    with pytest.raises(ValueError, match="unknown scene"):
        Predictor(model, scene="spaceship")


def test_depth_wide_image_is_the_task_protocol(checkpoints):
    """An image more than two windows wide is predicted by the task's own protocol at its own width (no
    rounding of the width to whole windows in predict), with every column finite."""
    model = load_checkpoint(checkpoints["depth"])
    image = _rgb(48, 201, 7)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    count = model.class_embeddings.shape[0]
    with torch.no_grad():
        expected = model.predict_depth(x, torch.tensor([0]))[0, 0].numpy()
    got = Predictor(model, scene=0)(image)
    assert got.shape == (48, 201) and np.isfinite(got).all()
    assert np.abs(got - expected).max() < 1e-6
    assert model.class_embeddings.shape[0] == count


# ------------------------------------------------------------------------------------------------ segmentation
def test_segmentation_labels_are_the_argmax_of_predict_logits(checkpoints, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_rgb(40, 72, 0)).save(folder / "a.png")
    Image.fromarray(_rgb(40, 72, 1)).save(folder / "b.png")  # same size as a: one batch
    Image.fromarray(_rgb(90, 56, 2)[..., 1]).save(folder / "c.png")  # grayscale, its own size
    # same stem as c.png: c.jpg sorts first and is written as c, c.png as c_png
    Image.fromarray(_rgb(88, 60, 3)).save(folder / "c.jpg")
    predictor = Predictor.from_pretrained(checkpoints["segmentation"], batch_size=2)
    summary = predict_files(predictor, str(folder / "*"), tmp_path / "out", progress=False)
    assert not summary["skipped"] and len(summary["written"]) == 4
    model = predictor.model
    for name, source in [("a", "a.png"), ("c", "c.jpg"), ("c_png", "c.png")]:
        label = Image.open(tmp_path / "out" / f"{name}_label.png")
        assert label.mode == "L"
        label = np.asarray(label)
        image = to_rgb_array(folder / source)
        assert label.shape == image.shape[:2] and label.dtype == np.uint8
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        expected = model.predict_logits(x).argmax(dim=1)[0].numpy()
        if name == "a":  # predicted in a batch of two: same labels up to float ties
            assert (label == expected).mean() > 0.999
        else:
            assert (label == expected).all()
        assert Image.open(tmp_path / "out" / f"{name}_overlay.png").size == image.shape[1::-1]
    # an image whose full-size logits would exceed the bound is predicted at the test scale, labels upsampled
    small_budget = Predictor(model, max_logit_bytes=1000)(folder / "c.png")
    assert small_budget.shape == (90, 56) and small_budget.max() < model.num_classes
    # flip TTA on demand, the model's own setting restored afterwards
    flipped = Predictor(model, flip=True)(folder / "c.png")
    x = torch.from_numpy(to_rgb_array(folder / "c.png")).permute(2, 0, 1)[None].float() / 255.0
    model.hparams.test_flip = True
    try:
        expected = model.predict_logits(x).argmax(dim=1)[0].numpy()
    finally:
        model.hparams.test_flip = False
    assert (flipped == expected).all() and model.hparams.test_flip is False


# ------------------------------------------------------------------------------------------------ referring
def test_referring_sentences_file_and_masks(checkpoints, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_rgb(48, 80, 0)).save(folder / "one.png")
    Image.fromarray(_rgb(70, 50, 1)).save(folder / "two.jpg")
    Image.fromarray(_rgb(30, 30, 2)).save(folder / "three.png")  # no sentence: reported, skipped
    (tmp_path / "sentences.csv").write_text(
        "image,sentence\none.png,the red circle\none.png,blue square on the left\ntwo,the cat\n"
    )
    predictor = Predictor.from_pretrained(checkpoints["referring"], batch_size=2)
    assert predictor.image_size == 64 and predictor.max_tokens == 12
    summary = predict_files(predictor, folder, tmp_path / "out", sentences=tmp_path / "sentences.csv", progress=False)
    assert "three.png" in capsys.readouterr().err
    assert [s["sentence"] for s in summary["written"]] == ["the red circle", "blue square on the left", "the cat"]
    for name, (h, w) in [("one_0", (48, 80)), ("one_1", (48, 80)), ("two_0", (70, 50))]:
        mask = np.asarray(Image.open(tmp_path / "out" / f"{name}_mask.png"))
        assert mask.shape == (h, w) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert Image.open(tmp_path / "out" / f"{name}_overlay.png").size == (w, h)
    api = predictor(folder / "two.jpg", sentence="the cat")
    assert api.dtype == bool and (np.asarray(Image.open(tmp_path / "out" / "two_0_mask.png")) == api * 255).all()
    # squashed to the training size as in training, logits resized back
    model = predictor.model
    x = torch.from_numpy(np.array(Image.fromarray(_rgb(70, 50, 1)).resize((64, 64), Image.Resampling.BILINEAR)))
    tokens = predictor.tokenizer(["the cat"], padding="max_length", max_length=12, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(x.permute(2, 0, 1)[None].float() / 255.0, tokens.input_ids, tokens.attention_mask)
    logits = torch.nn.functional.interpolate(logits, size=(70, 50), mode="bilinear", align_corners=False)
    jpeg = predictor(to_rgb_array(folder / "two.jpg"), sentence="the cat")
    assert jpeg.shape == (70, 50)
    assert predictor(_rgb(70, 50, 1), sentence="the cat").tolist() == logits.argmax(1)[0].bool().tolist()
    with pytest.raises(ValueError, match="sentence"):
        predict_files(predictor, folder, tmp_path / "out2", progress=False)


# ------------------------------------------------------------------------------------------------ errors
def test_unwritable_output_folder(checkpoints, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    Image.fromarray(_rgb(48, 48, 0)).save(tmp_path / "x.png")
    predictor = Predictor.from_pretrained(checkpoints["depth"])
    with pytest.raises(OutputNotWritableError, match="file.txt"):
        predict_files(predictor, tmp_path / "x.png", blocker / "out", progress=False)
    cfg = make_cfg([f"ckpt_path={checkpoints['depth']}", f"input={tmp_path / 'x.png'}", f"output={blocker}"], "predict")
    with pytest.raises(OutputNotWritableError, match="not writable"):
        predict(cfg)


def test_wrong_task_corrupt_and_missing_checkpoints(checkpoints, tmp_path):
    with pytest.raises(WrongTaskError, match="holds a depth model.*task=segmentation"):
        load_model(checkpoints["depth"], task="segmentation")
    Image.fromarray(_rgb(48, 48, 0)).save(tmp_path / "x.png")
    cfg = make_cfg(
        ["task=referring", f"ckpt_path={checkpoints['segmentation']}", f"input={tmp_path}", f"output={tmp_path / 'o'}"],
        "predict",
    )
    with pytest.raises(WrongTaskError, match="segmentation"):
        predict(cfg)
    assert not (tmp_path / "o").exists()  # no empty output folder left behind
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(os.urandom(2000))
    with pytest.raises(CheckpointError, match="corrupt.ckpt"):
        load_model(corrupt)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoints["depth"].read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated.ckpt"):
        Predictor.from_pretrained(truncated)
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        load_model(tmp_path / "nowhere.ckpt")
    not_lightning = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(2)}, not_lightning)
    with pytest.raises(CheckpointError, match="plain.ckpt.*state_dict"):
        load_model(not_lightning)


def test_checkpoint_without_stored_config_uses_the_hydra_config(checkpoints, tmp_path, tiny_sd_dir, nyu_root):
    checkpoint = torch.load(checkpoints["depth"], map_location="cpu", weights_only=True)
    del checkpoint["vpd_config"]
    bare = tmp_path / "bare.ckpt"
    torch.save(checkpoint, bare)
    with pytest.raises(CheckpointError, match="stores no model configuration"):
        load_model(bare)
    overrides = [o for o in task_overrides("depth", nyu_root, tiny_sd_dir, tmp_path) if not o.startswith("trainer.")]
    cfg = make_cfg([*overrides, f"ckpt_path={bare}", "input=x", "output=y"], "predict")
    rebuilt = load_model(bare, cfg=cfg)
    image = _rgb(50, 70, 4)
    assert np.abs(Predictor(rebuilt)(image) - Predictor.from_pretrained(checkpoints["depth"])(image)).max() < 1e-6
    with pytest.raises(WrongTaskError):
        load_model(bare, cfg=make_cfg(["task=segmentation", "ckpt_path=x", "input=x", "output=y"], "predict"))


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_depth_folder(checkpoints, tmp_path):
    sizes = write_image_folder(tmp_path / "in")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vpd_lightning.predict",
            f"ckpt_path={checkpoints['depth']}",
            f"input={tmp_path / 'in'}",
            f"output={tmp_path / 'out'}",
            "scene=bedroom",
            "progress=false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "broken.png" in result.stderr
    assert f"predicted {len(sizes)} image(s)" in result.stdout
    for name, (h, w) in sizes.items():
        assert np.asarray(Image.open(tmp_path / "out" / f"{name}_depth.png")).shape == (h, w)
    # nothing but the predictions is written (no Hydra run folder, no log file)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]
