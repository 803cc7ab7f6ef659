"""Experiment management: W&B (offline), TensorBoard and on-disk panels, throughput and learning rates."""

from __future__ import annotations

import csv
import glob
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_config import make_cfg, tiny_task, wandb_run_bytes


def short_fit(task: str, root, tiny_sd_dir, tmp_path) -> list[str]:
    """Two training steps of batch 2, then one validation batch (where the panels are drawn); no test."""
    return [
        *tiny_task(task, root, tiny_sd_dir, tmp_path),
        "trainer=cpu",
        "data.batch_size=2",
        f"paths.output_dir={tmp_path / 'out'}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        "test=false",
    ]


def test_wandb_offline_run_holds_config_metrics_panels_and_table(ade_root, tiny_sd_dir, tmp_path, monkeypatch):
    from vpd_lightning.train import _finish_wandb, train

    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # artifact staging, not under $HOME
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    # offline through WANDB_MODE=offline (conftest): WandbLogger refuses log_model with offline=true
    overrides = ["logger=wandb", "logger.wandb.log_model=all"]
    cfg = make_cfg([*short_fit("segmentation", ade_root, tiny_sd_dir, tmp_path), *overrides])
    try:
        metrics, objects = train(cfg)
    finally:
        _finish_wandb(False)
    assert "train/images_per_s" in metrics and metrics["train/images_per_s"] > 0
    assert {"lr-AdamW/x0.1", "lr-AdamW/x1", "lr-AdamW/x1_no_wd"} <= set(metrics)
    runs = glob.glob(str(tmp_path / "out" / "wandb" / "offline-run-*"))
    assert len(runs) == 1
    run = Path(runs[0])
    keys = ("train/loss", "val/miou", "val/aacc", "lr-AdamW/x0.1", "train/images_per_s", "trainer/global_step")
    data = wandb_run_bytes(run, *(key.encode() for key in keys))
    for key in keys:
        assert key.encode() in data, key
    # the resolved config went in (keys and resolved values of the model and data groups)
    for key in (b"unet_lr_mult", b"class_embeddings", str(ade_root).encode()):
        assert key in data
    media = run / "files" / "media"
    predictions = sorted((media / "images" / "val").glob("predictions_*.png"))
    attention = sorted((media / "images" / "val").glob("attention_*.png"))
    assert len(predictions) == 1 and len(attention) == 1
    # image | ground truth | prediction columns over the validation image; attention: image + 1-4 class maps
    width, height = Image.open(predictions[0]).size
    assert width >= 3 * 64 and height > 64
    assert Image.open(attention[0]).size[0] >= 2 * 48
    table = next((media / "table" / "val").glob("per_class_iou_*.table.json"))
    import json

    content = json.loads(table.read_text())
    assert content["columns"] == ["class", "IoU", "Acc"] and len(content["data"]) == 150
    assert content["data"][0][0] == "wall"
    # log_model=all: the checkpoint went in as a W&B model artifact of this run
    run_id = run.name.rsplit("-", 1)[1]
    assert f"model-{run_id}".encode() in data and b"best-000.ckpt" in data


def test_panels_go_to_disk_without_an_image_logger(nyu_root, refer_root, tiny_sd_dir, tmp_path):
    from vpd_lightning.callbacks import PredictionPanels
    from vpd_lightning.train import train

    # depth: image | gt | prediction | error; no attention panel (one scene token: uniform maps)
    _, objects = train(make_cfg(short_fit("depth", nyu_root, tiny_sd_dir, tmp_path / "depth")))
    panels = [c for c in objects["trainer"].callbacks if isinstance(c, PredictionPanels)][0]
    names = sorted(p.name for p in panels.written)
    assert names == ["predictions_step0000002.png"]
    assert (tmp_path / "depth" / "out" / "panels" / names[0]).is_file()
    # 4 columns of 96 px (the 64x96 test images) + header and scale bars
    width, height = Image.open(panels.written[0]).size
    assert width == 4 * 96 and height > 64

    # referring: masks captioned with the sentence, and the maps of the sentence's first tokens
    _, objects = train(make_cfg(short_fit("referring", refer_root, tiny_sd_dir, tmp_path / "refer")))
    panels = [c for c in objects["trainer"].callbacks if isinstance(c, PredictionPanels)][0]
    assert sorted(p.name for p in panels.written) == ["attention_step0000002.png", "predictions_step0000002.png"]
    model = objects["model"]
    first = model.examples[0]
    n_words = int(first["attention_mask"].sum()) - 2 if first["attention_mask"] is not None else None
    drawn = model.example_panels()["attention"]
    assert drawn.size[1] == 2 * (128 + 14)  # two examples, one row each
    if n_words is not None:
        assert drawn.size[0] == 128 * (1 + min(n_words, 5))


