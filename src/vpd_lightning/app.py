"""A web page to try trained models: ``python -m vpd_lightning.app ckpt_path=<model>`` (Gradio).

``ckpt_path`` is a checkpoint file, an exported folder or a hub id (``org/name``), or a list of them
(``ckpt_path=[depth.ckpt,export/ade20k]``); each is loaded once, and the page offers them by task and name. On
the page: upload or paste an image, choose the model (hence the task), type the sentence for referring
segmentation, and get

- depth: the depth colour map with its scale bar in metres, and the 16-bit depth PNG (millimetres) to download;
- segmentation: the label overlay with a legend of the classes present, and the label PNG (class index) to
  download;
- referring: the mask overlay (green), and the mask PNG (0/255) to download;

the same files as ``python -m vpd_lightning.predict`` writes. Problems with an input (a file that is not an
image, an empty sentence, an image above ``max_pixels``) are shown on the page; the server keeps running.
``host``/``port`` (default 127.0.0.1:7860, the next free port when taken); ``share=true`` asks Gradio for a
public link (needs network). Other keys of ``conf/predict.yaml`` apply too (``device``, ``dtype``, ``flip``,
``depth_range``, ``scene``). The page needs ``pip install gradio`` (extra ``vpd_lightning[app]``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vpd_lightning.config import hydra_main
from vpd_lightning.utils.errors import ConfigError, UserError, report_user_errors

__all__ = ["DEFAULT_MAX_PIXELS", "InputImageError", "ModelApp", "build_page", "label_overlay", "load_predictors"]

log = logging.getLogger(__name__)

#: Largest image (width x height) the page accepts by default.
DEFAULT_MAX_PIXELS = 4096 * 4096

_KINDS = {
    "depth": "depth colour map (scale in metres); download: 16-bit depth PNG, millimetres",
    "segmentation": "label overlay with legend; download: label PNG (class index)",
    "referring": "mask overlay; download: mask PNG (0/255)",
}


class InputImageError(UserError, ValueError):
    """An uploaded image that cannot be used (not an image, too large); shown on the page."""


def load_predictors(paths: str | os.PathLike | Sequence[str | os.PathLike], **options: Any) -> dict[str, Any]:
    """``{"<task>: <name>": Predictor}`` for each checkpoint file, exported folder or hub id in ``paths``.

    A path that is not a task model (not a checkpoint, not an exported folder) raises the loader's one-line
    :class:`vpd_lightning.export.CheckpointError` before the page starts.
    """
    from vpd_lightning.predict import Predictor

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ConfigError("app needs ckpt_path=<checkpoint, exported folder or hub id> (or a list [a,b])")
    predictors: dict[str, Any] = {}
    for path in paths:
        predictor = Predictor.from_pretrained(str(path), **options)
        label = f"{predictor.task}: {Path(str(path)).name or path}"
        while label in predictors:
            label += "'"
        predictors[label] = predictor
    return predictors


def label_overlay(
    image: np.ndarray, label: np.ndarray, class_names: Sequence[str] | None, num_classes: int
) -> Image.Image:
    """The image with its label map blended in (the palette of ``vpd_lightning.visualize``) and, underneath, a
    legend of the classes present (swatch, index and name)."""
    from vpd_lightning.visualize import _legend_layout, palette

    colours = palette(num_classes)
    blended = (image.astype(np.float32) * 0.5 + colours[label].astype(np.float32) * 0.5).round().astype(np.uint8)
    picture = Image.fromarray(blended)
    present = [int(c) for c in np.unique(label)]
    names = list(class_names or [])
    texts = [f"{c}: {names[c].strip() if c < len(names) else 'class ' + str(c)}" for c in present]
    columns, col_w, legend_h = _legend_layout(texts, picture.width)
    out = Image.new("RGB", (max(picture.width, col_w), picture.height + legend_h + 4), "white")
    out.paste(picture, (0, 0))
    draw = ImageDraw.Draw(out)
    for k, (cls, text) in enumerate(zip(present, texts, strict=True)):
        x, y = (k % columns) * col_w + 4, picture.height + 4 + 14 * (k // columns)
        draw.rectangle([x, y + 2, x + 10, y + 12], fill=tuple(int(v) for v in colours[cls]))
        draw.text((x + 14, y), text, fill="black")
    return out


class ModelApp:
    """What the page does, without the page: :meth:`run` takes the model label, an image file and a sentence
    and returns ``(picture, download file, status text)``; errors come back as the status text."""

    def __init__(self, predictors: dict[str, Any], max_pixels: int = DEFAULT_MAX_PIXELS, workdir: str | None = None):
        self.predictors = predictors
        self.max_pixels = int(max_pixels)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="vpd-app-"))
        self._count = 0

    def read_image(self, path: str | os.PathLike) -> np.ndarray:
        from vpd_lightning.predict import load_image

        name = Path(path).name
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Image.DecompressionBombError as err:
            raise InputImageError(f"'{name}' is too large to decode safely ({err})") from None
        except (OSError, ValueError) as err:
            raise InputImageError(f"'{name}' is not an image that can be decoded ({type(err).__name__})") from None
        if width * height > self.max_pixels:
            raise InputImageError(
                f"'{name}' is {width}x{height} = {width * height / 1e6:.1f} MP; this page takes at most "
                f"{self.max_pixels / 1e6:.1f} MP (max_pixels)"
            )
        try:
            return load_image(path)
        except (OSError, ValueError) as err:
            raise InputImageError(f"'{name}' could not be decoded: {err}") from None

    def run(self, label: str | None, image_path: str | None, sentence: str | None = None):
        try:
            return self._run(label, image_path, sentence)
        except Exception as err:  # noqa: BLE001 - every problem goes to the page, the server keeps serving
            if not isinstance(err, UserError):
                log.exception("prediction failed")
            return None, None, f"**Error:** {err}"

    def _run(self, label: str | None, image_path: str | None, sentence: str | None):
        from vpd_lightning.visualize import depth_picture

        if label not in self.predictors:
            raise ConfigError(f"choose a model: {', '.join(self.predictors)}")
        predictor = self.predictors[label]
        if not image_path:
            raise InputImageError("upload or paste an image first")
        image = self.read_image(image_path)
        task = predictor.task
        sentence = (sentence or "").strip()
        if task == "referring" and not sentence:
            raise InputImageError("referring segmentation needs a sentence naming the object (the sentence box)")
        start = time.perf_counter()
        result = predictor(image, sentence=sentence if task == "referring" else None)
        seconds = time.perf_counter() - start
        self._count += 1
        out = self.workdir / f"{self._count:05d}"
        out.mkdir(parents=True, exist_ok=True)
        stem = Path(image_path).stem or "image"
        if task == "depth":
            low, high = predictor.depth_range or (float(result.min()), float(result.max()))
            picture = depth_picture(result, low, high)
            download = out / f"{stem}_depth.png"
            Image.fromarray(np.clip(np.round(result * 1000.0), 0, 65535).astype(np.uint16)).save(download)
            summary = f"depth {float(result.min()):.2f} to {float(result.max()):.2f} m"
        elif task == "segmentation":
            classes = int(predictor.model.num_classes)
            picture = label_overlay(image, result, predictor.class_names, classes)
            download = out / f"{stem}_label.png"
            Image.fromarray(result.astype(np.uint8 if classes <= 256 else np.uint16)).save(download)
            summary = f"{len(np.unique(result))} classes present"
        else:
            green = np.where(result[..., None], np.array([0, 255, 0], np.uint8), image)
            picture = Image.fromarray((image * 0.4 + green * 0.6).round().astype(np.uint8))
            download = out / f"{stem}_mask.png"
            Image.fromarray(result.astype(np.uint8) * 255).save(download)
            summary = f'mask of "{sentence}": {100.0 * float(result.mean()):.1f} % of the image'
        picture.save(out / f"{stem}_view.png")
        h, w = image.shape[:2]
        status = f"**{task}** on {w}x{h} px in {seconds:.1f} s: {summary}. {_KINDS[task].split(';')[1].strip()}."
        return np.asarray(picture), str(download), status


def _image_input(gr):
    """gr.Image that hands over the uploaded file's path even when Gradio cannot decode it, so that
    :meth:`ModelApp.read_image` can say what is wrong on the page. (The method is replaced on the instance: a
    subclass of a Gradio component makes Gradio write a ``.pyi`` stub beside this module.)"""
    image = gr.Image(
        type="filepath",
        sources=["upload", "clipboard"],
        label="Image (upload or paste)",
        elem_id="vpd-input",
        height=320,
    )
    decode = image.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except Exception:  # noqa: BLE001 - reported by ModelApp.run
            return None if payload is None or payload.path is None else str(payload.path)

    image.preprocess = preprocess
    return image


def build_page(app: ModelApp):
    """The Gradio page (``gr.Blocks``) of ``app``."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    labels = list(app.predictors)
    tasks = sorted({p.task for p in app.predictors.values()})
    with gr.Blocks(title="VPD", analytics_enabled=False) as page:
        gr.Markdown(
            "# VPD: diffusion-model perception\n"
            + "\n".join(f"- **{label}**: {_KINDS[app.predictors[label].task]}" for label in labels)
        )
        with gr.Row():
            with gr.Column():
                model = gr.Dropdown(labels, value=labels[0], label="Model (task)", elem_id="vpd-model")
                image = _image_input(gr)
                sentence = gr.Textbox(
                    label="Sentence (referring segmentation)",
                    placeholder="the man on the left",
                    visible="referring" in tasks,
                    elem_id="vpd-sentence",
                )
                button = gr.Button("Run", variant="primary", elem_id="vpd-run")
            with gr.Column():
                picture = gr.Image(
                    label="Result", type="numpy", format="png", interactive=False, elem_id="vpd-output", height=320
                )
                download = gr.File(label="Download", interactive=False, elem_id="vpd-download")
                status = gr.Markdown("Upload an image and press Run.", elem_id="vpd-status")
        button.click(app.run, inputs=[model, image, sentence], outputs=[picture, download, status])
    return page


