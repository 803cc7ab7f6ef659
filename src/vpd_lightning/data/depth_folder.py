"""Depth from your own folders (image + depth-map pairs), and what the depth data sets share.

Expected layout (``root``; every folder name can be changed, or list files given instead)::

    <root>/
      train/images/0001.jpg ...   train/depth/0001.png ...   [train/masks/0001.png ...]
      test/images/0001.jpg ...    test/depth/0001.png ...    [test/masks/0001.png ...]

Images and depth maps pair by file stem (``0001.jpg`` <-> ``0001.png`` or ``0001.npy``); or a list file per
split (``data.train_list``, ``data.test_list``) holds ``<image> <depth> [<class name>]`` per line, paths relative
to ``root`` (a leading ``/`` is ignored). Depth is a single-channel 16-bit PNG whose value divided by
``depth_scale`` is metres (1000: millimetres as NYUv2, 256: KITTI), or a ``.npy`` array of ``H x W`` metres.
0 (or a non-finite ``.npy`` value) is "no measurement"; values above ``max_depth`` are treated as no
measurement too. An optional mask PNG (same stem, in ``masks/``) marks valid pixels with non-zero values.

The evaluation split is the test split (as NYUv2 in VPD): validation after every epoch selects the best epoch.
ETH3D, ScanNet or DIODE exported as image + depth maps evaluate through this module, also with
``depth.protocol=affine_invariant``.
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
from vpd_lightning.data.nyuv2 import read_uint16_png
from vpd_lightning.data.transforms import NYUTrainAugment, to_tensor_image

__all__ = ["DepthFolderDataModule", "DepthPairsDataset", "pair_by_stem", "read_depth_map", "read_rgb"]

LAYOUT = """\
  <root>/
    train/images/<name>.jpg|png   train/depth/<name>.png|npy   [train/masks/<name>.png]
    test/images/<name>.jpg|png    test/depth/<name>.png|npy    [test/masks/<name>.png]
  or list files (data.train_list / data.test_list): '<image> <depth> [<class name>]' per line, relative to <root>
"""

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_DEPTH_SUFFIXES = (".png", ".npy")


def read_rgb(path: Path) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB of an image file, or :class:`DataFormatError` naming it."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise DataFormatError(f"{path}: cannot read the RGB image ({err})") from err


def read_depth_map(path: Path, depth_scale: float, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Depth in metres, ``float32 [H, W]`` (0 = no measurement), from a 16-bit PNG (value / ``depth_scale``) or
    a ``.npy`` array of metres; checked against the image ``shape`` ``(H, W)`` when given.

    Raises:
        DataFormatError: unreadable, not a 16-bit single-channel PNG, not a 2-D array, or of another size.
    """
    if path.suffix.lower() == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataFormatError(f"{path}: cannot read the depth array ({err})") from err
        if depth.ndim == 3 and depth.shape[-1] == 1:
            depth = depth[..., 0]
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
            raise DataFormatError(f"{path}: depth must be an H x W array of metres, got {depth.dtype} {depth.shape}")
        depth = depth.astype(np.float32)
        depth[~np.isfinite(depth)] = 0.0
    else:
        raw = read_uint16_png(path, f"(value / {depth_scale:g} = metres)")
        depth = raw.astype(np.float32) / np.float32(depth_scale)
    if shape is not None and depth.shape != tuple(shape):
        raise DataFormatError(
            f"{path}: depth is {depth.shape[1]}x{depth.shape[0]}, its RGB image is {shape[1]}x{shape[0]}"
        )
    return depth


def _read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as img:
            mask = np.asarray(img)
    except (UnidentifiedImageError, OSError) as err:
        raise DataFormatError(f"{path}: cannot read the valid-pixel mask ({err})") from err
    if mask.ndim != 2 or mask.shape != tuple(shape):
        raise DataFormatError(f"{path}: the valid mask must be a single-channel {shape[1]}x{shape[0]} PNG")
    return mask != 0


