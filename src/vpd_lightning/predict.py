"""Prediction on images of any size, from a checkpoint or an exported folder, with no data set.

Command line (composes ``conf/predict.yaml``, i.e. the training config plus the keys below)::

    python -m vpd_lightning.predict ckpt_path=best.ckpt input=photos/ output=pred/
    python -m vpd_lightning.predict ckpt_path=export/ade20k input='photos/*.jpg' output=pred/ flip=true
    python -m vpd_lightning.predict ckpt_path=refcoco.ckpt input=a.jpg output=pred/ 'sentence="the man on the left"'
    python -m vpd_lightning.predict ckpt_path=refcoco.ckpt input=photos/ output=pred/ sentences=sentences.csv

``task=`` is optional: the checkpoint says which task it holds (a ``task=`` that disagrees is an error).
Python::

    from vpd_lightning.predict import Predictor

    predictor = Predictor.from_pretrained("best.ckpt")      # a checkpoint file, an exported folder or "org/name"
    depth = predictor("room.jpg")                           # path, PIL image or numpy array -> numpy

**Per task** (the input is RGB in ``[0, 1]``; grayscale, RGBA (alpha dropped), palette and 16-bit images are
converted first; image files are turned upright by their EXIF orientation, as viewers show them):

- depth: the image is resized (bilinear, aspect kept) so that its short side equals the training crop height,
  run through the task's ``predict_depth`` (square windows of the image height spread over the width, each with
  its flip, as VPD's test protocol; for very wide images more windows so they still cover the width) and the
  depth resized back to the input size. The scene prompt
  is ``scene=<class name or index>``; by default the mean of all scene embeddings ("some indoor scene").
  Output: ``<name>_depth.png`` (uint16, millimetres, ``round(depth * 1000)`` clipped to 0..65535),
  ``<name>_depth_color.png`` (Turbo colours with a scale bar in metres underneath, on one range for every image:
  ``depth_range=null`` 0 to the model's ``max_depth``, ``[min, max]`` in metres, or ``auto`` for each image's
  own range) and, with ``save_npy=true``,
  ``<name>_depth.npy`` (float32 metres).
- segmentation: the task's ``predict_logits`` on the original image (keep-ratio resize to the test scale, sliding
  windows, logits resized back), argmax. Output: ``<name>_label.png`` holding the raw predicted class index
  ``0..C-1`` (row of the class embeddings, i.e. the *reduced* label of a ``reduce_zero_label`` data set such as
  ADE20K: add 1 to get ADE20K's label ids; uint8, uint16 beyond 256 classes) and ``<name>_overlay.png``.
- referring: the image is squashed to the training size (as in training), the logits resized back to the input
  size (bilinear) and the argmax taken. The sentence comes from ``sentence=...`` or from a ``sentences=`` file
  mapping image file names to one or more sentences (JSON ``{"a.jpg": "the dog" | ["the dog", ...]}`` or
  ``[{"image": ..., "sentence": ...}]``; CSV rows ``image,sentence``, a header row optional; names match the file
  name or its stem). Output per (image, sentence k): ``<name>_<k>_mask.png`` (0/255) and
  ``<name>_<k>_overlay.png``. The tokenizer is the one stored in the checkpoint / exported folder.

``flip=true|false`` overrides the model's flip test-time augmentation (default: the model's own, i.e. on for
depth, off for segmentation); it does not apply to referring, where sentences may say "left" or "right".
Images of one size (depth and segmentation) or all images (referring) are predicted ``batch_size`` at a time.
A file that cannot be decoded is reported on stderr and skipped; ``predictions.json`` in the output folder lists
what was written and what was skipped.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from vpd_lightning.config import hydra_main
from vpd_lightning.export import load_model, requested_task, task_of, tokenizer_from_spec
from vpd_lightning.utils.errors import ConfigError, MissingFileError, UserError, report_user_errors

__all__ = [
    "IMAGE_EXTENSIONS",
    "NothingPredictedError",
    "OutputNotWritableError",
    "Predictor",
    "depth_input_size",
    "list_inputs",
    "load_image",
    "predict",
    "predict_files",
    "prepare_output",
    "read_sentences",
    "to_rgb_array",
]

log = logging.getLogger(__name__)

#: File name extensions taken from an input folder (a glob or a file name is taken as given).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"})

#: Default bound on the logits ``predict_logits`` holds at full input size ([B, C, H, W] float32).
MAX_LOGIT_BYTES = 1 << 30


class OutputNotWritableError(UserError, OSError):
    """The output folder cannot be created or written to; the message names it."""


def _report(message: str) -> None:
    """A line on stderr that does not break the progress bar."""
    try:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm comes with lightning
        print(message, file=sys.stderr)


# ------------------------------------------------------------------------------------------------- images
def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` from a gray / gray+alpha / RGB / RGBA array of any integer, bool or float type.

    uint8 is taken as is; uint16 (and other integer arrays with values above 255) is scaled from 0..65535;
    floats up to 1 are taken as ``[0, 1]``, larger ones as ``[0, 255]``.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] in (1, 2):  # gray, gray + alpha
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[..., :3]
    else:
        raise ValueError(f"an image array must be [H, W], [H, W, 1|2|3|4]; got shape {tuple(array.shape)}")
    if min(array.shape[:2]) < 1:
        raise ValueError(f"empty image of shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)
    if np.issubdtype(array.dtype, np.integer):
        peak = float(values.max(initial=0))
        if array.dtype == np.uint16 or peak > 255:
            values = values / (65535.0 if peak <= 65535 else peak) * 255.0
    elif np.issubdtype(array.dtype, np.floating):
        values = np.nan_to_num(values)
        if float(values.max(initial=0)) <= 1.0:
            values = values * 255.0
    else:
        raise ValueError(f"unsupported image array type {array.dtype}")
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def to_rgb_array(image: Any) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB from a file path, a PIL image or a numpy array (gray, RGBA, 16-bit ... converted)."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            return _array_to_rgb(np.asarray(image))
        if image.mode != "RGB":
            image = image.convert("RGBA" if "transparency" in image.info else image.mode).convert("RGB")
        return np.asarray(image, dtype=np.uint8).copy()
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4):  # [C, H, W]
            tensor = tensor.permute(1, 2, 0)
        return _array_to_rgb(tensor.numpy())
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise TypeError(f"an image must be a path, a PIL image or a numpy array, got {type(image).__name__}")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to ``uint8 [H, W, 3]`` RGB (first frame of multi-frame files), upright.

    Cameras and phones store the sensor's pixels and say in the EXIF ``Orientation`` tag how to turn them;
    every viewer applies it, so the photo a user sees is the turned one and the prediction must be too.
    """
    with Image.open(path) as image:
        image.load()
        return to_rgb_array(ImageOps.exif_transpose(image))


