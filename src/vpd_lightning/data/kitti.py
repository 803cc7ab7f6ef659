"""KITTI depth, Eigen split, in the BTS / GLPDepth layout, and its LightningDataModule.

Expected layout (``root`` is the ``kitti`` folder)::

    kitti/
      input/2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000005.png        KITTI raw (sync) images
      gt_depth/2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/0000000005.png   annotated depth
      train_list.txt   BTS's eigen_train_files_with_gt.txt (23,158 lines)
      test_list.txt    BTS's eigen_test_files_with_gt.txt (697 lines, 652 with ground truth)

A list line is ``<image, relative to input/> <depth, relative to gt_depth/, or None> <focal length>``; lines
whose depth is ``None`` (45 of the Eigen test images have no annotated depth) are skipped, as BTS and GLPDepth
do. Depth PNGs are 16-bit, value / 256 = metres, 0 = no measurement (``gt_depth`` is KITTI's
``data_depth_annotated`` with its ``train/`` and ``val/`` drives merged into one folder).

Both splits are first cut to the KB crop (Uhrig et al.; the bottom 352 rows and the centred 1216 columns), the
training split then randomly cropped to ``crop_size`` (GLPDepth: 352 x 704) with flip and colour jitter.
Evaluation (model options, see ``conf/experiment/kitti_vpd.yaml``): 1e-3 < depth < 80 m, the Garg crop
(``model.eval_crop=kitti_garg``; ``kitti_eigen`` as an option), the nine metrics per image averaged. As in
GLPDepth, the crop's fractions apply to the KB-cropped 352 x 1216 ground truth (BTS pastes the prediction back
into the full 375 x 1242 frame and applies them there: a band a few rows higher).

Prompts: one class per drive. ``class_names`` default to ``["road"]`` (every image the same prompt); with
``scene_file`` (lines ``<drive> <class>``, e.g. the KITTI raw categories ``city``, ``residential``, ``road``,
``campus``, ``person`` of :data:`KITTI_SCENE_CLASSES`) each drive gets its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vpd_lightning.data.base import VPDDataModule
from vpd_lightning.data.depth_folder import DepthPairsDataset
from vpd_lightning.data.errors import DataFormatError, DatasetNotFoundError

__all__ = ["KITTI_FOCAL", "KITTI_SCENE_CLASSES", "KITTIDataModule", "KITTIDataset", "read_kitti_list"]

#: the categories of the KITTI raw data (its download page), usable as ``class_names`` with a ``scene_file``
KITTI_SCENE_CLASSES: tuple[str, ...] = ("city", "residential", "road", "campus", "person")

#: The focal-length column of BTS's list files (the 2011_09_26 calibration), as written there.
KITTI_FOCAL = "721.5377"

LAYOUT = """\
  <root>/                       (the kitti folder)
    input/<date>/<drive>_sync/image_02/data/<frame>.png               (KITTI raw, synced)
    gt_depth/<drive>_sync/proj_depth/groundtruth/image_02/<frame>.png (data_depth_annotated, train+val merged)
    train_list.txt, test_list.txt   (BTS eigen_{train,test}_files_with_gt.txt, or set data.train_list/test_list)
