"""NYU Depth v2 as VPD / GLPDepth / BTS lay it out on disk, and its LightningDataModule.

Expected layout (``root`` is the ``nyu_depth_v2`` folder)::

    nyu_depth_v2/
      sync/<scene>_<id>/rgb_00045.jpg, sync_depth_00045.png        # BTS "sync" training subset (24,231 pairs)
      official_splits/test/<scene>/rgb_00045.jpg, sync_depth_00045.png   # the 654 official test images
      train_list.txt    # "/<scene>_<id>/rgb_00045.jpg /<scene>_<id>/sync_depth_00045.png" per line
      test_list.txt     # "/<scene>/rgb_00045.jpg /<scene>/sync_depth_00045.png" per line

The list files are VPD's ``depth/dataset/filenames/nyudepthv2/{train,test}_list.txt`` (other paths can be given
with ``train_list``/``test_list``). RGB is 8-bit, depth a 16-bit PNG in millimetres (0 = no measurement).

Each sample also gets its scene-class id for the prompt (vpd-reference §4.1): the index of the first class
name that is a substring of ``"<dir>_<file>"`` (so ``office_kitchen_*`` -> ``kitchen``, a quirk kept by
default), or, with ``scene_match="exact"``, the class equal to the scene name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from vpd_lightning.data.base import VPDDataModule
from vpd_lightning.data.errors import DataFormatError, DatasetNotFoundError
from vpd_lightning.data.transforms import NYUTrainAugment, cutdepth, to_tensor_depth, to_tensor_image

__all__ = ["NYU_FOCAL_LENGTH", "NYU_SCENE_CLASSES", "NYUv2DataModule", "NYUv2Dataset", "scene_class_id"]

#: VPD's ``depth/nyu_class_list.json``: glob order of ``official_splits/train/*`` (typo "excercise" kept).
NYU_SCENE_CLASSES: tuple[str, ...] = (
    "printer_room", "bathroom", "living_room", "study", "conference_room", "study_room", "kitchen",
    "home_office", "bedroom", "dinette", "playroom", "indoor_balcony", "laundry_room", "basement",
    "excercise_room", "foyer", "home_storage", "cafe", "furniture_store", "office_kitchen", "student_lounge",
    "dining_room", "reception_room", "computer_lab", "classroom", "office", "bookstore",
)  # fmt: skip

#: Focal length in pixels at NYU's 640 px width (the value BTS / AdaBins use).
NYU_FOCAL_LENGTH = 518.8579

LAYOUT = """\
  <root>/                      (the nyu_depth_v2 folder)
    sync/<scene>_<id>/rgb_XXXXX.jpg + sync_depth_XXXXX.png       (training split)
    official_splits/test/<scene>/rgb_XXXXX.jpg + sync_depth_XXXXX.png   (test split)
    train_list.txt, test_list.txt   (VPD's depth/dataset/filenames/nyudepthv2/*.txt, or set data.train_list/test_list)
"""

_SPLIT_DIRS = {"train": "sync", "test": "official_splits/test"}


def scene_class_id(key: str, class_names: Sequence[str], rule: str = "first_substring") -> int | None:
    """Class index of a sample named ``key`` (``"<dir>_<file>"``), or ``None`` when no class matches.

    ``first_substring`` is VPD's rule; ``exact`` takes the directory's scene name (its ``_0001a``-style
    suffix removed) and requires an exact match.
    """
    if rule == "first_substring":
        return next((i for i, name in enumerate(class_names) if name in key), None)
    if rule == "exact":
        scene = re.sub(r"_\d{4}[a-z]?$", "", key.rsplit("_rgb_", 1)[0])
        return list(class_names).index(scene) if scene in class_names else None
    raise ValueError(f"data.scene_match must be 'first_substring' or 'exact', got '{rule}'")


def read_uint16_png(path: Path, unit: str) -> np.ndarray:
    """The ``uint16 [H, W]`` array of a single-channel 16-bit PNG (a depth map; ``unit`` says how its values read).

    Raises:
        DataFormatError: unreadable, or not a single-channel 16-bit PNG.
    """
    try:
        with Image.open(path) as img:
            mode = img.mode
            raw = np.asarray(img)
    except (UnidentifiedImageError, OSError) as err:
        raise DataFormatError(f"{path}: cannot read the depth PNG ({err})") from err
    if mode == "I" and raw.size and 0 <= raw.min() and raw.max() <= 65535:
        raw = raw.astype(np.uint16)  # Pillow < 10.3 opens 16-bit PNGs as 32-bit "I"
    if not (mode.startswith("I;16") or mode == "I") or raw.dtype != np.uint16:
        raise DataFormatError(
            f"{path}: depth must be a single-channel 16-bit PNG {unit}, got PIL mode '{mode}' ({raw.dtype})"
        )
    return raw


def _read_list(list_file: Path, data_dir: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataFormatError(f"{list_file}:{number}: expected '<rgb path> <depth path>', got '{line.strip()}'")
        rgb, depth = (data_dir / p.lstrip("/") for p in parts[:2])
        for path in (rgb, depth):
            if not path.is_file():
                raise DataFormatError(f"{list_file}:{number}: '{path}' does not exist")
        pairs.append((rgb, depth))
    if not pairs:
        raise DataFormatError(f"{list_file} lists no samples")
    return pairs


def verify_layout(root: str | Path, split: str, list_file: str | Path | None = None) -> tuple[Path, Path]:
    """Check that ``split`` of NYUv2 is on disk; return ``(data_dir, list_file)`` or raise with the layout."""
    root = Path(root).expanduser()
    if split not in _SPLIT_DIRS:
        raise ValueError(f"NYUv2 split must be one of {sorted(_SPLIT_DIRS)}, got '{split}'")
    data_dir = root / _SPLIT_DIRS[split]
    list_file = Path(list_file).expanduser() if list_file else root / f"{split}_list.txt"
    missing = [p for p in (root, data_dir, list_file) if not p.exists()]
    if missing:
        raise DatasetNotFoundError(
            f"NYUv2 {split} split not found: missing {', '.join(str(p) for p in missing)}.\n"
            f"Expected layout (set data.root):\n{LAYOUT}"
        )
    return data_dir, list_file


class NYUv2Dataset(Dataset):
    """One split of NYUv2.

    Samples are dicts: ``image`` float32 ``[3, H, W]`` in ``[0, 1]``, ``depth`` float32 ``[1, H, W]`` in metres,
    ``class_id`` (int64 scene class) and ``filename`` (``"<dir>_<file>"``). The training split is augmented as
    in VPD (CutDepth on every 4th sample when enabled, flip, random crop, photometric jitter); the test split
    returns full images.

    Args:
        root: the ``nyu_depth_v2`` folder.
        split: ``"train"`` or ``"test"``.
        list_file: the split's list file (default ``<root>/<split>_list.txt``).
        class_names: scene classes for the prompt (default :data:`NYU_SCENE_CLASSES`).
        scene_match: ``"first_substring"`` (VPD) or ``"exact"``.
        crop_size: training crop ``(h, w)`` (VPD: 480 x 480).
        cutdepth: apply CutDepth to every 4th training sample (VPD: yes).
        cutdepth_schedule: ``"every_4th"`` (VPD: every 4th sample a worker serves, a counter) or ``"random"``
            (probability 1/4 from the sample's own RNG draw: used with ``sample_seeding``, where the choice must
            not depend on which process or worker serves the sample).
        cutdepth_mode: ``"reference"`` (raw millimetres wrapped into uint8, as VPD) or ``"normalized"``.
        photometric: brightness/contrast, gamma and HSV jitter (VPD: yes).
        augment: augment (default: for the training split only).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        list_file: str | Path | None = None,
        class_names: Sequence[str] | None = None,
        scene_match: str = "first_substring",
        crop_size: Sequence[int] = (480, 480),
        cutdepth: bool = True,
        cutdepth_mode: str = "reference",
        photometric: bool = True,
        augment: bool | None = None,
        cutdepth_schedule: str = "every_4th",
    ) -> None:
        if cutdepth_schedule not in ("every_4th", "random"):
            raise ValueError(f"cutdepth_schedule must be 'every_4th' or 'random', got '{cutdepth_schedule}'")
        self.root = Path(root).expanduser()
        self.split = split
        self.data_dir, self.list_file = verify_layout(self.root, split, list_file)
        self.class_names = list(class_names or NYU_SCENE_CLASSES)
        self.pairs = _read_list(self.list_file, self.data_dir)
        self.keys = [f"{rgb.parent.name}_{rgb.name}" for rgb, _ in self.pairs]
        self.class_ids = []
        for (rgb, _), key in zip(self.pairs, self.keys, strict=True):
            class_id = scene_class_id(key, self.class_names, scene_match)
            if class_id is None:
                raise DataFormatError(
                    f"{rgb}: scene '{rgb.parent.name}' matches none of the {len(self.class_names)} scene classes "
                    f"({', '.join(self.class_names[:5])}, ...) with scene_match='{scene_match}'; "
                    "add it to data.class_names"
                )
            self.class_ids.append(class_id)
        self.augment = (split == "train") if augment is None else augment
        self.transform = NYUTrainAugment(tuple(crop_size), photometric=photometric) if self.augment else None
        self.cutdepth = cutdepth and self.augment
        self.cutdepth_mode = cutdepth_mode
        self.cutdepth_schedule = cutdepth_schedule
        self._count = 0  # VPD/GLPDepth: CutDepth on every 4th sample a worker serves

    def __len__(self) -> int:
        return len(self.pairs)

    @staticmethod
    def _read_rgb(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise DataFormatError(f"{path}: cannot read the RGB image ({err})") from err

    @staticmethod
    def _read_depth(path: Path, shape: tuple[int, int]) -> np.ndarray:
        depth = read_uint16_png(path, "in millimetres (uint16)")
        if depth.shape != shape:
            raise DataFormatError(
                f"{path}: depth is {depth.shape[1]}x{depth.shape[0]}, its RGB image is {shape[1]}x{shape[0]}"
            )
        return depth.astype(np.float32)

    def __getitem__(self, index: int) -> dict:
        rgb_path, depth_path = self.pairs[index]
        image = self._read_rgb(rgb_path)
        depth = self._read_depth(depth_path, image.shape[:2])
        if self.augment:
            if self.cutdepth_schedule == "random":
                due = bool(torch.rand(()) < 0.25)
            else:
                due = self._count % 4 == 0
            if self.cutdepth and due:
                image = cutdepth(image, depth, mode=self.cutdepth_mode)
            self._count += 1
            image, depth = self.transform(image, depth)
        return {
            "image": to_tensor_image(image),
            "depth": to_tensor_depth(depth),
            "class_id": torch.tensor(self.class_ids[index], dtype=torch.long),
            "filename": self.keys[index],
        }


class NYUv2DataModule(VPDDataModule):
    """NYUv2 for VPD depth: trains on ``sync/``, validates and tests on the 654 official test images.

    VPD validates on the test set every epoch and keeps the best epoch (vpd-reference §4.4); this module does
    the same (val and test are the test split). ``batch_size`` is per device (VPD: 3 x 8 GPUs = 24).

    The data root is checked at construction, so a wrong ``data.root`` stops a run at once.
    """

    def __init__(
        self,
        root: str | Path,
        train_list: str | Path | None = None,
        test_list: str | Path | None = None,
        class_names: Sequence[str] | None = None,
        scene_match: str = "first_substring",
        crop_size: Sequence[int] = (480, 480),
        batch_size: int = 3,
        eval_batch_size: int = 1,
        num_workers: int = 8,
        cutdepth: bool = True,
        cutdepth_mode: str = "reference",
        photometric: bool = True,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int | None = None,
        sample_seeding: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if root is None or str(root) in ("", "???"):
            raise DatasetNotFoundError(f"data.root is not set. Expected layout:\n{LAYOUT}")
        verify_layout(root, "test", test_list)
        self.root = Path(root).expanduser()
        self.class_names = list(class_names or NYU_SCENE_CLASSES)
        self.train_set: NYUv2Dataset | None = None
        self.test_set: NYUv2Dataset | None = None

    def _dataset(self, split: str) -> NYUv2Dataset:
        hp = self.hparams
        return NYUv2Dataset(
            self.root,
            split,
            list_file=hp.train_list if split == "train" else hp.test_list,
            class_names=self.class_names,
            scene_match=hp.scene_match,
            crop_size=hp.crop_size,
            cutdepth=hp.cutdepth,
            cutdepth_mode=hp.cutdepth_mode,
            photometric=hp.photometric,
            cutdepth_schedule="random" if hp.get("sample_seeding", False) else "every_4th",
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._dataset("train")
        if self.test_set is None:
            self.test_set = self._dataset("test")
        self.val_set = self.test_set  # VPD validates on the test split every epoch