# -------------------------------------------------------------------------------------------------- sizes
def depth_input_size(
    height: int,
    width: int,
    crop_height: int,
    shift_size: int = 2,
    shift_window: bool = True,
    input_padding: int | None = 64,
) -> tuple[int, int, int]:
    """``(new_h, new_w, windows)``: the size a depth input is resized to and the number of shifted windows.

    The short side becomes ``crop_height`` (aspect kept). Without input padding the sides the model sees are
    multiples of 8 (for a landscape image with shifted windows, the height: the windows are square). ``windows``
    is how many square windows the model's ``predict_depth`` uses (``shift_size``, more for an image wider than
    they cover, see :func:`vpd_lightning.tasks.depth.shift_window_starts`), 1 without shifted windows.
    """
    from vpd_lightning.tasks.depth import shift_window_starts

    scale = crop_height / min(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    if input_padding is None:
        new_h = max(8, round(new_h / 8) * 8)
    windows = 1
    if shift_window and shift_size > 1 and new_w > new_h:
        windows = len(shift_window_starts(new_h, new_w, shift_size))
    elif input_padding is None:
        new_w = max(8, round(new_w / 8) * 8)
    return new_h, new_w, windows


def _resize_uint8(array: np.ndarray, height: int, width: int) -> np.ndarray:
    if array.shape[:2] == (height, width):
        return array
    return np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.BILINEAR))


