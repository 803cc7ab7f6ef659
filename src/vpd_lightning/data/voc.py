"""Pascal VOC 2012 semantic segmentation (with the SBD "aug" annotations) in the mmsegmentation layout.

Expected layout (``root`` is the ``VOC2012`` folder, ``VOCdevkit/VOC2012``)::

    VOC2012/
      JPEGImages/2007_000032.jpg ...
      SegmentationClass/2007_000032.png ...        palette PNGs, 0 = background, 1..20 classes, 255 = border
      SegmentationClassAug/2008_000002.png ...     SBD's masks as 8-bit PNGs (mmseg's tools/convert_datasets/voc_aug.py)
      ImageSets/Segmentation/train.txt  val.txt    (1,464 / 1,449 names)
      ImageSets/Segmentation/aug.txt               (10,582 names: SBD train+val and VOC train, minus VOC val)

Training follows mmseg's ``pascal_voc12_aug.py``: ``train.txt`` with ``SegmentationClass`` and ``aug.txt`` with
``SegmentationClassAug`` concatenated (``data.train_lists`` / ``data.ann_dirs`` pairwise; ``[train]`` /
``[SegmentationClass]`` for VOC alone), 21 classes (:data:`VOC_CLASSES`, background included), 255 ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vpd_lightning.data.cityscapes import PairedSegmentationDataModule, missing_list
from vpd_lightning.data.errors import DataFormatError, DatasetNotFoundError

__all__ = ["VOC_CLASSES", "VOCDataModule", "voc_colormap"]

#: mmseg's ``PascalVOCDataset.CLASSES``
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def voc_colormap() -> np.ndarray:
    """The 256 x 3 PASCAL VOC colour map (bit-interleaved class index), as in the devkit's ``VOClabelcolormap``."""
    cmap = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


LAYOUT = """\
  <root>/                       (VOCdevkit/VOC2012)
    JPEGImages/<name>.jpg
    SegmentationClass/<name>.png, SegmentationClassAug/<name>.png   (0..20, 255 = ignore)
    ImageSets/Segmentation/{train,val,aug}.txt   (one name per line)
"""


class VOCDataModule(PairedSegmentationDataModule):
    """Pascal VOC 2012 (+ SBD aug) for VPD segmentation: trains on ``train_lists`` (read with ``ann_dirs``),
    validates and tests on ``val_split`` with ``SegmentationClass``. ``batch_size`` is per device (mmseg's
    schedule: 4 x 4 GPUs = 16)."""

    layout = LAYOUT

    def __init__(
        self,
        root: str | Path | None,
        class_names: Sequence[str] | None = None,
        train_lists: Sequence[str] = ("train", "aug"),
        ann_dirs: Sequence[str] = ("SegmentationClass", "SegmentationClassAug"),
        val_split: str = "val",
        crop_size: Sequence[int] = (512, 512),
        img_scale: Sequence[int] = (2048, 512),
        ratio_range: Sequence[float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        photometric: bool = True,
        batch_size: int = 4,
        num_workers: int = 8,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int | None = None,
        sample_seeding: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if len(train_lists) != len(ann_dirs):
            raise ValueError(
                f"data.train_lists ({list(train_lists)}) and data.ann_dirs ({list(ann_dirs)}) pair one to one"
            )
        self.root = self._check_root(root)
        self.class_names = list(class_names or VOC_CLASSES)
        self.hparams.train_split = "train"
        self.pairs(val_split)

    def _list(self, name: str, ann_dir: str) -> list[tuple[Path, Path]]:
        list_file = self.root / "ImageSets" / "Segmentation" / f"{name}.txt"
        if not list_file.is_file():
            raise DatasetNotFoundError(f"VOC list '{list_file}' does not exist. Expected layout:\n{LAYOUT}")
        names = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        if not names:
            raise DataFormatError(f"{list_file} lists no images")
        pairs = [(self.root / "JPEGImages" / f"{n}.jpg", self.root / ann_dir / f"{n}.png") for n in names]
        missing = [p for pair in pairs for p in pair if not p.is_file()]
        if missing:
            raise DataFormatError(f"{list_file}: listed file(s) missing: {missing_list(missing)}")
        return pairs

    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        if split == "train":
            return [
                p for name, ann in zip(self.hparams.train_lists, self.hparams.ann_dirs) for p in self._list(name, ann)
            ]
        return self._list(split, "SegmentationClass")