def pair_by_stem(image_dir: Path, depth_dir: Path, show: int = 5) -> list[tuple[Path, Path]]:
    """``(image, depth)`` pairs of two folders matched by file stem; every file must have its partner.

    Raises:
        DatasetNotFoundError: a folder is missing or holds no image.
        DataFormatError: names that do not pair, the first ``show`` of each side listed.
    """
    for folder in (image_dir, depth_dir):
        if not folder.is_dir():
            raise DatasetNotFoundError(f"'{folder}' does not exist. Expected layout:\n{LAYOUT}")
    images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES}
    depths = {p.stem: p for p in sorted(depth_dir.iterdir()) if p.suffix.lower() in _DEPTH_SUFFIXES}
    if not images:
        raise DatasetNotFoundError(f"no images (*.jpg, *.png) in '{image_dir}'. Expected layout:\n{LAYOUT}")
    lonely_images = sorted(set(images) - set(depths))
    lonely_depths = sorted(set(depths) - set(images))
    if lonely_images or lonely_depths:
        parts = []
        if lonely_images:
            names = ", ".join(images[s].name for s in lonely_images[:show])
            parts.append(f"{len(lonely_images)} image(s) in '{image_dir}' without a depth map: {names}")
        if lonely_depths:
            names = ", ".join(depths[s].name for s in lonely_depths[:show])
            parts.append(f"{len(lonely_depths)} depth map(s) in '{depth_dir}' without an image: {names}")
        more = " ..." if max(len(lonely_images), len(lonely_depths)) > show else ""
        raise DataFormatError(
            "image and depth names do not pair (same stem expected): " + "; ".join(parts) + more + " "
            "(or give a list file, data.train_list / data.test_list)"
        )
    return [(images[s], depths[s]) for s in sorted(images)]


def read_pair_list(list_file: Path, root: Path) -> list[tuple[Path, Path, str | None]]:
    """``(image, depth, class name or None)`` from a list file of ``<image> <depth> [<class>]`` lines."""
    if not list_file.is_file():
        raise DatasetNotFoundError(f"list file '{list_file}' does not exist. Expected layout:\n{LAYOUT}")
    out = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataFormatError(f"{list_file}:{number}: expected '<image> <depth> [<class>]', got '{line.strip()}'")
        image, depth = (root / p.lstrip("/") for p in parts[:2])
        for path in (image, depth):
            if not path.is_file():
                raise DataFormatError(f"{list_file}:{number}: '{path}' does not exist")
        out.append((image, depth, parts[2] if len(parts) > 2 else None))
    if not out:
        raise DataFormatError(f"{list_file} lists no samples")
    return out


class DepthPairsDataset(Dataset):
    """Image + metric-depth pairs: the samples of :class:`~vpd_lightning.data.NYUv2Dataset`'s kind.

    Samples: ``image`` float32 ``[3, H, W]`` in ``[0, 1]``, ``depth`` float32 ``[1, H, W]`` in metres (0 = no
    measurement), ``class_id`` int64, ``filename`` (the image's name). Training (``augment``): flip, random crop
    to ``crop_size``, photometric jitter (the NYUv2 pipeline without CutDepth).

    Args:
        pairs: ``(image, depth)`` paths.
        class_ids: the prompt class of each pair (default all 0).
        depth_scale: 16-bit PNG value per metre.
        max_depth: depths above it become 0 (no measurement); ``None`` keeps all.
        masks: per pair a valid-pixel mask PNG or ``None``.
        kb_crop: ``(h, w)``: first crop every image and depth map to the bottom ``h`` rows and the centred ``w``
            columns (KITTI's "KB crop", 352 x 1216), train and test alike; ``None``: no crop.
        crop_size, photometric, augment: the training pipeline.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        class_ids: Sequence[int] | None = None,
        depth_scale: float = 1000.0,
        max_depth: float | None = None,
        masks: Sequence[Path | None] | None = None,
        kb_crop: Sequence[int] | None = None,
        crop_size: Sequence[int] = (480, 480),
        photometric: bool = True,
        augment: bool = False,
    ) -> None:
        if not float(depth_scale) > 0:
            raise ValueError(f"data.depth_scale must be > 0, got {depth_scale}")
        self.pairs = [(Path(i), Path(d)) for i, d in pairs]
        self.class_ids = list(class_ids) if class_ids is not None else [0] * len(self.pairs)
        self.masks = list(masks) if masks is not None else [None] * len(self.pairs)
        self.depth_scale = float(depth_scale)
        self.max_depth = None if max_depth is None else float(max_depth)
        self.kb_crop = None if kb_crop is None else (int(kb_crop[0]), int(kb_crop[1]))
        self.augment = bool(augment)
        self.transform = NYUTrainAugment(tuple(crop_size), photometric=photometric) if augment else None
        self.keys = [rgb.name for rgb, _ in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def _kb_crop(self, array: np.ndarray, path: Path) -> np.ndarray:
        h, w = self.kb_crop
        height, width = array.shape[:2]
        if height < h or width < w:
            raise DataFormatError(f"{path}: {width}x{height} is smaller than the KB crop {w}x{h} (data.kb_crop)")
        top, left = height - h, (width - w) // 2
        return array[top : top + h, left : left + w]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``(uint8 image, float32 depth in metres)`` of pair ``index`` after the KB crop, before augmenting."""
        rgb_path, depth_path = self.pairs[index]
        image = read_rgb(rgb_path)
        depth = read_depth_map(depth_path, self.depth_scale, image.shape[:2])
        if self.masks[index] is not None:
            depth = np.where(_read_mask(self.masks[index], depth.shape), depth, 0.0).astype(np.float32)
        if self.max_depth is not None:
            depth = np.where(depth > self.max_depth, 0.0, depth).astype(np.float32)
        if self.kb_crop is not None:
            image, depth = self._kb_crop(image, rgb_path), self._kb_crop(depth, depth_path)
        return np.ascontiguousarray(image), np.ascontiguousarray(depth)

    def __getitem__(self, index: int) -> dict:
        image, depth = self.load(index)
        if self.augment:
            image, depth = self.transform(image, depth)
        return {
            "image": to_tensor_image(image),
            "depth": torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None],
            "class_id": torch.tensor(self.class_ids[index], dtype=torch.long),
            "filename": self.keys[index],
        }