def _tensor(arrays: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255.0)
    return batch.to(device)


@contextlib.contextmanager
def _hparams(model: torch.nn.Module, **values) -> Iterator[None]:
    """Temporarily set test-time hyper-parameters (``flip_test``, ``shift_size``, ``test_flip``)."""
    values = {k: v for k, v in values.items() if v is not None}
    saved = {k: model.hparams[k] for k in values}
    try:
        for k, v in values.items():
            model.hparams[k] = v
        yield
    finally:
        for k, v in saved.items():
            model.hparams[k] = v


@contextlib.contextmanager
def _mean_scene(model: torch.nn.Module, needed: bool) -> Iterator[None]:
    """Temporarily append the mean scene embedding as an extra row (the "unknown scene" prompt)."""
    if not needed:
        yield
        return
    original = model.class_embeddings
    model.class_embeddings = torch.cat([original, original.mean(dim=0, keepdim=True)])
    try:
        yield
    finally:
        model.class_embeddings = original


def _depth_range(value: Any, max_depth: float) -> tuple[float, float] | None:
    """The colour range of depth pictures (``None`` = each image's own); see :class:`Predictor`."""
    if value is None:
        return 0.0, max_depth
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not low < high:  # also false for nan
        raise ValueError(f"depth_range must be [min, max] in metres with min < max, or auto; got {value!r}")
    return low, high


# ---------------------------------------------------------------------------------------------- predictor
@dataclass
class _Item:
    image: np.ndarray  # uint8 [H, W, 3]
    sentence: str | None = None
    scene: int | None = None  # depth: class index, -1 = mean
    meta: dict = field(default_factory=dict)