"""


def read_kitti_list(list_file: Path, image_root: Path, depth_root: Path) -> tuple[list[tuple[Path, Path]], int]:
    """``(pairs, skipped)``: the ``(image, depth)`` paths of a BTS list file and the count of ``None`` depths."""
    pairs, skipped = [], 0
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataFormatError(
                f"{list_file}:{number}: expected '<image> <depth or None> [<focal>]', got '{line.strip()}'"
            )
        if parts[1] == "None":
            skipped += 1
            continue
        image, depth = image_root / parts[0].lstrip("/"), depth_root / parts[1].lstrip("/")
        for path in (image, depth):
            if not path.is_file():
                raise DataFormatError(f"{list_file}:{number}: '{path}' does not exist")
        pairs.append((image, depth))
    if not pairs:
        raise DataFormatError(f"{list_file} lists no samples with ground truth")
    return pairs, skipped


def _drive(image: Path) -> str:
    """``2011_09_26_drive_0001_sync`` of ``.../2011_09_26_drive_0001_sync/image_02/data/x.png``."""
    return image.parents[2].name


class KITTIDataset(DepthPairsDataset):
    """One split of the KITTI Eigen split (see the module docstring); samples as :class:`DepthPairsDataset`.

    Args:
        root: the ``kitti`` folder.
        split: ``"train"`` or ``"test"``.
        list_file: the split's list file (default ``<root>/<split>_list.txt``).
        class_names, scene_file: the prompt classes and the drive -> class file (module docstring).
        kb_crop: the KB crop ``(352, 1216)``, or ``None``.
        max_depth: ground truth above it is no measurement (80 m).
        crop_size, photometric, augment: training pipeline (augment: default for ``train``).
        image_dir, depth_dir: the two folders under ``root`` (``input``, ``gt_depth``).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        list_file: str | Path | None = None,
        class_names: Sequence[str] | None = None,
        scene_file: str | Path | None = None,
        kb_crop: Sequence[int] | None = (352, 1216),
        max_depth: float | None = 80.0,
        crop_size: Sequence[int] = (352, 704),
        photometric: bool = True,
        augment: bool | None = None,
        image_dir: str = "input",
        depth_dir: str = "gt_depth",
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"KITTI split must be 'train' or 'test', got '{split}'")
        self.root = Path(root).expanduser()
        list_path = Path(list_file).expanduser() if list_file else self.root / f"{split}_list.txt"
        missing = [p for p in (self.root, self.root / image_dir, self.root / depth_dir, list_path) if not p.exists()]
        if missing:
            raise DatasetNotFoundError(
                f"KITTI {split} split not found: missing {', '.join(str(p) for p in missing)}.\n"
                f"Expected layout (set data.root):\n{LAYOUT}"
            )
        pairs, self.skipped = read_kitti_list(list_path, self.root / image_dir, self.root / depth_dir)
        names = list(class_names or ["road"])
        class_ids = [0] * len(pairs)
        if scene_file:
            scenes = _read_scene_file(Path(scene_file).expanduser(), names)
            unknown = sorted({_drive(i) for i, _ in pairs} - set(scenes))
            if unknown:
                raise DataFormatError(
                    f"{scene_file}: no class for drive(s) {', '.join(unknown[:5])}"
                    + (" ..." if len(unknown) > 5 else "")
                )
            class_ids = [scenes[_drive(i)] for i, _ in pairs]
        super().__init__(
            pairs,
            class_ids,
            depth_scale=256.0,
            max_depth=max_depth,
            kb_crop=kb_crop,
            crop_size=crop_size,
            photometric=photometric,
            augment=(split == "train") if augment is None else augment,
        )
        self.keys = [f"{_drive(i)}_{i.name}" for i, _ in pairs]


def _read_scene_file(path: Path, class_names: Sequence[str]) -> dict[str, int]:
    if not path.is_file():
        raise DatasetNotFoundError(f"data.scene_file '{path}' does not exist")
    out = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in class_names:
            raise DataFormatError(
                f"{path}:{number}: expected '<drive> <class>' with a class of data.class_names {list(class_names)}, "
                f"got '{line.strip()}'"
            )
        out[parts[0]] = list(class_names).index(parts[1])
    return out


class KITTIDataModule(VPDDataModule):
    """KITTI Eigen split for VPD depth: trains on ``train_list``, validates and tests on ``test_list`` (the best
    epoch kept, as VPD does on NYUv2). ``batch_size`` is per device. The test split is checked at construction."""

    def __init__(
        self,
        root: str | Path,
        train_list: str | Path | None = None,
        test_list: str | Path | None = None,
        class_names: Sequence[str] | None = None,
        scene_file: str | Path | None = None,
        kb_crop: Sequence[int] | None = (352, 1216),
        max_depth: float | None = 80.0,
        crop_size: Sequence[int] = (352, 704),
        photometric: bool = True,
        batch_size: int = 3,
        eval_batch_size: int = 1,
        num_workers: int = 8,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int | None = None,
        sample_seeding: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if root is None or str(root) in ("", "???"):
            raise DatasetNotFoundError(f"data.root is not set. Expected layout:\n{LAYOUT}")
        self.root = Path(root).expanduser()
        self.class_names = list(class_names or ["road"])
        self.test_set = self._dataset("test")

    def _dataset(self, split: str) -> KITTIDataset:
        hp = self.hparams
        return KITTIDataset(
            self.root,
            split,
            list_file=hp.train_list if split == "train" else hp.test_list,
            class_names=self.class_names,
            scene_file=hp.scene_file,
            kb_crop=hp.kb_crop,
            max_depth=hp.max_depth,
            crop_size=hp.crop_size,
            photometric=hp.photometric,
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._dataset("train")
        if self.test_set is None:
            self.test_set = self._dataset("test")
        self.val_set = self.test_set
