"""RefCOCO / RefCOCO+ / G-Ref (RefCOCOg) in the REFER layout that LAVT and VPD read, and its LightningDataModule.

Expected layout (``root`` is the refer data root, VPD's ``--refer_data_root``)::

    <root>/
      images/mscoco/images/train2014/COCO_train2014_000000000123.jpg ...
      refcoco/   refs(unc).p, refs(google).p, instances.json
      refcoco+/  refs(unc).p, instances.json
      refcocog/  refs(umd).p, refs(google).p, instances.json

``refs(<split_by>).p`` is a pickled list of refs ``{ref_id, ann_id, image_id, category_id, split, sentences:
[{sent, sent_id, tokens, raw}], sent_ids, file_name}``; ``instances.json`` is COCO-style (``images`` with ``id``,
``file_name``, ``height``, ``width``; ``annotations`` with ``id``, ``image_id`` and a polygon or RLE
``segmentation``). The splits are those of :data:`REFER_SPLITS`.

Pipeline (vpd-reference §5.1, §5.5): the image is resized to ``image_size`` x ``image_size`` ignoring the aspect
ratio (PIL bilinear) and returned in ``[0, 1]``; the referred object's mask is decoded with pycocotools
(:func:`decode_mask`, REFER's sum-of-polygons quirk by default) and resized with nearest neighbour; the
expression (the sentence's ``sent`` field, as VPD's ``dataset_refer_clip.py``) is tokenised with the CLIP
tokenizer, padded to ``max_tokens`` (40 for RefCOCO/RefCOCO+, 77 for G-Ref). Training items are refs with one
random sentence each (``torch.randint``); evaluation items are every (ref, sentence) pair.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from vpd_lightning.data.base import VPDDataModule
from vpd_lightning.data.errors import DataFormatError, DatasetNotFoundError

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_SPLIT_BY",
    "REFER_SPLITS",
    "RefCOCODataModule",
    "RefCOCODataset",
    "ReferData",
    "check_choice",
    "decode_mask",
    "verify_layout",
]

#: Valid ``split_by`` conventions of each data set and their split names (REFER / LAVT).
REFER_SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "refcoco": {"unc": ("train", "val", "testA", "testB"), "google": ("train", "val", "test")},
    "refcoco+": {"unc": ("train", "val", "testA", "testB")},
    "refcocog": {"umd": ("train", "val", "test"), "google": ("train", "val")},
}

#: The convention used when ``split_by`` is ``None`` (the ones LAVT and VPD report).
DEFAULT_SPLIT_BY: dict[str, str] = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}

#: VPD's ``--token_length`` per data set, used when ``max_tokens`` is ``None``.
DEFAULT_MAX_TOKENS: dict[str, int] = {"refcoco": 40, "refcoco+": 40, "refcocog": 77}

#: Where REFER looks for the COCO images, relative to ``root``.
IMAGE_SUBDIR = Path("images/mscoco/images/train2014")

LAYOUT = """\
  <root>/                                  (the refer data root)
    images/mscoco/images/train2014/COCO_train2014_<12 digits>.jpg
    refcoco/{refs(unc).p, refs(google).p, instances.json}
    refcoco+/{refs(unc).p, instances.json}
    refcocog/{refs(umd).p, refs(google).p, instances.json}