class Predictor:
    """A task model ready for prediction on arbitrary images (see the module docstring for the protocol).

    Args:
        model: a task model (``vpd_config`` set when it comes from :func:`vpd_lightning.export.load_model`).
        tokenizer: referring: the CLIP tokenizer (default: the one stored in ``model.vpd_config``).
        flip: flip test-time augmentation; ``None`` keeps the model's setting (ignored for referring).
        scene: depth: the scene class (name or index) used as prompt; ``None`` = mean of all scene embeddings.
        batch_size: images (or image-sentence pairs) per forward.
        device: ``"cuda"``, ``"cpu"`` ...; default CUDA when available.
        crop_height: depth: short side the input is resized to (default: the training crop height stored with
            the model, else 480).
        image_size, max_tokens: referring: square input size and token budget (default: the stored ones).
        max_logit_bytes: segmentation: above this size of full-resolution logits, an image is first resized to
            the model's test scale and the labels are upsampled (nearest) to the input size.
        depth_range: depth: the colour range of ``<name>_depth_color.png`` in metres, ``(min, max)``; ``None``
            = 0 to the model's ``max_depth``, ``"auto"`` = each image's own minimum and maximum.
        dtype: ``"bf16"`` or ``"fp16"``: hold the weights in half precision (half the memory of the model) and
            compute under autocast to that type; ``None``/``"fp32"``: as trained. Outputs are float32 either way.
        window_batch: depth: run the test windows (and their flips) at most this many per forward instead of
            all at once, so peak memory no longer grows with the number of windows (same outputs).
        channels_last: run the convolutions in channels-last (NHWC) format (``backbone.channels_last``; with
            ``dtype="bf16"`` the fastest inference on CPUs with native bf16); ``None``: as trained.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        tokenizer=None,
        flip: bool | None = None,
        scene: str | int | None = None,
        batch_size: int = 4,
        device: str | torch.device | None = None,
        crop_height: int | None = None,
        image_size: int | None = None,
        max_tokens: int | None = None,
        max_logit_bytes: int = MAX_LOGIT_BYTES,
        depth_range: Sequence[float] | str | None = None,
        dtype: str | torch.dtype | None = None,
        window_batch: int | None = None,
        channels_last: bool | None = None,
    ) -> None:
        from vpd_lightning.backbone.diffusion_backbone import resolve_dtype

        self.task = task_of(model)
        if self.task == "multitask":
            from vpd_lightning.export import TaskNotInCheckpointError

            raise TaskNotInCheckpointError(
                f"a multi-task model ({', '.join(model.task_names)}) predicts one task at a time: choose it with "
                "task=<name> (Predictor.from_pretrained(path, task=...))"
            )
        self.spec = dict(getattr(model, "vpd_config", None) or {})
        stored = self.spec.get("predict") or {}
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_dtype(dtype, "dtype")
        if self.dtype == torch.float32:
            self.dtype = None
        self.model = model.to(self.device, dtype=self.dtype).eval() if self.dtype else model.to(self.device).eval()
        if channels_last is not None:  # overrides the trained model's backbone.channels_last
            backbone = getattr(self.model, "backbone", None)
            if backbone is not None:
                backbone.channels_last = bool(channels_last)
            self.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        elif hasattr(self.model, "apply_memory_format"):
            self.model.apply_memory_format()
        if window_batch is not None and int(window_batch) < 1:
            raise ValueError(f"window_batch must be >= 1 (or null for all windows at once), got {window_batch}")
        self.window_batch = None if window_batch is None else int(window_batch)
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.flip = None if flip is None else bool(flip)
        self.class_names = self.spec.get("class_names")
        self.max_logit_bytes = int(max_logit_bytes)
        self.tokenizer = None
        self.scene = -1
        if self.task == "depth":
            self.crop_height = int(crop_height or stored.get("crop_height") or 480)
            self.scene = self.scene_index(scene)
            self.depth_range = _depth_range(depth_range, float(model.hparams.max_depth))
        if self.task == "referring":
            if self.flip:
                log.warning("flip is ignored for referring segmentation (sentences may say left or right)")
            self.image_size = int(image_size or stored.get("image_size") or 512)
            self.max_tokens = int(max_tokens or stored.get("max_tokens") or model.max_tokens)
            self.tokenizer = tokenizer or tokenizer_from_spec(self.spec)
            if self.tokenizer is None:
                raise ValueError(
                    "referring prediction needs the CLIP tokenizer: the model carries none (vpd_config has no "
                    "tokenizer_files); pass tokenizer=load_tokenizer(<SD folder>)"
                )

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        task: str | None = None,
        cfg=None,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool | None = None,
        token: str | None = None,
        **kwargs,
    ) -> Predictor:
        """Load a checkpoint file, an exported folder or a Hugging Face Hub id of one (``"org/name"``, fetched into
        the hub cache at ``revision``; only the cache is read offline or with ``local_files_only``; see
        :mod:`vpd_lightning.hub`). ``kwargs`` go to the constructor."""
        hub = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only, "token": token}
        return cls(load_model(path, task=task, cfg=cfg, **hub), **kwargs)

    from_checkpoint = from_pretrained

    # ----------------------------------------------------------------------------------------------- inputs
    def scene_index(self, scene: str | int | None) -> int:
        """Depth: the class index of ``scene`` (a name from the stored class names, or an index); -1 = mean."""
        if scene is None:
            return -1
        count = int(self.model.class_embeddings.shape[0])
        if isinstance(scene, str) and scene.strip().lstrip("-").isdigit():
            scene = int(scene)
        if isinstance(scene, int):
            if not 0 <= scene < count:
                raise ConfigError(f"scene index {scene} out of range: the model has {count} scene classes")
            return scene
        names = [str(n).lower().replace(" ", "_") for n in (self.class_names or [])]
        wanted = str(scene).strip().lower().replace(" ", "_")
        if wanted not in names:
            known = ", ".join(self.class_names or []) or "none stored; give an index"
            raise ConfigError(f"unknown scene '{scene}'; the model's scene classes: {known}")
        return names.index(wanted)

    def _item(self, image: Any, sentence: str | None = None, scene: str | int | None = None) -> _Item:
        array = to_rgb_array(image)
        if self.task == "referring":
            if not sentence or not str(sentence).strip():
                raise ValueError("referring segmentation needs a sentence for every image")
            return _Item(array, sentence=str(sentence))
        return _Item(array, scene=self.scene if scene is None else self.scene_index(scene))

    def batch_key(self, item: _Item) -> tuple:
        """Items with one key are predicted in one batch."""
        h, w = item.image.shape[:2]
        if self.task == "depth":
            hp = self.model.hparams
            return depth_input_size(h, w, self.crop_height, hp.shift_size, hp.shift_window_test, hp.input_padding)
        if self.task == "segmentation":
            return (h, w)
        return ("referring",)

    # ---------------------------------------------------------------------------------------------- predict
    def __call__(self, image: Any, sentence: str | None = None, *, scene: str | int | None = None) -> np.ndarray:
        """Prediction for one image: depth ``float32 [H, W]`` in metres, segmentation ``int64 [H, W]`` class
        indices, referring ``bool [H, W]`` mask (for ``sentence``)."""
        return self.predict([image], None if sentence is None else [sentence], scene=scene)[0]

    def predict(
        self,
        images: Sequence[Any],
        sentences: Sequence[str] | None = None,
        *,
        scene: str | int | None = None,
    ) -> list[np.ndarray]:
        """Predictions for several images (referring: one sentence per image), batched by size."""
        if sentences is not None and len(sentences) != len(images):
            raise ValueError(f"{len(images)} images but {len(sentences)} sentences")
        items = [self._item(im, None if sentences is None else sentences[i], scene) for i, im in enumerate(images)]
        results: list[np.ndarray | None] = [None] * len(items)
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(self.batch_key(item), []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for i, out in zip(chunk, self.run([items[i] for i in chunk]), strict=True):
                    results[i] = out
        return results  # type: ignore[return-value]

    @torch.no_grad()
    def run(self, items: Sequence[_Item]) -> list[np.ndarray]:
        """Predict items that share one :meth:`batch_key` in a single batch."""
        run = {"depth": self._run_depth, "segmentation": self._run_segmentation}.get(self.task, self._run_referring)
        if self.dtype is None:
            return run(items)
        with torch.autocast(self.device.type, dtype=self.dtype):
            return run(items)

    def _run_depth(self, items: Sequence[_Item]) -> list[np.ndarray]:
        new_h, new_w, _ = self.batch_key(items[0])
        batch = _tensor([_resize_uint8(it.image, new_h, new_w) for it in items], self.device)
        count = int(self.model.class_embeddings.shape[0])
        ids = torch.tensor([count if it.scene in (None, -1) else it.scene for it in items], device=self.device)
        mean = bool(ids.eq(count).any())
        with _hparams(self.model, flip_test=self.flip), _mean_scene(self.model, mean):
            pred = self.model.predict_depth(batch, ids, window_batch=self.window_batch)
        outs = []
        for i, item in enumerate(items):
            h, w = item.image.shape[:2]
            depth = pred[i : i + 1].float()
            if (h, w) != (new_h, new_w):
                depth = F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=False)
            outs.append(depth[0, 0].cpu().numpy().astype(np.float32))
        return outs

    def _run_segmentation(self, items: Sequence[_Item]) -> list[np.ndarray]:
        h, w = items[0].image.shape[:2]
        classes = int(self.model.num_classes)
        if len(items) > 1 and len(items) * classes * h * w * 4 > self.max_logit_bytes:
            return [out for item in items for out in self._run_segmentation([item])]
        with _hparams(self.model, test_flip=self.flip):
            if classes * h * w * 4 <= self.max_logit_bytes:
                labels = self.model.predict_logits(_tensor([it.image for it in items], self.device)).argmax(dim=1)
                return [lab.cpu().numpy().astype(np.int64) for lab in labels]
            # a very large image: predict at the model's test scale, upsample the labels (nearest)
            from vpd_lightning.inference import rescale_size

            hp = self.model.hparams
            ratio = max(hp.test_ratios)
            small = rescale_size(h, w, (hp.test_scale[0] * ratio, hp.test_scale[1] * ratio))
            x = _tensor([_resize_uint8(items[0].image, *small)], self.device)
            labels = self.model.predict_logits(x).argmax(dim=1, keepdim=True).float()
            labels = F.interpolate(labels, size=(h, w), mode="nearest")
            return [labels[0, 0].cpu().numpy().astype(np.int64)]

    def _run_referring(self, items: Sequence[_Item]) -> list[np.ndarray]:
        size = self.image_size
        batch = _tensor([_resize_uint8(it.image, size, size) for it in items], self.device)
        sentences = [it.sentence for it in items]
        for sentence in sentences:
            length = len(self.tokenizer(sentence).input_ids)
            if length > self.max_tokens:
                log.warning("sentence truncated to %d tokens (it has %d): %r", self.max_tokens, length, sentence)
        tokens = self.tokenizer(
            sentences, padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        logits = self.model(batch, tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device))
        outs = []
        for i, item in enumerate(items):
            h, w = item.image.shape[:2]
            up = logits[i : i + 1].float()
            if (h, w) != (size, size):
                up = F.interpolate(up, size=(h, w), mode="bilinear", align_corners=False)
            outs.append(up.argmax(dim=1)[0].cpu().numpy().astype(bool))
        return outs


# ------------------------------------------------------------------------------------------------ files
def prepare_output(folder: str | os.PathLike) -> Path:
    """Create ``folder`` and check that a file can be written in it; :class:`OutputNotWritableError` if not."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".vpd_write_test"):
            pass
    except OSError as err:
        raise OutputNotWritableError(
            err.errno, f"output folder '{folder}' is not writable ({err.strerror or err})"
        ) from err
    return folder


