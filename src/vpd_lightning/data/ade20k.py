"""ADE20K (ADEChallengeData2016) and any folder of images + label PNGs, with mmseg 0.x's VPD pipeline.

Expected layout (``root`` is the ``ADEChallengeData2016`` folder)::

    ADEChallengeData2016/
      images/training/ADE_train_00000001.jpg ...       annotations/training/ADE_train_00000001.png ...
      images/validation/ADE_val_00000001.jpg ...       annotations/validation/ADE_val_00000001.png ...

Labels are 8-bit PNGs, 0 = "other" and 1..150 the classes; ``reduce_zero_label`` maps 0 -> 255 (ignored) and
k -> k-1. Training: random rescale (ratio 0.5-2.0 of the (2048, 512) bound), 512 crop with the 0.75
category-max-ratio rule, flip, photometric distortion, padding (image mid-grey, label 255). Evaluation returns
the original image and label; the task resizes and slides windows itself (vpd-reference §3.5-3.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from vpd_lightning.data.base import VPDDataModule
from vpd_lightning.data.errors import DataFormatError, DatasetNotFoundError
from vpd_lightning.data.seg_transforms import ADE20KTrainTransform

__all__ = ["ADE20K_CLASSES", "ADE20K_NUM_CLASSES", "ADE20KDataModule", "ADE20KDataset", "SegmentationFolderDataset"]

# mmsegmentation's ``ADE20KDataset`` class list, in order: row i is training label i after
# reduce-zero-label, i.e. ADE label i + 1.  'bed ' keeps mmseg's trailing space on purpose.
ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed ", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island",
    "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy",
    "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce",
    "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip

ADE20K_NUM_CLASSES = 150

LAYOUT = """\
  <root>/                       (the ADEChallengeData2016 folder)
    images/{training,validation}/*.jpg
    annotations/{training,validation}/*.png   (same stems; 8-bit labels, 0 = other, 1..150 = classes)
"""

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class SegmentationFolderDataset(Dataset):
    """Images in ``image_dir`` with same-stem label PNGs in ``label_dir``.

    Samples: ``image`` float32 ``[3, H, W]`` in ``[0, 1]``, ``label`` int64 ``[H, W]`` (255 = ignore),
    ``filename``. With ``train=True`` the VPD training pipeline is applied and samples are padded to
    ``crop_size`` (image 0.5, i.e. 0 after the [-1, 1] normalisation, as mmseg pads after normalising).

    Args:
        image_dir, label_dir: the folders.
        num_classes: labels (after reduction) must be < num_classes or 255.
        reduce_zero_label: 0 -> 255 and k -> k-1 (ADE20K).
        train: augment (training pipeline) or not (original images for evaluation).
        crop_size, img_scale, ratio_range, cat_max_ratio, photometric: the training pipeline.
        pairs: ``(image, label)`` paths given directly (Cityscapes, VOC lists); the two folders are then unused.
    """

    def __init__(
        self,
        image_dir: str | Path,
        label_dir: str | Path,
        num_classes: int,
        reduce_zero_label: bool = True,
        train: bool = False,
        crop_size: Sequence[int] = (512, 512),
        img_scale: Sequence[int] = (2048, 512),
        ratio_range: Sequence[float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        photometric: bool = True,
        ignore_index: int = 255,
        pairs: Sequence[tuple[Path, Path]] | None = None,
    ) -> None:
        self.image_dir, self.label_dir = Path(image_dir), Path(label_dir)
        if pairs is not None:
            self.images = [Path(i) for i, _ in pairs]
            self.labels = [Path(lab) for _, lab in pairs]
        else:
            for folder in (self.image_dir, self.label_dir):
                if not folder.is_dir():
                    raise DatasetNotFoundError(f"'{folder}' does not exist. Expected layout:\n{LAYOUT}")
            self.images = sorted(p for p in self.image_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not self.images:
                raise DatasetNotFoundError(
                    f"no images (*.jpg, *.png) in '{self.image_dir}'. Expected layout:\n{LAYOUT}"
                )
            self.labels = [self.label_dir / f"{p.stem}.png" for p in self.images]
        missing = [(i, lab) for i, lab in zip(self.images, self.labels, strict=True) if not lab.is_file()]
        if missing:
            image, label = missing[0]
            raise DataFormatError(
                f"{image}: its annotation '{label}' does not exist ({len(missing)} image(s) without annotation)"
            )
        self.num_classes = num_classes
        self.reduce_zero_label = reduce_zero_label
        self.ignore_index = ignore_index
        self.train = train
        self.crop_size = tuple(crop_size)
        self.transform = (
            ADE20KTrainTransform(
                crop_size=self.crop_size,
                img_scale=tuple(img_scale),
                ratio_range=tuple(ratio_range),
                cat_max_ratio=cat_max_ratio,
                photometric=photometric,
                ignore_index=ignore_index,
            )
            if train
            else None
        )

    def __len__(self) -> int:
        return len(self.images)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, label_path = self.images[index], self.labels[index]
        try:
            with Image.open(image_path) as img:
                image = np.array(img.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise DataFormatError(f"{image_path}: cannot read the image ({err})") from err
        try:
            with Image.open(label_path) as lab:
                if lab.mode not in ("L", "P"):
                    raise DataFormatError(
                        f"{label_path}: labels must be an 8-bit single-channel PNG, got mode '{lab.mode}'"
                    )
                label = np.array(lab)
        except (UnidentifiedImageError, OSError) as err:
            raise DataFormatError(f"{label_path}: cannot read the annotation ({err})") from err
        if label.shape != image.shape[:2]:
            raise DataFormatError(
                f"{label_path}: annotation is {label.shape[1]}x{label.shape[0]}, its image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        if self.reduce_zero_label:
            label = label.astype(np.int16) - 1
            label[label < 0] = self.ignore_index
            label = label.astype(np.uint8)
        bad = np.unique(label[(label >= self.num_classes) & (label != self.ignore_index)])
        if bad.size:
            shown = bad + 1 if self.reduce_zero_label else bad
            allowed = f"0..{self.num_classes}" if self.reduce_zero_label else f"0..{self.num_classes - 1} or 255"
            raise DataFormatError(f"{label_path}: label values {shown.tolist()} outside {allowed}")
        return image, label

    def __getitem__(self, index: int) -> dict:
        image, label = self._read(index)
        if self.train:
            image, label = self.transform(image, label)
        image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        label_t = torch.from_numpy(np.ascontiguousarray(label)).long()
        if self.train:
            image_t, label_t = _pad(image_t, label_t, self.crop_size, self.ignore_index)
        return {"image": image_t, "label": label_t, "filename": self.images[index].name}


def _pad(image: torch.Tensor, label: torch.Tensor, size: tuple[int, int], ignore: int):
    h, w = label.shape
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if ph or pw:
        image = torch.nn.functional.pad(image, (0, pw, 0, ph), value=0.5)
        label = torch.nn.functional.pad(label, (0, pw, 0, ph), value=ignore)
    return image, label


class ADE20KDataset(SegmentationFolderDataset):
    """ADE20K in the ADEChallengeData2016 layout; ``split`` is ``"training"`` or ``"validation"``."""

    splits = ("training", "validation")

    def __init__(self, root: str | Path, split: str = "training", **kwargs) -> None:
        if split not in self.splits:
            raise ValueError(f"ADE20K split must be one of {self.splits}, got '{split}'")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetNotFoundError(f"ADE20K root '{root}' does not exist. Expected layout:\n{LAYOUT}")
        kwargs.setdefault("num_classes", 150)
        kwargs.setdefault("train", split == "training")
        super().__init__(root / "images" / split, root / "annotations" / split, **kwargs)


class ADE20KDataModule(VPDDataModule):
    """ADE20K (or any image/label folder pair) for VPD segmentation.

    ``batch_size`` is per device (VPD: 2 x 8 GPUs = 16). Validation and test use the validation split with
    batch size 1 (original image sizes). For a custom data set set ``image_dirs``/``label_dirs`` and
    ``class_names``; ``root`` is then unused.
    """

    def __init__(
        self,
        root: str | Path | None,
        class_names: Sequence[str] | None = None,
        reduce_zero_label: bool = True,
        crop_size: Sequence[int] = (512, 512),
        img_scale: Sequence[int] = (2048, 512),
        ratio_range: Sequence[float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        photometric: bool = True,
        batch_size: int = 2,
        num_workers: int = 8,
        image_dirs: dict[str, str] | None = None,
        label_dirs: dict[str, str] | None = None,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int | None = None,
        sample_seeding: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.class_names = list(class_names or ADE20K_CLASSES)
        if image_dirs is None:
            if root is None or str(root) in ("", "???"):
                raise DatasetNotFoundError(f"data.root is not set. Expected layout:\n{LAYOUT}")
            root = Path(root).expanduser()
            image_dirs = {s: str(root / "images" / s) for s in ADE20KDataset.splits}
            label_dirs = {s: str(root / "annotations" / s) for s in ADE20KDataset.splits}
        self.image_dirs, self.label_dirs = image_dirs, label_dirs or {}
        for split in ("validation",):
            for folder in (self.image_dirs.get(split), self.label_dirs.get(split)):
                if folder is None or not Path(folder).is_dir():
                    raise DatasetNotFoundError(
                        f"ADE20K {split} split not found: '{folder}'. Expected layout:\n{LAYOUT}"
                    )
        self.train_set = self.val_set = None

    def _dataset(self, split: str, train: bool) -> SegmentationFolderDataset:
        hp = self.hparams
        return SegmentationFolderDataset(
            self.image_dirs[split],
            self.label_dirs[split],
            num_classes=len(self.class_names),
            reduce_zero_label=hp.reduce_zero_label,
            train=train,
            crop_size=hp.crop_size,
            img_scale=hp.img_scale,
            ratio_range=hp.ratio_range,
            cat_max_ratio=hp.cat_max_ratio,
            photometric=hp.photometric,
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._dataset("training", train=True)
        if self.val_set is None:
            self.val_set = self._dataset("validation", train=False)