"""

_REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


def check_choice(dataset: str, split_by: str | None, split: str | None = None) -> str:
    """Validate a ``dataset`` / ``split_by`` / ``split`` combination; return ``split_by`` (defaulted if ``None``).

    Raises:
        ValueError: listing the valid choices.
    """
    if dataset not in REFER_SPLITS:
        raise ValueError(f"RefCOCO dataset must be one of {sorted(REFER_SPLITS)}, got '{dataset}'")
    if split_by is None:
        split_by = DEFAULT_SPLIT_BY[dataset]
    if split_by not in REFER_SPLITS[dataset]:
        raise ValueError(f"split_by for '{dataset}' must be one of {sorted(REFER_SPLITS[dataset])}, got '{split_by}'")
    splits = REFER_SPLITS[dataset][split_by]
    if split is not None and split not in splits:
        raise ValueError(f"split of {dataset} ({split_by}) must be one of {list(splits)}, got '{split}'")
    return split_by


def verify_layout(root: str | Path, dataset: str = "refcoco", split_by: str | None = "unc") -> tuple[Path, Path, Path]:
    """Check that ``dataset`` with ``split_by`` is on disk; return ``(refs_file, instances_file, image_dir)``.

    Raises:
        ValueError: an unknown dataset / split_by.
        DatasetNotFoundError: a folder or file is missing; the message shows the expected layout.
    """
    if root is None or str(root) in ("", "???"):
        raise DatasetNotFoundError(f"data.root is not set. Expected layout:\n{LAYOUT}")
    split_by = check_choice(dataset, split_by)
    root = Path(root).expanduser()
    data_dir = root / dataset
    refs_file = data_dir / f"refs({split_by}).p"
    instances_file = data_dir / "instances.json"
    image_dir = root / IMAGE_SUBDIR
    if not root.is_dir():
        missing = [root]
    elif not data_dir.is_dir():
        missing = [data_dir]
    else:
        missing = [p for p in (refs_file, instances_file, image_dir) if not p.exists()]
    if missing:
        raise DatasetNotFoundError(
            f"{dataset} ({split_by}) not found: missing {', '.join(str(p) for p in missing)}.\n"
            f"Expected layout (set data.root to the refer data root):\n{LAYOUT}"
        )
    return refs_file, instances_file, image_dir


# --------------------------------------------------------------------------------------------------- masks


def _decode_rle(rle: Mapping, height: int, width: int, where: str) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if "counts" not in rle or "size" not in rle:
        raise DataFormatError(f"{where}: an RLE segmentation needs 'counts' and 'size', got keys {sorted(rle)}")
    size = [int(s) for s in rle["size"]]
    if size != [height, width]:
        raise DataFormatError(f"{where}: RLE size {size} differs from the image's [height, width] [{height}, {width}]")
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE: compress first (as COCO's annToRLE)
        if sum(int(c) for c in counts) != height * width:
            raise DataFormatError(
                f"{where}: uncompressed RLE counts sum to {sum(int(c) for c in counts)}, expected {height}x{width}"
            )
        rle = mask_utils.frPyObjects(dict(rle), height, width)
    elif not isinstance(counts, (str, bytes)):
        raise DataFormatError(f"{where}: RLE 'counts' must be a list or a string, got {type(counts).__name__}")
    return mask_utils.decode(rle)


def decode_mask(
    segmentation: list | dict, height: int, width: int, overlap_quirk: bool = True, where: str = "segmentation"
) -> np.ndarray:
    """Rasterise a COCO segmentation (polygons or RLE) to a 0/1 ``uint8`` mask of shape ``[height, width]``.

    Polygons are rasterised one mask per polygon (``pycocotools.mask.frPyObjects`` + ``decode``); RLE dicts with
    compressed (string) or uncompressed (list) ``counts`` are decoded as one channel. As REFER's ``getMask``
    the per-channel masks are summed; with ``overlap_quirk`` (LAVT/VPD) only pixels whose sum is exactly 1 are
    foreground, so pixels covered by two polygons of the same object become background. Without it the mask
    is the union (sum >= 1).

    Args:
        segmentation: a list of polygons ``[[x0, y0, x1, y1, ...], ...]``, an RLE dict, or a list of RLE dicts.
        height, width: the image size.
        overlap_quirk: REFER's ``sum == 1`` rule (default) instead of the union.
        where: names the annotation in error messages.

    Raises:
        DataFormatError: the segmentation is malformed or its size does not match the image.
    """
    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():  # pycocotools' decode under NumPy 2 ("__array__ ... copy keyword")
        warnings.simplefilter("ignore", DeprecationWarning)
        if isinstance(segmentation, Mapping):
            channels = _decode_rle(segmentation, height, width, where)
        elif isinstance(segmentation, (list, tuple)) and segmentation:
            if all(isinstance(p, Mapping) for p in segmentation):
                channels = np.stack([_decode_rle(r, height, width, where) for r in segmentation], axis=-1)
            elif all(isinstance(p, (list, tuple)) for p in segmentation):
                polygons = []
                for number, poly in enumerate(segmentation):
                    if len(poly) < 6 or len(poly) % 2:
                        raise DataFormatError(
                            f"{where}: polygon {number} has {len(poly)} coordinates; a polygon needs an even number "
                            ">= 6 (x0, y0, x1, y1, x2, y2, ...)"
                        )
                    polygons.append([float(v) for v in poly])
                channels = mask_utils.decode(mask_utils.frPyObjects(polygons, height, width))
            else:
                raise DataFormatError(f"{where}: expected a list of polygons (lists of x, y) or of RLE dicts")
        else:
            raise DataFormatError(
                f"{where}: expected a non-empty list of polygons or an RLE dict, got {type(segmentation).__name__} "
                f"{str(segmentation)[:60]}"
            )
    if channels.ndim == 2:
        channels = channels[..., None]
    if channels.shape[:2] != (height, width):
        raise DataFormatError(f"{where}: decoded mask is {channels.shape[:2]}, expected ({height}, {width})")
    total = channels.astype(np.int64).sum(axis=2)
    return ((total == 1) if overlap_quirk else (total >= 1)).astype(np.uint8)


# --------------------------------------------------------------------------------------------------- files


@dataclass
class ReferData:
    """The parsed ``refs(<split_by>).p`` and ``instances.json`` of one data set (shared by its splits).

    Attributes:
        dataset, split_by: which REFER data set.
        refs_file, instances_file, image_dir: the files read and the image folder.
        refs: the refs in file order.
        anns: annotation id -> annotation.
        images: image id -> image entry.
    """

    dataset: str
    split_by: str
    refs_file: Path
    instances_file: Path
    image_dir: Path
    refs: list[dict]
    anns: dict[int, dict]
    images: dict[int, dict]

    @classmethod
    def load(cls, root: str | Path, dataset: str = "refcoco", split_by: str | None = "unc") -> ReferData:
        """Read the refs and instances of ``dataset`` under ``root`` (after :func:`verify_layout`)."""
        split_by = check_choice(dataset, split_by)
        refs_file, instances_file, image_dir = verify_layout(root, dataset, split_by)
        refs = _load_refs(refs_file)
        try:
            instances = json.loads(instances_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataFormatError(f"{instances_file}: cannot read the COCO instances JSON ({err})") from err
        if not isinstance(instances, dict) or not {"images", "annotations"} <= instances.keys():
            raise DataFormatError(f"{instances_file}: expected a COCO dict with 'images' and 'annotations'")
        try:
            anns = {int(a["id"]): a for a in instances["annotations"]}
            images = {int(i["id"]): i for i in instances["images"]}
        except (KeyError, TypeError, ValueError) as err:
            raise DataFormatError(
                f"{instances_file}: every image and annotation needs an integer 'id' ({err})"
            ) from err
        return cls(dataset, split_by, refs_file, instances_file, image_dir, refs, anns, images)


def _load_refs(refs_file: Path) -> list[dict]:
    try:
        with open(refs_file, "rb") as f:
            try:
                refs = pickle.load(f)
            except UnicodeDecodeError:  # a Python-2 pickle with non-ASCII byte strings
                f.seek(0)
                refs = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError) as err:
        raise DataFormatError(f"{refs_file}: cannot unpickle the refs ({err})") from err
    if not isinstance(refs, list):
        raise DataFormatError(f"{refs_file}: expected a pickled list of refs, got {type(refs).__name__}")
    for ref in refs:
        missing = [k for k in _REF_KEYS if not isinstance(ref, dict) or k not in ref]
        if missing:
            ident = ref.get("ref_id", "?") if isinstance(ref, dict) else "?"
            raise DataFormatError(f"{refs_file}: ref {ident} lacks {missing} (a ref needs {list(_REF_KEYS)})")
    return refs


# --------------------------------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class _Item:
    ref_id: int
    image_path: Path
    height: int
    width: int
    ann_id: int
    segmentation: Any
    sentences: tuple[tuple[int, str], ...]  # (sent_id, text)


def _resolve_tokenizer(tokenizer: Any):
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        from vpd_lightning.backbone.loading import DEFAULT_SD_PATH, load_tokenizer

        return load_tokenizer(DEFAULT_SD_PATH if tokenizer is None else tokenizer)
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a tokenizer, a folder or a hub id, got {type(tokenizer).__name__}")
    return tokenizer


class RefCOCODataset(Dataset):
    """One split of RefCOCO, RefCOCO+ or G-Ref for referring segmentation.

    Samples are dicts: ``image`` float32 ``[3, S, S]`` in ``[0, 1]``, ``mask`` int64 ``[S, S]`` (1 = referred
    object), ``input_ids`` and ``attention_mask`` int64 ``[max_tokens]``, ``sentence`` (str), ``ref_id`` and
    ``sent_id`` (int). With ``train=True`` the length is the number of refs and each item draws one of the
    ref's sentences with ``torch.randint``; otherwise there is one item per (ref, sentence), in file order.

    Everything that can be checked without decoding images is checked at construction: the layout, the split
    name, every ref's annotation and image entry, that the image files exist and that no sentence is empty.

    Args:
        root: the refer data root (holds ``images/`` and ``<dataset>/``).
        dataset: ``"refcoco"``, ``"refcoco+"`` or ``"refcocog"``.
        split_by: ``"unc"``, ``"google"`` or ``"umd"`` (see :data:`REFER_SPLITS`); ``None`` = the data set's
            usual one (:data:`DEFAULT_SPLIT_BY`).
        split: a split of that convention, e.g. ``"train"``, ``"val"``, ``"testA"``.
        tokenizer: a tokenizer object, or a diffusers folder / hub id loaded with ``load_tokenizer``
            (``None`` = Stable Diffusion v1.5's CLIP tokenizer).
        max_tokens: token budget incl. start/end tokens (VPD: 40, 77 for G-Ref; ``None`` = that default).
            Longer sentences are truncated with one warning each.
        image_size: side ``S`` of the square resize (VPD: 512).
        train: one random sentence per ref (default: ``split == "train"``).
        overlap_quirk: REFER's ``sum == 1`` polygon rule (see :func:`decode_mask`); ``False`` = union.
        refer_data: already loaded files of this data set (:class:`ReferData`), to share them between splits.
    """

    def __init__(
        self,
        root: str | Path,
        dataset: str = "refcoco",
        split_by: str | None = "unc",
        split: str = "train",
        tokenizer: Any = None,
        max_tokens: int | None = 40,
        image_size: int = 512,
        train: bool | None = None,
        overlap_quirk: bool = True,
        *,
        refer_data: ReferData | None = None,
    ) -> None:
        self.split_by = check_choice(dataset, split_by, split)
        self.root = Path(root).expanduser()
        self.dataset = dataset
        self.split = split
        self.max_tokens = DEFAULT_MAX_TOKENS[dataset] if max_tokens is None else int(max_tokens)
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2 (start and end tokens), got {self.max_tokens}")
        self.image_size = int(image_size)
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.train = (split == "train") if train is None else bool(train)
        self.overlap_quirk = overlap_quirk
        if refer_data is None:
            refer_data = ReferData.load(self.root, dataset, self.split_by)
        elif (refer_data.dataset, refer_data.split_by) != (dataset, self.split_by):
            raise ValueError(
                f"refer_data holds {refer_data.dataset} ({refer_data.split_by}), not {dataset} ({self.split_by})"
            )
        self.refs_file = refer_data.refs_file
        self.items = self._index(refer_data)
        self.pairs = [(i, j) for i, item in enumerate(self.items) for j in range(len(item.sentences))]
        self.tokenizer = _resolve_tokenizer(tokenizer)
        self._warned: set[tuple[int, int]] = set()

    def _index(self, data: ReferData) -> list[_Item]:
        refs = [r for r in data.refs if r["split"] == self.split]
        if not refs:
            found = sorted({str(r["split"]) for r in data.refs})
            raise DataFormatError(f"{data.refs_file}: no refs in split '{self.split}' (splits present: {found})")
        items, missing_images, present = [], [], set()
        for ref in refs:
            ref_id, ann_id, image_id = ref["ref_id"], ref["ann_id"], ref["image_id"]
            ann = data.anns.get(ann_id)
            if ann is None:
                raise DataFormatError(
                    f"{data.refs_file}: ref {ref_id} refers to annotation {ann_id}, which is not in "
                    f"{data.instances_file}"
                )
            if "segmentation" not in ann:
                raise DataFormatError(f"{data.instances_file}: annotation {ann_id} (ref {ref_id}) has no segmentation")
            image = data.images.get(image_id)
            if image is None:
                raise DataFormatError(
                    f"{data.refs_file}: ref {ref_id} is on image {image_id}, which has no entry in 'images' of "
                    f"{data.instances_file}"
                )
            try:
                path = data.image_dir / image["file_name"]
                height, width = int(image["height"]), int(image["width"])
            except (KeyError, TypeError, ValueError) as err:
                raise DataFormatError(
                    f"{data.instances_file}: image {image_id} needs 'file_name', 'height' and 'width' ({err})"
                ) from err
            if path not in present:
                if path.is_file():
                    present.add(path)
                else:
                    missing_images.append((ref_id, path))
            items.append(
                _Item(int(ref_id), path, height, width, int(ann_id), ann["segmentation"], self._sentences(ref))
            )
        if missing_images:
            ref_id, path = missing_images[0]
            raise DataFormatError(
                f"image file '{path}' (ref {ref_id}) does not exist ({len(missing_images)} ref(s) of split "
                f"'{self.split}' without their image in {data.image_dir})"
            )
        return items

    def _sentences(self, ref: dict) -> tuple[tuple[int, str], ...]:
        sentences = ref["sentences"]
        if not isinstance(sentences, (list, tuple)) or not sentences:
            raise DataFormatError(f"{self.refs_file}: ref {ref['ref_id']} has no sentences (a non-empty list)")
        sent_ids = ref.get("sent_ids") or [None] * len(sentences)
        out = []
        for number, sentence in enumerate(sentences):
            sent_id = sentence.get("sent_id") if isinstance(sentence, dict) else None
            if sent_id is None:
                sent_id = sent_ids[number] if number < len(sent_ids) and sent_ids[number] is not None else number
            text = sentence.get("sent", sentence.get("raw")) if isinstance(sentence, dict) else None
            if not isinstance(text, str):
                raise DataFormatError(f"{self.refs_file}: ref {ref['ref_id']} sentence {sent_id} has no 'sent' string")
            if not text.strip():
                raise DataFormatError(f"{self.refs_file}: ref {ref['ref_id']} sentence {sent_id} is empty")
            out.append((int(sent_id), text))
        return tuple(out)

    @property
    def num_sentences(self) -> int:
        """Number of (ref, sentence) pairs in the split."""
        return len(self.pairs)

    def __len__(self) -> int:
        return len(self.items) if self.train else len(self.pairs)

    def tokenize(self, text: str, ref_id: int = -1, sent_id: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)``, int64 ``[max_tokens]``; warns once per sentence that is truncated."""
        length = len(self.tokenizer.tokenize(text)) + self.tokenizer.num_special_tokens_to_add(pair=False)
        if length > self.max_tokens and (ref_id, sent_id) not in self._warned:
            self._warned.add((ref_id, sent_id))
            warnings.warn(
                f"{self.dataset} ref {ref_id} sentence {sent_id}: {length} tokens exceed the budget of "
                f"max_tokens={self.max_tokens}; truncated",
                stacklevel=2,
            )
        encoded = self.tokenizer(text, padding="max_length", truncation=True, max_length=self.max_tokens)
        return (
            torch.tensor(encoded["input_ids"], dtype=torch.long),
            torch.tensor(encoded["attention_mask"], dtype=torch.long),
        )

    def _read_image(self, item: _Item) -> Image.Image:
        try:
            with Image.open(item.image_path) as img:
                image = img.convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise DataFormatError(f"{item.image_path}: cannot read the image of ref {item.ref_id} ({err})") from err
        if image.size != (item.width, item.height):
            raise DataFormatError(
                f"{item.image_path}: image is {image.size[0]}x{image.size[1]}, instances.json says "
                f"{item.width}x{item.height}"
            )
        return image

    def _read_mask(self, item: _Item) -> np.ndarray:
        where = f"annotation {item.ann_id} (ref {item.ref_id})"
        return decode_mask(item.segmentation, item.height, item.width, self.overlap_quirk, where=where)

    def __getitem__(self, index: int) -> dict:
        if self.train:
            ref_index = index
            sent_index = int(torch.randint(len(self.items[index].sentences), (1,)).item())
        else:
            ref_index, sent_index = self.pairs[index]
        item = self.items[ref_index]
        sent_id, sentence = item.sentences[sent_index]
        size = (self.image_size, self.image_size)
        image = self._read_image(item).resize(size, Image.Resampling.BILINEAR)
        mask = self._read_mask(item)
        mask_img = Image.frombytes("P", (item.width, item.height), np.ascontiguousarray(mask).tobytes())
        mask_img = mask_img.resize(size, Image.Resampling.NEAREST)
        input_ids, attention_mask = self.tokenize(sentence, item.ref_id, sent_id)
        return {
            "image": torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255.0),
            "mask": torch.from_numpy(np.array(mask_img)).long(),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "sentence": sentence,
            "ref_id": item.ref_id,
            "sent_id": sent_id,
        }