def list_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Image files of an input: a file, a folder (its image files, not recursive), a glob, or a list of these."""
    if not isinstance(inputs, (str, os.PathLike)):
        return [p for entry in inputs for p in list_inputs(entry)]
    text = os.path.expanduser(str(inputs))
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            kinds = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
            raise MissingFileError(f"input folder '{path}' holds no image files ({kinds})")
        return files
    if path.is_file():
        return [path]
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise MissingFileError(f"no file matches the input pattern '{inputs}'")
        return files
    raise MissingFileError(f"input '{inputs}' does not exist (an image file, a folder or a glob pattern)")


def read_sentences(path: str | os.PathLike) -> dict[str, list[str]]:
    """``{image name: [sentences]}`` from a JSON or CSV file (formats in the module docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(f"sentences file '{path}' does not exist")
    text = path.read_text(encoding="utf-8-sig")
    table: dict[str, list[str]] = {}

    def add(name: Any, sentences: Any) -> None:
        sentences = [sentences] if isinstance(sentences, str) else list(sentences or [])
        for s in sentences:
            if not isinstance(s, str):
                raise ConfigError(f"sentences file '{path}': sentences must be strings, got {s!r} for '{name}'")
            if s.strip():
                table.setdefault(str(name).strip(), []).append(s.strip())

    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"sentences file '{path}' is not valid JSON: {err}") from err
        if isinstance(data, dict):
            for name, sentences in data.items():
                add(name, sentences)
        elif isinstance(data, list) and all(isinstance(r, dict) and "image" in r for r in data):
            for row in data:
                add(row["image"], row.get("sentences", row.get("sentence")))
        else:
            raise ConfigError(
                f"sentences file '{path}': expected {{image: sentence | [sentences]}} or [{{image, sentence}}, ...]"
            )
    else:
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        if rows and [c.strip().lower() for c in rows[0][:2]] == ["image", "sentence"]:
            rows = rows[1:]
        for number, row in enumerate(rows, 1):
            if len(row) < 2:
                raise ConfigError(f"sentences file '{path}' row {number}: expected `image,sentence`, got {row}")
            add(row[0], ",".join(row[1:]))
    if not table:
        raise ConfigError(f"sentences file '{path}' holds no sentences")
    return table


