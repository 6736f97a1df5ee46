"""CIFAR-10 and CIFAR-100 from their "python version" folders.

Verification policy. Every CIFAR file, official or not, is read only through
`RestrictedUnpickler` (see `safe_pickle`), so no file can run code. On top of
that, a file holding a full official batch (10,000 images; 50,000 for the
CIFAR-100 training file) must match the official md5, otherwise it is refused
as corrupted. A shorter file (a subset of the official data, as in test data
folders) has no published checksum: it is accepted after the restricted
unpickler and a schema check (uint8 array of N x 3072, N labels in range).
Downloads are verified against the archive's official md5 before extraction.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsim.data.download import (
    RemoteFile,
    download_file,
    extract_tar_safely,
    file_md5,
    missing_files_error,
)
from fedsim.data.images import LabeledImages, check_split, to_labeled_images
from fedsim.data.info import DatasetInfo
from fedsim.data.root import resolve_data_root
from fedsim.data.safe_pickle import restricted_loads
from fedsim.errors import DataError

_PIXELS = 3 * 32 * 32

CIFAR10_INFO = DatasetInfo(
    name="cifar10",
    input_shape=(3, 32, 32),
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    class_names=(
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
)

# fmt: off
_CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe",
    "whale", "willow_tree", "wolf", "woman", "worm",
)
# fmt: on

CIFAR100_INFO = DatasetInfo(
    name="cifar100",
    input_shape=(3, 32, 32),
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    class_names=_CIFAR100_CLASSES,
)


@dataclass(frozen=True)
class BatchFile:
    """One pickle of a CIFAR folder: name, official md5 and how many images the official file holds."""

    filename: str
    md5: str
    full_size: int


@dataclass(frozen=True)
class CifarDataset:
    """Where a CIFAR data set lives, which files make each split, and how to fetch it."""

    info: DatasetInfo
    folder: str
    splits: dict[str, tuple[BatchFile, ...]]
    meta: BatchFile
    label_key: str
    names_key: str
    archive: RemoteFile

    def filenames(self) -> list[str]:
        files = [f.filename for batch in self.splits.values() for f in batch]
        return [*files, self.meta.filename]


CIFAR10 = CifarDataset(
    info=CIFAR10_INFO,
    folder="cifar-10-batches-py",
    splits={
        "train": (
            BatchFile("data_batch_1", "c99cafc152244af753f735de768cd75f", 10_000),
            BatchFile("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec", 10_000),
            BatchFile("data_batch_3", "54ebc095f3ab1f0389bbae665268c751", 10_000),
            BatchFile("data_batch_4", "634d18415352ddfa80567beed471001a", 10_000),
            BatchFile("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb", 10_000),
        ),
        "test": (BatchFile("test_batch", "40351d587109b95175f43aff81a1287e", 10_000),),
    },
    meta=BatchFile("batches.meta", "5ff9c542aee3614f3951f8cda6e48888", 0),
    label_key="labels",
    names_key="label_names",
    archive=RemoteFile(
        "cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    ),
)

CIFAR100 = CifarDataset(
    info=CIFAR100_INFO,
    folder="cifar-100-python",
    splits={
        "train": (BatchFile("train", "16019d7e3df5f24257cddd939b257f8d", 50_000),),
        "test": (BatchFile("test", "f0ef6b0ae62326f3e7ffdfab6717acfc", 10_000),),
    },
    meta=BatchFile("meta", "7973b15100ade9c7d40fb424638fde48", 0),
    label_key="fine_labels",
    names_key="fine_label_names",
    archive=RemoteFile(
        "cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
    ),
)


def read_cifar_split(
    dataset: CifarDataset, split: str, root: Path, download: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Uint8 images (N, 3, 32, 32) and int64 labels of one split, batches concatenated in order."""
    check_split(split)
    folder = root / dataset.folder
    _ensure_files(dataset, root, folder, download)
    _check_class_names(dataset, folder / dataset.meta.filename)
    parts = [
        _read_batch(dataset, folder / batch.filename, batch) for batch in dataset.splits[split]
    ]
    images = np.concatenate([images for images, _ in parts]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([labels for _, labels in parts])
    return images, labels


def _ensure_files(dataset: CifarDataset, root: Path, folder: Path, download: bool) -> None:
    missing = [name for name in dataset.filenames() if not (folder / name).is_file()]
    if not missing:
        return
    name = dataset.info.name
    if not download:
        reason = "folder not found" if not folder.is_dir() else f"missing {', '.join(missing)}"
        raise missing_files_error(name, folder, dataset.filenames(), reason)
    archive = root / dataset.archive.filename
    if not archive.is_file() or file_md5(archive) != dataset.archive.md5:
        archive = download_file(dataset.archive, root, name)
    extract_tar_safely(archive, root, name)
    still_missing = [n for n in dataset.filenames() if not (folder / n).is_file()]
    if still_missing:
        raise missing_files_error(
            name, folder, dataset.filenames(), f"{archive.name} lacks {', '.join(still_missing)}"
        )


def _load_pickle(path: Path) -> tuple[Any, str]:
    """The restricted-unpickled content of `path` and its md5, cached per path/size/mtime."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise DataError(f"cannot read {path.name} in {path.parent}: {exc.strerror or exc}") from exc
    return _load_pickle_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _load_pickle_cached(path: str, size: int, mtime_ns: int) -> tuple[Any, str]:
    del size, mtime_ns  # part of the cache key only
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {file.name} in {file.parent}: {exc}") from exc
    content = restricted_loads(data, file.name)
    if isinstance(content, dict) and isinstance(content.get("data"), np.ndarray):
        content["data"].flags.writeable = False
    return content, hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read_batch(
    dataset: CifarDataset, path: Path, batch: BatchFile
) -> tuple[np.ndarray, np.ndarray]:
    content, md5 = _load_pickle(path)
    name = path.name
    if not isinstance(content, dict):
        raise DataError(f"{name}: expected a dict, the pickle holds {type(content).__name__}")
    data = content.get("data")
    labels = content.get(dataset.label_key)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _PIXELS
    ):
        shape = getattr(data, "shape", None)
        raise DataError(
            f"{name}: 'data' must be a uint8 array of N x {_PIXELS}, got {type(data).__name__} {shape}"
        )
    if labels is None:
        raise DataError(
            f"{name}: no {dataset.label_key!r} entry; is this a {dataset.info.name} file?"
        )
    try:
        label_array = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: {dataset.label_key!r} is not a list of integers") from exc
    if label_array.shape != (data.shape[0],):
        raise DataError(
            f"{name}: {data.shape[0]} images but {dataset.label_key!r} has shape {label_array.shape}"
        )
    if label_array.size and (
        label_array.min() < 0 or label_array.max() >= dataset.info.num_classes
    ):
        raise DataError(f"{name}: labels outside 0..{dataset.info.num_classes - 1}")
    if data.shape[0] > batch.full_size:
        raise DataError(f"{name}: {data.shape[0]} images, more than the official {batch.full_size}")
    if data.shape[0] == batch.full_size and md5 != batch.md5:
        raise DataError(
            f"{name} in {path.parent}: checksum mismatch for a full official batch "
            f"(md5 {md5}, expected {batch.md5}); the file is corrupted, fetch it again"
        )
    return data, label_array


def _check_class_names(dataset: CifarDataset, path: Path) -> None:
    content, _ = _load_pickle(path)
    names = content.get(dataset.names_key) if isinstance(content, dict) else None
    if not isinstance(names, list) or tuple(names) != dataset.info.class_names:
        raise DataError(
            f"{path.name} in {path.parent}: {dataset.names_key!r} does not list the "
            f"{dataset.info.num_classes} {dataset.info.name} class names; is this the right folder?"
        )


def _load(
    dataset: CifarDataset, split: str, root: str | Path | None, download: bool, dtype: torch.dtype
) -> LabeledImages:
    images, labels = read_cifar_split(dataset, split, resolve_data_root(root), download)
    return to_labeled_images(images, labels, dataset.info, split, dtype)


def load_cifar10(
    split: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    dtype: torch.dtype = torch.float32,
) -> LabeledImages:
    """CIFAR-10 `split` from `<root>/cifar-10-batches-py` (subsets of the official batches accepted)."""
    return _load(CIFAR10, split, root, download, dtype)


def load_cifar100(
    split: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    dtype: torch.dtype = torch.float32,
) -> LabeledImages:
    """CIFAR-100 `split` with its 100 fine labels from `<root>/cifar-100-python`."""
    return _load(CIFAR100, split, root, download, dtype)
