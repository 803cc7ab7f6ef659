"""Referring segmentation from your own data: a JSON-lines file per split of image, sentence and mask.

Expected layout (``root``; paths in the files are relative to it)::

    <root>/
      images/0001.jpg ...
      masks/0001_car.png ...          (optional: masks can be polygons instead)
      train.jsonl  val.jsonl  [test.jsonl]

One object per line, e.g.::

    {"image": "images/0001.jpg", "sentence": "the red car on the left", "mask": "masks/0001_car.png"}
    {"image": "images/0001.jpg", "sentences": ["the dog", "a brown dog"], "polygon": [[10, 10, 50, 10, 50, 40]]}

``sentence`` (a string) or ``sentences`` (a list: training draws one per epoch, evaluation scores each); the
object as ``mask`` (a PNG of the image's size, non-zero = the object) or ``polygon`` (COCO polygons
``[[x0, y0, x1, y1, ...], ...]`` in pixels, their union). Samples are those of
:class:`~vpd_lightning.data.RefCOCODataset` (image squashed to ``image_size`` squared, CLIP tokens).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vpd_lightning.data.base import VPDDataModule
from vpd_lightning.data.errors import DataFormatError, DatasetNotFoundError
from vpd_lightning.data.refcoco import RefCOCODataset, _Item, _resolve_tokenizer, decode_mask

__all__ = ["ReferringFolderDataModule", "ReferringFolderDataset", "read_jsonl"]

LAYOUT = """\
  <root>/
    images/..., masks/... (optional)
    train.jsonl, val.jsonl, [test.jsonl]: one {"image": ..., "sentence"|"sentences": ..., "mask"|"polygon": ...}
    per line, paths relative to <root>