def _output_names(files: Sequence[Path]) -> list[str]:
    """Output base names: the file stem, made unique (``a.png`` and ``a.jpg`` -> ``a``, ``a_jpg``)."""
    names, used = [], set()
    for path in files:
        name = path.stem
        if name in used:
            name = f"{path.stem}_{path.suffix.lstrip('.').lower()}"
            k = 2
            while name in used:
                name, k = f"{path.stem}_{k}", k + 1
        used.add(name)
        names.append(name)
    return names


def _overlay(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).round().astype(np.uint8)


def _write(predictor: Predictor, item: _Item, result: np.ndarray, out: Path, save_npy: bool) -> list[str]:
    from vpd_lightning.visualize import depth_picture, palette

    name = item.meta["name"]
    written = []

    def save(array: np.ndarray, suffix: str) -> None:
        target = out / f"{name}{suffix}"
        Image.fromarray(array).save(target)
        written.append(target.name)

    if predictor.task == "depth":
        save(np.clip(np.round(result * 1000.0), 0, 65535).astype(np.uint16), "_depth.png")
        low, high = predictor.depth_range or (float(result.min()), float(result.max()))
        target = out / f"{name}_depth_color.png"
        depth_picture(result, low, high).save(target)
        written.append(target.name)
        if save_npy:
            np.save(out / f"{name}_depth.npy", result.astype(np.float32))
            written.append(f"{name}_depth.npy")
    elif predictor.task == "segmentation":
        classes = int(predictor.model.num_classes)
        save(result.astype(np.uint8 if classes <= 256 else np.uint16), "_label.png")
        save(_overlay(item.image, palette(classes)[result]), "_overlay.png")
    else:
        k = item.meta["index"]
        save(result.astype(np.uint8) * 255, f"_{k}_mask.png")
        green = np.where(result[..., None], np.array([0, 255, 0], np.uint8), item.image)
        save(_overlay(item.image, green, 0.6), f"_{k}_overlay.png")
    return written