def class_index(name: str | None, class_names: Sequence[str], where: str) -> int:
    """Index of a list file's class column in ``class_names`` (0 when the column is absent)."""
    if name is None:
        return 0
    names = [str(n) for n in class_names]
    if name not in names:
        raise DataFormatError(f"{where}: class '{name}' is not one of data.class_names {names[:8]}")
    return names.index(name)


class DepthFolderDataModule(VPDDataModule):
    """Your own depth data (see the module docstring): trains on ``train``, validates and tests on ``test``.

    Args:
        root: the folder holding the splits.
        train_list, test_list: list files instead of pairing by stem (paths relative to ``root``).
        split_dirs: folder of each split under ``root`` (``{train: train, test: test}``).
        image_dir, depth_dir, mask_dir: sub-folders of a split (``mask_dir`` optional: used when it exists).
        depth_scale: 16-bit PNG value per metre (1000 = millimetres, 256 = KITTI).
        max_depth: ground truth above it is no measurement (set it to the model's range, ``model.max_depth``).
        class_names: the prompt classes; a list file's third column picks one per image, else class 0.
        crop_size, photometric: training crop and colour jitter. Other arguments: see :class:`VPDDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        train_list: str | Path | None = None,
        test_list: str | Path | None = None,
        split_dirs: dict[str, str] | None = None,
        image_dir: str = "images",
        depth_dir: str = "depth",
        mask_dir: str = "masks",
        depth_scale: float = 1000.0,
        max_depth: float | None = 10.0,
        class_names: Sequence[str] | None = None,
        crop_size: Sequence[int] = (480, 480),
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
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"data.root '{self.root}' does not exist. Expected layout:\n{LAYOUT}")
        self.split_dirs = {"train": "train", "test": "test", **(split_dirs or {})}
        self.class_names = list(class_names or ["scene"])
        self._split("test")  # pairs checked now: a bad folder stops the run at once

    def _split(self, split: str) -> DepthPairsDataset:
        hp = self.hparams
        list_file = hp.train_list if split == "train" else hp.test_list
        base = self.root / self.split_dirs[split]
        if list_file:
            entries = read_pair_list(Path(list_file).expanduser(), self.root)
            pairs = [(i, d) for i, d, _ in entries]
            class_ids = [class_index(c, self.class_names, str(list_file)) for _, _, c in entries]
        else:
            pairs = pair_by_stem(base / hp.image_dir, base / hp.depth_dir)
            class_ids = None
        mask_dir = base / hp.mask_dir
        masks = None
        if mask_dir.is_dir():
            masks = [mask_dir / f"{Path(d).stem}.png" for _, d in pairs]
            missing = [m for m in masks if not m.is_file()]
            if missing:
                raise DataFormatError(f"'{missing[0]}' does not exist ({len(missing)} mask(s) missing in {mask_dir})")
        return DepthPairsDataset(
            pairs,
            class_ids,
            depth_scale=hp.depth_scale,
            max_depth=hp.max_depth,
            masks=masks,
            crop_size=hp.crop_size,
            photometric=hp.photometric,
            augment=split == "train",
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._split("train")
        if self.test_set is None:
            self.test_set = self._split("test")
        self.val_set = self.test_set