"""


def read_jsonl(path: Path, root: Path) -> list[_Item]:
    """The objects of one split file (images' sizes read from their headers; every file checked to exist)."""
    if not path.is_file():
        raise DatasetNotFoundError(f"'{path}' does not exist. Expected layout:\n{LAYOUT}")
    items, sizes = [], {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{where}: not a JSON object ({err.msg})") from err
        if not isinstance(entry, dict) or "image" not in entry:
            raise DataFormatError(f"{where}: expected an object with 'image', 'sentence' and 'mask' or 'polygon'")
        sentences = entry.get("sentences", [entry["sentence"]] if "sentence" in entry else None)
        if (
            not isinstance(sentences, list)
            or not sentences
            or not all(isinstance(s, str) and s.strip() for s in sentences)
        ):
            raise DataFormatError(f"{where}: needs a non-empty 'sentence' string or 'sentences' list of strings")
        image = root / str(entry["image"]).lstrip("/")
        if image not in sizes:
            try:
                with Image.open(image) as img:
                    sizes[image] = img.size
            except (FileNotFoundError, UnidentifiedImageError, OSError) as err:
                raise DataFormatError(f"{where}: cannot read the image '{image}' ({err})") from err
        width, height = sizes[image]
        if "mask" in entry:
            segmentation: Any = root / str(entry["mask"]).lstrip("/")
            if not segmentation.is_file():
                raise DataFormatError(f"{where}: mask '{segmentation}' does not exist")
        elif "polygon" in entry:
            segmentation = entry["polygon"]
            if segmentation and all(isinstance(v, (int, float)) for v in segmentation):
                segmentation = [segmentation]  # one polygon given flat
        else:
            raise DataFormatError(f"{where}: needs the object as 'mask' (a PNG) or 'polygon' ([[x0, y0, ...]])")
        sents = tuple((j, s) for j, s in enumerate(sentences))
        items.append(_Item(number, image, height, width, number, segmentation, sents))
    if not items:
        raise DataFormatError(f"{path} holds no objects")
    return items


class ReferringFolderDataset(RefCOCODataset):
    """One split of a referring folder data set (module docstring); samples as :class:`RefCOCODataset`
    (``ref_id`` is the line number, ``sent_id`` the sentence's index in the line).

    Args:
        root: the folder; ``split``: the JSON-lines file ``<root>/<split>.jsonl``.
        tokenizer, max_tokens, image_size, train: as :class:`RefCOCODataset`.
        overlap_quirk: REFER's sum-of-polygons rule for polygons (default: their union).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        tokenizer: Any = None,
        max_tokens: int = 40,
        image_size: int = 512,
        train: bool | None = None,
        overlap_quirk: bool = False,
    ) -> None:  # RefCOCODataset's reading of refs and instances is not wanted: set its attributes here
        self.root = Path(root).expanduser()
        self.dataset, self.split, self.split_by = "referring folder", split, None
        self.max_tokens, self.image_size = int(max_tokens), int(image_size)
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2 (start and end tokens), got {self.max_tokens}")
        self.train = (split == "train") if train is None else bool(train)
        self.overlap_quirk = overlap_quirk
        self.refs_file = self.root / f"{split}.jsonl"
        self.items = read_jsonl(self.refs_file, self.root)
        self.pairs = [(i, j) for i, item in enumerate(self.items) for j in range(len(item.sentences))]
        self.tokenizer = _resolve_tokenizer(tokenizer)
        self._warned: set[tuple[int, int]] = set()

    def _read_mask(self, item: _Item) -> np.ndarray:
        if not isinstance(item.segmentation, Path):
            where = f"{self.refs_file}:{item.ref_id}"
            return decode_mask(item.segmentation, item.height, item.width, self.overlap_quirk, where=where)
        try:
            with Image.open(item.segmentation) as img:
                mask = np.asarray(img.convert("L") if img.mode in ("1", "P", "RGB") else img)
        except (UnidentifiedImageError, OSError) as err:
            raise DataFormatError(f"{item.segmentation}: cannot read the mask ({err})") from err
        if mask.shape[:2] != (item.height, item.width) or mask.ndim != 2:
            raise DataFormatError(
                f"{item.segmentation}: the mask must be a single-channel {item.width}x{item.height} PNG (its image "
                f"{item.image_path.name}), got {mask.shape[1]}x{mask.shape[0]}"
            )
        return (mask != 0).astype(np.uint8)


class ReferringFolderDataModule(VPDDataModule):
    """Your own referring data: trains on ``<root>/<train_split>.jsonl``, validates on ``val_split`` and tests on
    ``test_split`` (``<root>/test.jsonl`` when it exists, else ``val``). Other arguments: see
    :class:`~vpd_lightning.data.RefCOCODataModule`."""

    def __init__(
        self,
        root: str | Path,
        tokenizer: Any = None,
        max_tokens: int = 40,
        image_size: int = 512,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        batch_size: int = 4,
        eval_batch_size: int = 8,
        num_workers: int = 8,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int | None = None,
        sample_seeding: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=[] if tokenizer is None or isinstance(tokenizer, str) else ["tokenizer"])
        if root is None or str(root) in ("", "???"):
            raise DatasetNotFoundError(f"data.root is not set. Expected layout:\n{LAYOUT}")
        self.root = Path(root).expanduser()
        if test_split is None:
            test_split = "test" if (self.root / "test.jsonl").is_file() else val_split
        self.splits = {"train_set": train_split, "val_set": val_split, "test_set": test_split}
        for split in (val_split, test_split):
            if not (self.root / f"{split}.jsonl").is_file():
                raise DatasetNotFoundError(
                    f"'{self.root / f'{split}.jsonl'}' does not exist. Expected layout:\n{LAYOUT}"
                )
        self.tokenizer = _resolve_tokenizer(tokenizer)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        wanted = ["val_set", "test_set"] + (["train_set"] if stage in (None, "fit") else [])
        for attr in wanted:
            if getattr(self, attr) is None:
                split = self.splits[attr]
                dataset = ReferringFolderDataset(
                    self.root,
                    split,
                    tokenizer=self.tokenizer,
                    max_tokens=hp.max_tokens,
                    image_size=hp.image_size,
                    train=attr == "train_set",
                )
                setattr(self, attr, dataset)