def test_segmentation_per_class_table_on_disk_and_tensorboard(ade_root, tiny_sd_dir, tmp_path):
    pytest.importorskip("tensorboardX")
    from vpd_lightning.callbacks import PredictionPanels
    from vpd_lightning.train import train

    overrides = [*short_fit("segmentation", ade_root, tiny_sd_dir, tmp_path), "logger=tensorboard"]
    overrides += ["+callbacks.prediction_panels.to_disk=true"]
    _, objects = train(make_cfg(overrides))
    panels = [c for c in objects["trainer"].callbacks if isinstance(c, PredictionPanels)][0]
    table = [p for p in panels.written if p.suffix == ".csv"][0]
    rows = list(csv.reader(table.open()))
    assert rows[0] == ["class", "IoU", "Acc"] and len(rows) == 151
    model = objects["model"]
    assert [r[0] for r in rows[1:]] == [n for n, _, _ in model.per_class]
    ious = np.array([float(r[1]) for r in rows[1:]])
    expected = np.array([i for _, i, _ in model.per_class])
    assert np.allclose(ious, expected, atol=1e-4, equal_nan=True)
    events = glob.glob(str(tmp_path / "out" / "tensorboard" / "events.out.tfevents.*"))
    assert len(events) == 1
    data = Path(events[0]).read_bytes()
    for tag in (b"val/predictions", b"val/attention", b"val/per_class_iou", b"val/miou", b"train/images_per_s"):
        assert tag in data, tag


def test_images_per_second_counts_the_global_batch():
    from vpd_lightning.callbacks.throughput import ImagesPerSecond, _batch_size

    assert _batch_size({"image": torch.zeros(3, 3, 8, 8), "depth": torch.zeros(3, 1, 8, 8)}) == 3
    with pytest.raises(TypeError, match="batch size"):
        _batch_size({"x": 1})
    logged = {}

    class Module:
        def log(self, name, value, **kwargs):
            logged[name] = value

    class Trainer:
        world_size = 2

    cb, module, trainer = ImagesPerSecond(), Module(), Trainer()
    cb.on_train_epoch_start(trainer, module)
    cb.on_train_batch_end(trainer, module, None, {"image": torch.zeros(4, 3, 8, 8)}, 0)
    assert logged == {}  # the first batch only starts the clock
    cb._last -= 0.5  # as if the next batch took 0.5 s
    cb.on_train_batch_end(trainer, module, None, {"image": torch.zeros(4, 3, 8, 8)}, 1)
    assert logged["train/images_per_s"] == pytest.approx(8 / 0.5, rel=0.05)


def test_attention_panel_shapes_and_label_check():
    from vpd_lightning.visualize import attention_panel

    images = [torch.rand(3, 64, 96)]
    maps = [torch.softmax(torch.randn(3, 4, 6), dim=0)]
    out = attention_panel(images, maps, [["a", "b", "c"]])
    assert out.size == (4 * round(96 * 128 / 64), 128 + 14)
    with pytest.raises(ValueError, match="3 maps but 2 labels"):
        attention_panel(images, maps, [["a", "b"]])


def test_backbone_attention_maps_match_the_concatenated_features(tiny_sd_dir):
    from vpd_lightning.backbone import DiffusionBackbone

    backbone = DiffusionBackbone.from_pretrained(tiny_sd_dir, attention="a32").eval()
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    context = torch.randn(1, 5, backbone.context_dim)
    maps = backbone.attention_maps(image, context)
    assert sorted(maps) == sorted(backbone.attention_levels)
    features = backbone(image, context)
    for level, amap in maps.items():
        assert amap.shape == (1, 5, *features[level].shape[-2:])
        assert torch.allclose(amap.sum(1), torch.ones(1), atol=1e-5)  # probabilities over the 5 tokens
        assert torch.allclose(features[level][:, -5:], amap, atol=1e-6)
    assert backbone.record_attention is False and backbone.last_attention == {}


@pytest.mark.parametrize("task", ["depth", "segmentation"])
def test_bf16_mixed_precision_trains_and_validates(task, nyu_root, ade_root, tiny_sd_dir, tmp_path):
    """bf16-mixed (trainer=fsdp's default, an option elsewhere) through the attention capture and heads; on the
    CPU Lightning autocasts to bfloat16 just as on GPUs."""
    from vpd_lightning.train import train

    overrides = short_fit(task, nyu_root if task == "depth" else ade_root, tiny_sd_dir, tmp_path)
    metrics, objects = train(make_cfg([*overrides, "trainer.precision=bf16-mixed", "backbone.attention=a32"]))
    assert objects["trainer"].precision == "bf16-mixed"
    monitored = objects["model"].monitor
    assert monitored in metrics and metrics[monitored] == metrics[monitored]  # a number, not NaN
    assert all(p.dtype == torch.float32 for p in objects["model"].parameters())  # weights stay fp32