def predict_files(
    predictor: Predictor,
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    output: str | os.PathLike,
    *,
    sentence: str | None = None,
    sentences: str | os.PathLike | None = None,
    save_npy: bool = False,
    progress: bool = True,
) -> dict:
    """Predict every image of ``inputs`` and write the outputs into ``output`` (see the module docstring).

    Returns ``{"output": folder, "written": [{"input", "outputs"[, "sentence"]}], "skipped": [{"input",
    "reason"}]}``, also written to ``<output>/predictions.json``. Images that cannot be decoded (or, for
    referring, have no sentence) are reported on stderr and skipped.
    """
    out = prepare_output(output)
    files = list_inputs(inputs)
    table = read_sentences(sentences) if sentences else None
    if predictor.task == "referring" and not (sentence or table):
        raise ConfigError('referring segmentation needs sentence="..." or sentences=<JSON or CSV file>')
    names = _output_names(files)
    written: list[dict] = []
    skipped: list[dict] = []
    buckets: dict[tuple, list[_Item]] = {}
    pending: dict[Path, int] = {}

    try:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="image", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    except ImportError:  # pragma: no cover
        bar = None

    def advance() -> None:
        if bar is not None:
            bar.update(1)
        elif progress:
            print(f"\r{len(written) + len(skipped)} / {len(files)}", end="", file=sys.stderr)

    def flush(key: tuple) -> None:
        items = buckets.pop(key)
        for item, result in zip(items, predictor.run(items), strict=True):
            entry = {"input": str(item.meta["path"]), "outputs": _write(predictor, item, result, out, save_npy)}
            if item.sentence is not None:
                entry["sentence"] = item.sentence
            written.append(entry)
            pending[item.meta["path"]] -= 1
            if pending[item.meta["path"]] == 0:
                advance()

    def skip(path: Path, reason: str) -> None:
        _report(f"skipped '{path}': {reason}")
        skipped.append({"input": str(path), "reason": reason})
        advance()

    for path, name in zip(files, names, strict=True):
        try:
            image = load_image(path)
        except Exception as err:  # noqa: BLE001 - any decoding failure: report, skip, go on
            skip(path, f"cannot decode the image ({type(err).__name__}: {err})")
            continue
        texts: list[str | None] = [None]
        if predictor.task == "referring":
            found = None
            if table is not None:
                found = table.get(path.name) or table.get(path.stem) or table.get(str(path))
            texts = found or ([sentence] if sentence else [])
            if not texts:
                skip(path, "no sentence for this image in the sentences file")
                continue
        pending[path] = len(texts)
        for index, text in enumerate(texts):
            item = _Item(image, sentence=text, scene=predictor.scene if predictor.task == "depth" else None)
            item.meta = {"path": path, "name": name, "index": index}
            key = predictor.batch_key(item)
            buckets.setdefault(key, []).append(item)
            if len(buckets[key]) >= predictor.batch_size:
                flush(key)
        # bound the images held in memory when many sizes are waiting for a full batch
        while sum(len(b) for b in buckets.values()) > 4 * predictor.batch_size:
            flush(max(buckets, key=lambda k: len(buckets[k])))
    for key in list(buckets):
        flush(key)
    if bar is not None:
        bar.close()
    summary = {"output": str(out), "task": predictor.task, "written": written, "skipped": skipped}
    (out / "predictions.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    images = len(files) - len(skipped)
    print(
        f"predicted {images} image(s) ({len(written)} prediction(s)) into '{out}'"
        + (f"; skipped {len(skipped)}: " + ", ".join(Path(s["input"]).name for s in skipped) if skipped else "")
    )
    return summary


# -------------------------------------------------------------------------------------------------- CLI
class NothingPredictedError(UserError, RuntimeError):
    """Every input image was skipped (undecodable, or no sentence for it)."""


def predict(cfg) -> dict:
    """The ``python -m vpd_lightning.predict`` flow on a composed ``conf/predict.yaml``.

    A run that fails, or predicts nothing (:class:`NothingPredictedError`), leaves no output folder it created.
    """
    from omegaconf import OmegaConf

    output = None if OmegaConf.is_missing(cfg, "output") else cfg.get("output")
    created = bool(output) and not Path(output).expanduser().exists()
    try:
        summary = _predict(cfg)
        if not summary["written"]:
            raise NothingPredictedError(
                f"nothing was predicted: all {len(summary['skipped'])} input image(s) were skipped (reasons above)"
            )
    except BaseException:
        folder = Path(output).expanduser() if created else None
        if folder is not None and folder.is_dir():
            (folder / "predictions.json").unlink(missing_ok=True)  # written last: nothing else was
            if not any(folder.iterdir()):
                folder.rmdir()
        raise
    return summary


def _predict(cfg) -> dict:
    """Load the model and predict every input into ``cfg.output`` (:func:`predict_files`)."""
    from omegaconf import OmegaConf

    for key in ("ckpt_path", "input", "output"):
        if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
            raise ConfigError(
                f"predict needs {key}=...: python -m vpd_lightning.predict ckpt_path=<checkpoint or exported folder> "
                "input=<image, folder or glob> output=<folder>"
            )
    prepare_output(cfg.output)  # fail before loading anything
    model = load_model(cfg.ckpt_path, task=requested_task(cfg), cfg=cfg)
    predictor = Predictor(
        model,
        flip=cfg.get("flip"),
        scene=cfg.get("scene"),
        batch_size=cfg.get("batch_size", 4),
        device=cfg.get("device"),
        depth_range=cfg.get("depth_range"),
        dtype=cfg.get("dtype"),
        window_batch=cfg.get("window_batch"),
        channels_last=cfg.get("channels_last"),
    )
    inputs = cfg.input
    if OmegaConf.is_list(inputs):
        inputs = [str(p) for p in inputs]
    return predict_files(
        predictor,
        inputs,
        cfg.output,
        sentence=cfg.get("sentence"),
        sentences=cfg.get("sentences"),
        save_npy=bool(cfg.get("save_npy", False)),
        progress=bool(cfg.get("progress", True)),
    )


@hydra_main("predict")
@report_user_errors
def main(cfg) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
