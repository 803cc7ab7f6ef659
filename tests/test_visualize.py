"""Pictures: panel layout, colour maps, invalid pixels, mixed image sizes; the validation summary line."""

from __future__ import annotations

import logging

import numpy as np
import torch

from vpd_lightning.callbacks import ValidationSummary
from vpd_lightning.visualize import colorize, depth_panel, palette, referring_panel, segmentation_panel


def test_colorize_range_and_invalid():
    values = np.array([[0.0, 5.0, 10.0]])
    rgb = colorize(values, 0.0, 10.0, invalid=np.array([[False, False, True]]))
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0, 2].tolist() == [0, 0, 0]
    assert rgb[0, 0].tolist() != rgb[0, 1].tolist()  # different depths, different colours


def test_depth_panel_layout():
    images = [torch.rand(3, 16, 20) for _ in range(2)]
    targets = [torch.rand(1, 16, 20) * 5 for _ in range(2)]
    targets[0][0, 0, 0] = 0.0  # no ground truth: black in the ground-truth and error columns
    panel = depth_panel(images, targets, [t + 0.1 for t in targets])
    assert panel.size == (4 * 20, 2 * 16 + 16 + 22)
    px = np.asarray(panel)
    assert px[16, 20].tolist() == [0, 0, 0] and px[16, 60].tolist() == [0, 0, 0]
    expected_rgb = (images[1].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.array_equal(px[16 + 16 : 16 + 32, :20], expected_rgb)


def test_segmentation_and_referring_panels_with_mixed_sizes():
    names = ["wall", "floor", "bed "]
    images = [torch.rand(3, 32, 48), torch.rand(3, 40, 40)]
    labels = [torch.randint(0, 3, (32, 48)), torch.full((40, 40), 255)]
    panel = segmentation_panel(images, labels, labels, names)
    assert panel.width == 3 * round(48 * 128 / 32) and panel.height > 2 * 128
    assert palette(3).shape == (4, 3) and palette(3)[-1].tolist() == [0, 0, 0]
    masks = [torch.zeros(32, 48, dtype=torch.bool), torch.ones(40, 40, dtype=torch.bool)]
    panel = referring_panel(images, masks, masks, ["the left one", "all of it"])
    assert panel.width == 3 * round(48 * 128 / 32) and panel.height == 16 + 2 * (128 + 14)


def test_segmentation_legend_names_are_whole_and_fit(monkeypatch):
    """ADE20K's long names ("television receiver") are drawn whole, inside the picture, in equal columns."""
    from PIL import ImageDraw

    drawn = []
    original = ImageDraw.ImageDraw.text

    def record(self, xy, text, *args, **kwargs):
        drawn.append((xy, text, self.textlength(text)))
        return original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", record)
    names = ["wall", "television receiver", "chest of drawers", "sky", "floor"]
    images = [torch.rand(3, 32, 32), torch.rand(3, 32, 48)]
    labels = [torch.arange(5).repeat_interleave(7)[:32].repeat(32, 1).T.contiguous(), torch.zeros(32, 48).long()]
    panel = segmentation_panel(images, labels, labels, names)
    tile_w = round(48 * 128 / 32)
    assert panel.width == 3 * tile_w  # every row: three tiles of one width
    legend = {text: (xy, length) for xy, text, length in drawn if ":" in text}
    assert set(legend) == {f"{i}: {n}" for i, n in enumerate(names)}  # whole names, every class shown
    lefts = sorted({xy[0] for xy, _ in legend.values()})
    steps = {b - a for a, b in zip(lefts, lefts[1:], strict=False)}
    assert len(steps) <= 1  # equal columns
    for (x, _), length in legend.values():
        assert x + length <= panel.width
        assert not steps or length <= next(iter(steps)) - 14  # a name never runs into the next column
    # a name longer than the whole grid widens the picture instead of being cut
    long_names = ["wall", "a " * 60 + "very long class name"]
    panel = segmentation_panel(images[:1], [labels[1][:, :32]], [labels[1][:, :32] + 1], long_names)
    (x, _), length = [(xy, n) for xy, text, n in drawn if text.startswith("1: a a")][-1:][0]
    assert panel.width >= x + length > 3 * 128


def test_validation_summary_line(caplog):
    class FakeTrainer:
        sanity_checking = False
        current_epoch, global_step = 3, 120
        callback_metrics = {
            "val/rmse": torch.tensor(0.5),
            "val/d1": torch.tensor(0.75),
            "train/loss": torch.tensor(1.0),
        }

    with caplog.at_level(logging.INFO):
        ValidationSummary().on_validation_end(FakeTrainer(), None)
    assert "epoch 3 step 120 | val/d1 0.7500 | val/rmse 0.5000" in caplog.text
    assert "train/loss" not in caplog.text
