"""Pictures a person wants to look at: image | ground truth | prediction | error, with colour maps and scale bars."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__ = [
    "attention_panel",
    "colorize",
    "depth_panel",
    "depth_picture",
    "palette",
    "referring_panel",
    "segmentation_panel",
]


def _turbo(x: np.ndarray) -> np.ndarray:
    """Google's Turbo colour map (polynomial approximation), ``x`` in [0, 1] -> uint8 RGB."""
    x = np.clip(x, 0.0, 1.0)[..., None]
    powers = np.concatenate([np.ones_like(x), x, x**2, x**3, x**4, x**5], axis=-1)
    coeffs = np.array(
        [
            [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
            [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
            [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
        ]
    )
    rgb = powers @ coeffs.T
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def colorize(values: np.ndarray, vmin: float, vmax: float, invalid: np.ndarray | None = None) -> np.ndarray:
    """Map ``values`` to Turbo colours on ``[vmin, vmax]``; ``invalid`` pixels are black."""
    rgb = _turbo((values - vmin) / max(vmax - vmin, 1e-8))
    if invalid is not None:
        rgb[invalid] = 0
    return rgb


def depth_picture(depth: np.ndarray, vmin: float, vmax: float, unit: str = " m") -> Image.Image:
    """A depth map in Turbo colours on ``[vmin, vmax]`` with its scale bar underneath (at least 160 pixels
    wide so that the numbers fit; a narrower map is padded with white on the right)."""
    rgb = colorize(np.asarray(depth, dtype=np.float64), vmin, vmax)
    height, width = rgb.shape[:2]
    out = Image.new("RGB", (max(width, 160), height + 22), "white")
    out.paste(Image.fromarray(rgb), (0, 0))
    out.paste(_scale_bar(out.width, vmin, vmax, unit), (0, height))
    return out


def _scale_bar(width: int, vmin: float, vmax: float, unit: str) -> Image.Image:
    bar = Image.new("RGB", (width, 22), "white")
    ramp = colorize(np.linspace(vmin, vmax, max(width - 80, 2))[None].repeat(8, 0), vmin, vmax)
    bar.paste(Image.fromarray(ramp), (40, 2))
    draw = ImageDraw.Draw(bar)
    draw.text((2, 0), f"{vmin:.1f}", fill="black")
    draw.text((width - 38, 0), f"{vmax:.1f}{unit}", fill="black")
    return bar


def depth_panel(
    images: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    preds: Sequence[torch.Tensor],
    max_depth: float = 10.0,
    max_error: float | None = None,
) -> Image.Image:
    """Rows of RGB | ground truth | prediction | absolute error; depth in metres, 0 = no ground truth.

    Depth columns share one colour scale (0 to the largest ground-truth depth), the error column its own;
    both scales are drawn under the panel.
    """
    rows = []
    vmax_d = min(max(float(t.max()) for t in targets), max_depth)
    errors = [(p - t).abs() * (t > 0) for p, t in zip(preds, targets, strict=True)]
    vmax_e = max_error or max(float(e.max()) for e in errors) or 1.0
    for image, target, pred, err in zip(images, targets, preds, errors, strict=True):
        rgb = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
        gt = target.squeeze(0).numpy()
        tiles = [
            rgb,
            colorize(gt, 0, vmax_d, invalid=gt <= 0),
            colorize(pred.squeeze(0).numpy(), 0, vmax_d),
            colorize(err.squeeze(0).numpy(), 0, vmax_e, invalid=gt <= 0),
        ]
        rows.append(np.concatenate(tiles, axis=1))
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    w = grid.width // 4
    header = Image.new("RGB", (grid.width, 16), "white")
    draw = ImageDraw.Draw(header)
    for i, title in enumerate(["image", "ground truth", "prediction", "|error|"]):
        draw.text((i * w + 4, 2), title, fill="black")
    footer = Image.new("RGB", (grid.width, 22), "white")
    footer.paste(_scale_bar(2 * w, 0, vmax_d, " m"), (w, 0))
    footer.paste(_scale_bar(w, 0, vmax_e, " m"), (3 * w, 0))
    out = Image.new("RGB", (grid.width, grid.height + 38), "white")
    out.paste(header, (0, 0))
    out.paste(grid, (0, 16))
    out.paste(footer, (0, 16 + grid.height))
    return out


def palette(num_classes: int, seed: int = 3) -> np.ndarray:
    """A fixed, well-spread colour per class (uint8 ``[num_classes + 1, 3]``; the last row, for ignore, is black)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 256, size=(num_classes, 3), dtype=np.int64).astype(np.uint8)
    return np.concatenate([colours, np.zeros((1, 3), np.uint8)])


def _tile(tiles: list[np.ndarray], height: int = 128) -> list[np.ndarray]:
    """Scale images of different sizes to one height and pad them (white) to one width."""
    scaled = [
        np.asarray(Image.fromarray(t).resize((max(1, round(t.shape[1] * height / t.shape[0])), height), Image.NEAREST))
        for t in tiles
    ]
    width = max(t.shape[1] for t in scaled)
    return [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=255) for t in scaled]


def segmentation_panel(
    images: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    preds: Sequence[torch.Tensor],
    class_names: Sequence[str],
    ignore_index: int = 255,
    alpha: float = 0.6,
) -> Image.Image:
    """Rows of image | ground-truth overlay | prediction overlay, with a legend of the classes shown."""
    colours = palette(len(class_names))
    all_tiles, shown = [], set()
    for image, label, pred in zip(images, labels, preds, strict=True):
        rgb = image.permute(1, 2, 0).clamp(0, 1).numpy() * 255
        tiles = [rgb.astype(np.uint8)]
        for lab in (label, pred):
            lab = lab.numpy().astype(np.int64)
            idx = np.where(lab == ignore_index, len(class_names), lab)
            shown.update(np.unique(idx[idx < len(class_names)]).tolist())
            tiles.append((rgb * (1 - alpha) + colours[idx] * alpha).astype(np.uint8))
        all_tiles.extend(tiles)
    all_tiles = _tile(all_tiles)
    rows = [np.concatenate(all_tiles[i : i + 3], axis=1) for i in range(0, len(all_tiles), 3)]
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    entries = [(tuple(int(c) for c in colours[cls]), f"{cls}: {class_names[cls].strip()}") for cls in sorted(shown)]
    columns, col_w, legend_h = _legend_layout([text for _, text in entries], grid.width)
    out = Image.new("RGB", (max(grid.width, col_w), grid.height + 16 + legend_h), "white")
    draw = ImageDraw.Draw(out)
    w = grid.width // 3
    for i, title in enumerate(["image", "ground truth", "prediction"]):
        draw.text((i * w + 4, 2), title, fill="black")
    out.paste(grid, (0, 16))
    for k, (colour, text) in enumerate(entries):
        x, y = (k % columns) * col_w + 4, grid.height + 18 + 14 * (k // columns)
        draw.rectangle([x, y + 2, x + 10, y + 12], fill=colour)
        draw.text((x + 14, y), text, fill="black")
    return out


def _legend_layout(texts: Sequence[str], width: int) -> tuple[int, int, int]:
    """``(columns, column width, height)`` of a legend of swatches + names in equal columns across ``width``.

    Names are never cut: a column is as wide as the longest name (plus its swatch), and the picture is widened
    when even one column does not fit.
    """
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    col_w = 4 + 14 + max((round(measure.textlength(t)) for t in texts), default=0) + 8
    columns = max(1, width // col_w)
    return columns, col_w, 14 * -(-len(texts) // columns) + 4


def referring_panel(
    images: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    preds: Sequence[torch.Tensor],
    sentences: Sequence[str],
) -> Image.Image:
    """Rows of image | ground-truth mask | predicted mask (green overlays), each captioned with its sentence."""
    tiles = []
    for image, mask, pred in zip(images, masks, preds, strict=True):
        rgb = image.permute(1, 2, 0).clamp(0, 1).numpy() * 255
        tiles.append(rgb.astype(np.uint8))
        for m in (mask, pred):
            m = m.numpy().astype(bool)[..., None]
            tiles.append(np.where(m, rgb * 0.4 + np.array([0, 255, 0]) * 0.6, rgb * 0.6).astype(np.uint8))
    tiles = _tile(tiles)
    rows = [np.concatenate(tiles[i : i + 3], axis=1) for i in range(0, len(tiles), 3)]
    row_h = rows[0].shape[0] + 14
    out = Image.new("RGB", (rows[0].shape[1], 16 + row_h * len(rows)), "white")
    draw = ImageDraw.Draw(out)
    w = rows[0].shape[1] // 3
    for i, title in enumerate(["image", "ground truth", "prediction"]):
        draw.text((i * w + 4, 2), title, fill="black")
    for r, (row, sentence) in enumerate(zip(rows, sentences, strict=True)):
        y = 16 + r * row_h
        draw.text((4, y), f'"{sentence}"'[: row.shape[1] // 6], fill="black")
        out.paste(Image.fromarray(row), (0, y + 14))
    return out


def attention_panel(
    images: Sequence[torch.Tensor],
    maps: Sequence[torch.Tensor],
    labels: Sequence[Sequence[str]],
    alpha: float = 0.6,
) -> Image.Image:
    """Rows of image | one cross-attention map per token or class, each over the image and titled.

    Args:
        images: ``[3, H, W]`` in ``[0, 1]``.
        maps: per image, ``[K, h, w]`` attention probabilities (any resolution; upsampled to ``H x W``).
        labels: per image, the ``K`` titles (token or class name).
        alpha: weight of the colour map over the image.

    Each map is scaled to its own maximum (the value is printed in its title), so that where a token attends
    is visible even when the probability mass is spread over many tokens.
    """
    rows, titles = [], []
    for image, amap, names in zip(images, maps, labels, strict=True):
        if amap.shape[0] != len(names):
            raise ValueError(f"attention_panel: {amap.shape[0]} maps but {len(names)} labels")
        h, w = image.shape[-2:]
        rgb = image.permute(1, 2, 0).clamp(0, 1).float().numpy() * 255
        up = torch.nn.functional.interpolate(amap[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
        tiles, row_titles = [rgb.astype(np.uint8)], ["image"]
        for k, name in enumerate(names):
            m = up[k].numpy()
            peak = float(amap[k].max())
            tiles.append((rgb * (1 - alpha) + colorize(m, 0.0, max(peak, 1e-8)) * alpha).astype(np.uint8))
            row_titles.append(f"{name} (max {peak:.2f})")
        rows.append(_tile(tiles))
        titles.append(row_titles)
    width = max(sum(t.shape[1] for t in row) for row in rows)
    tile_w = rows[0][0].shape[1]
    row_h = rows[0][0].shape[0] + 14
    out = Image.new("RGB", (width, row_h * len(rows)), "white")
    draw = ImageDraw.Draw(out)
    for r, (row, row_titles) in enumerate(zip(rows, titles, strict=True)):
        x, y = 0, r * row_h
        for tile, title in zip(row, row_titles, strict=True):
            draw.text((x + 2, y), title[: max(tile.shape[1] // 6, 4)], fill="black")
            out.paste(Image.fromarray(tile), (x, y + 14))
            x += tile.shape[1]
    del tile_w
    return out
