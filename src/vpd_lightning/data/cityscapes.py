"""Cityscapes semantic segmentation in the mmsegmentation layout, and what the paired segmentation modules share.

Expected layout (``root`` is the ``cityscapes`` folder)::

    cityscapes/
      leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
      gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png

``*_labelTrainIds.png`` are 8-bit labels with the 19 evaluation classes 0..18 (:data:`CITYSCAPES_CLASSES`) and
255 = ignore, written from the official ``*_labelIds.png`` by mmsegmentation's ``tools/convert_datasets/
cityscapes.py`` or ``scripts/prepare_data.py cityscapes`` (:data:`CITYSCAPES_TRAIN_IDS`). The pipeline is the
ADE20K one (random rescale of the ``img_scale`` bound, cropping with the category-max-ratio rule, flip,
photometric distortion); evaluation slides windows over the image resized to ``test_scale``, as mmseg.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vpd_lightning.data.ade20k import SegmentationFolderDataset
from vpd_lightning.data.base import VPDDataModule
from vpd_lightning.data.errors import DataFormatError, DatasetNotFoundError

__all__ = ["CITYSCAPES_CLASSES", "CITYSCAPES_TRAIN_IDS", "CityscapesDataModule", "PairedSegmentationDataModule"]

#: the 19 evaluation classes, in trainId order (mmseg's ``CityscapesDataset.CLASSES``)
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip

#: labelId -> trainId of cityscapesScripts' ``labels.py`` (ids 0..33; every id not listed maps to 255)
CITYSCAPES_TRAIN_IDS: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
    28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
#: the labelIds of the official annotations (0 unlabeled ... 33 bicycle)
CITYSCAPES_NUM_LABEL_IDS = 34

LAYOUT = """\
  <root>/                       (the cityscapes folder)
    leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png
    gtFine/{train,val}/<city>/<name>_gtFine_labelTrainIds.png   (19 classes 0..18, 255 = ignore;
                                    scripts/prepare_data.py cityscapes writes them from *_labelIds.png)
"""


def missing_list(paths: Sequence[Path], show: int = 5) -> str:
    """``'a, b, c ... (N in all)'`` for error messages."""
    names = ", ".join(str(p) for p in paths[:show])
    return names + (f" ... ({len(paths)} in all)" if len(paths) > show else "")


class PairedSegmentationDataModule(VPDDataModule):
    """A segmentation data module over explicit ``(image, label)`` pairs per split (Cityscapes, VOC).

    Subclasses save their hyper-parameters (``class_names``, the pipeline options, ``train_split``,
    ``val_split``) and implement :meth:`pairs`; validation and test use ``val_split`` at batch size 1.
    """

    layout = ""

    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        raise NotImplementedError

    def _check_root(self, root: str | Path | None) -> Path:
        if root is None or str(root) in ("", "???"):
            raise DatasetNotFoundError(f"data.root is not set. Expected layout:\n{self.layout}")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetNotFoundError(f"data.root '{root}' does not exist. Expected layout:\n{self.layout}")
        return root

    def _dataset(self, split: str, train: bool) -> SegmentationFolderDataset:
        hp = self.hparams
        return SegmentationFolderDataset(
            "",
            "",
            num_classes=len(self.class_names),
            reduce_zero_label=False,
            train=train,
            crop_size=hp.crop_size,
            img_scale=hp.img_scale,
            ratio_range=hp.ratio_range,
            cat_max_ratio=hp.cat_max_ratio,
            photometric=hp.photometric,
            pairs=self.pairs(split),
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._dataset(self.hparams.train_split, train=True)
        if self.val_set is None:
            self.val_set = self._dataset(self.hparams.val_split, train=False)


class CityscapesDataModule(PairedSegmentationDataModule):
    """Cityscapes (fine annotations) for VPD segmentation: trains on ``train`` (2,975 images), validates and tests
    on ``val`` (500). ``batch_size`` is per device (mmseg's 80k schedule: 2 x 4 GPUs = 8)."""

    layout = LAYOUT

    def __init__(
        self,
        root: str | Path | None,
        class_names: Sequence[str] | None = None,
        crop_size: Sequence[int] = (512, 1024),
        img_scale: Sequence[int] = (2048, 1024),
        ratio_range: Sequence[float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        photometric: bool = True,
        train_split: str = "train",
        val_split: str = "val",
        batch_size: int = 2,
        num_workers: int = 8,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int | None = None,
        sample_seeding: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root = self._check_root(root)
        self.class_names = list(class_names or CITYSCAPES_CLASSES)
        self.pairs(val_split)  # checked now: a wrong root or unconverted labels stop the run at once

    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        image_dir, label_dir = self.root / "leftImg8bit" / split, self.root / "gtFine" / split
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise DatasetNotFoundError(
                    f"Cityscapes {split} split not found: '{folder}'. Expected layout:\n{LAYOUT}"
                )
        images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
        if not images:
            raise DatasetNotFoundError(f"no */*_leftImg8bit.png in '{image_dir}'. Expected layout:\n{LAYOUT}")
        labels = [
            label_dir / p.parent.name / p.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png") for p in images
        ]
        missing = [lab for lab in labels if not lab.is_file()]
        if missing:
            hint = ""
            if Path(str(missing[0]).replace("_labelTrainIds", "_labelIds")).is_file():
                hint = " (the *_labelIds.png are there: convert them with scripts/prepare_data.py cityscapes)"
            raise DataFormatError(f"Cityscapes {split}: label(s) missing: {missing_list(missing)}{hint}")
        return list(zip(images, labels, strict=True))