_SYSTEM_FONTS = (["ui-sans-serif", "system-ui", "sans-serif"], ["ui-monospace", "monospace"])


def serve(cfg) -> None:
    """Load the models of ``cfg.ckpt_path`` and serve the page until interrupted."""
    from omegaconf import OmegaConf

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.get("ckpt_path"):
        raise ConfigError("app needs ckpt_path=<checkpoint, exported folder or hub id> (or a list [a,b])")
    paths = cfg.ckpt_path
    paths = [str(p) for p in paths] if OmegaConf.is_list(paths) else [str(paths)]
    options = {k: cfg.get(k) for k in ("flip", "scene", "device", "depth_range", "dtype", "window_batch") if cfg.get(k)}
    if options.get("depth_range") is not None and OmegaConf.is_list(options["depth_range"]):
        options["depth_range"] = list(options["depth_range"])
    try:
        import gradio as gr
    except ImportError:
        raise ConfigError("the web page needs Gradio: pip install gradio (or vpd_lightning[app])") from None
    predictors = load_predictors(paths, **options)
    page = build_page(ModelApp(predictors, max_pixels=int(cfg.get("max_pixels") or DEFAULT_MAX_PIXELS)))
    theme = gr.themes.Default(font=_SYSTEM_FONTS[0], font_mono=_SYSTEM_FONTS[1])  # no web-font download
    page.launch(
        server_name=str(cfg.get("host") or "127.0.0.1"),
        server_port=cfg.get("port"),
        share=bool(cfg.get("share", False)),
        show_error=True,
        theme=theme,
    )


@hydra_main("app")
@report_user_errors
def main(cfg) -> None:
    serve(cfg)


if __name__ == "__main__":
    main()