# --------------------------------------------------------------------------------------------------- datamodule


class RefCOCODataModule(VPDDataModule):
    """RefCOCO / RefCOCO+ / G-Ref for VPD referring segmentation.

    Trains on ``train_split`` (one random sentence per object per epoch), validates on ``val_split`` and tests
    on ``test_split`` (every sentence). VPD validates on ``val`` after every epoch and reports the best epoch
    on it (vpd-reference §5.4). ``batch_size`` is per device (VPD: 4 x 8 GPUs = 32).

    The data root, the split names and the tokenizer are checked at construction, so a wrong ``data.root``
    stops a run at once.

    Args:
        root: the refer data root.
        dataset, split_by: which data set and split convention (:data:`REFER_SPLITS`).
        tokenizer: a diffusers folder or hub id holding ``tokenizer/`` (``None`` = Stable Diffusion v1.5), or a
            tokenizer object.
        max_tokens: token budget (VPD: 40, 77 for G-Ref; ``None`` = that default).
        image_size: side of the square inputs (VPD: 512).
        train_split, val_split, test_split: split names.
        batch_size: training batch size; eval_batch_size: validation/test batch size.
        num_workers, pin_memory, persistent_workers, prefetch_factor: DataLoader settings (see VPDDataModule).
        sample_seeding: seed each training sample by (seed, epoch, index) (see :mod:`vpd_lightning.data.sampling`).
        overlap_quirk: REFER's polygon-overlap rule (see :func:`decode_mask`).
    """

    def __init__(
        self,
        root: str | Path,
        dataset: str = "refcoco",
        split_by: str | None = "unc",
        tokenizer: Any = None,
        max_tokens: int | None = 40,
        image_size: int = 512,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "val",
        batch_size: int = 4,
        eval_batch_size: int = 8,
        num_workers: int = 8,
        overlap_quirk: bool = True,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int | None = None,
        sample_seeding: bool = False,
    ) -> None:
        super().__init__()
        is_name = tokenizer is None or isinstance(tokenizer, (str, os.PathLike))
        self.save_hyperparameters(ignore=[] if is_name else ["tokenizer"])
        self.split_by = check_choice(dataset, split_by)
        for split in (train_split, val_split, test_split):
            check_choice(dataset, self.split_by, split)
        verify_layout(root, dataset, self.split_by)
        self.root = Path(root).expanduser()
        self.tokenizer = _resolve_tokenizer(tokenizer)
        self.train_set: RefCOCODataset | None = None
        self.val_set: RefCOCODataset | None = None
        self.test_set: RefCOCODataset | None = None
        self._built: dict[tuple[str, bool], RefCOCODataset] = {}  # (split, train) -> data set, reused by stages

    def setup(self, stage: str | None = None) -> None:
        wanted = []
        if stage in (None, "fit") and self.train_set is None:
            wanted.append(("train_set", self.hparams.train_split, True))
        if stage in (None, "fit", "validate") and self.val_set is None:
            wanted.append(("val_set", self.hparams.val_split, False))
        if stage in (None, "test", "predict") and self.test_set is None:
            wanted.append(("test_set", self.hparams.test_split, False))
        missing = [(split, train) for _, split, train in wanted if (split, train) not in self._built]
        if missing:
            hp = self.hparams
            data = ReferData.load(self.root, hp.dataset, self.split_by)  # read once, shared by the splits
            for split, train in dict.fromkeys(missing):
                self._built[split, train] = RefCOCODataset(
                    self.root,
                    hp.dataset,
                    self.split_by,
                    split,
                    tokenizer=self.tokenizer,
                    max_tokens=hp.max_tokens,
                    image_size=hp.image_size,
                    train=train,
                    overlap_quirk=hp.overlap_quirk,
                    refer_data=data,
                )
        for attr, split, train in wanted:
            setattr(self, attr, self._built[split, train])
