"""MNIST and Fashion-MNIST from the standard layout `<root>/<Folder>/raw/*-ubyte.gz`.

Files already on disk are checked structurally (gzip CRC, IDX magic, sizes,
label range), not by md5: re-compressed copies of the official data are valid.
Downloads are verified against the official md5 of each `.gz` before use.
An uncompressed IDX file (name without `.gz`) is read when the `.gz` is absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedsim.data.download import RemoteFile, download_file, missing_files_error
from fedsim.data.idx import read_idx
from fedsim.data.images import LabeledImages, check_split, to_labeled_images
from fedsim.data.info import DatasetInfo
from fedsim.data.root import resolve_data_root
from fedsim.errors import DataError

_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_FASHION_MIRRORS = (
    "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

MNIST_INFO = DatasetInfo(
    name="mnist",
    input_shape=(1, 28, 28),
    num_classes=10,
    mean=(0.1307,),
    std=(0.3081,),
    class_names=tuple(str(digit) for digit in range(10)),
)

FASHION_MNIST_INFO = DatasetInfo(
    name="fashion-mnist",
    input_shape=(1, 28, 28),
    num_classes=10,
    mean=(0.2860,),
    std=(0.3530,),
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)


@dataclass(frozen=True)
class IdxDataset:
    """Where an MNIST-style data set lives and how to fetch it."""

    info: DatasetInfo
    folder: str
    files: dict[str, tuple[RemoteFile, RemoteFile]]  # split -> (images, labels)


def _remote(name: str, md5: str, mirrors: tuple[str, ...]) -> RemoteFile:
    return RemoteFile(name, md5, tuple(base + name for base in mirrors))


MNIST = IdxDataset(
    info=MNIST_INFO,
    folder="MNIST/raw",
    files={
        "train": (
            _remote(
                "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", _MNIST_MIRRORS
            ),
            _remote(
                "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", _MNIST_MIRRORS
            ),
        ),
        "test": (
            _remote(
                "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", _MNIST_MIRRORS
            ),
            _remote(
                "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", _MNIST_MIRRORS
            ),
        ),
    },
)

FASHION_MNIST = IdxDataset(
    info=FASHION_MNIST_INFO,
    folder="FashionMNIST/raw",
    files={
        "train": (
            _remote(
                "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", _FASHION_MIRRORS
            ),
            _remote(
                "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", _FASHION_MIRRORS
            ),
        ),
        "test": (
            _remote(
                "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", _FASHION_MIRRORS
            ),
            _remote(
                "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", _FASHION_MIRRORS
            ),
        ),
    },
)


def read_idx_split(
    dataset: IdxDataset, split: str, root: Path, download: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Uint8 images (N, 1, 28, 28) and int64 labels of one split, read-only views of the cache."""
    check_split(split)
    folder = root / dataset.folder
    image_file, label_file = dataset.files[split]
    paths = [_locate(remote, folder, dataset, download) for remote in (image_file, label_file)]
    images = read_idx(paths[0], expected_ndim=3)
    labels = read_idx(paths[1], expected_ndim=1)
    _, height, width = dataset.info.input_shape
    if images.dtype != np.uint8 or images.shape[1:] != (height, width):
        raise DataError(
            f"{paths[0].name}: expected uint8 images of {height}x{width}, got "
            f"{images.dtype} of shape {images.shape[1:]}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{paths[0].name} holds {images.shape[0]} images but {paths[1].name} holds "
            f"{labels.shape[0]} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= dataset.info.num_classes):
        raise DataError(f"{paths[1].name}: labels outside 0..{dataset.info.num_classes - 1}")
    return images[:, None, :, :], labels.astype(np.int64)


def _locate(remote: RemoteFile, folder: Path, dataset: IdxDataset, download: bool) -> Path:
    """The file on disk (.gz, else uncompressed), downloading it when allowed."""
    gz_path = folder / remote.filename
    if gz_path.is_file():
        return gz_path
    plain = folder / remote.filename.removesuffix(".gz")
    if plain.is_file():
        return plain
    if download:
        return download_file(remote, folder, dataset.info.name)
    expected = [f.filename for pair in dataset.files.values() for f in pair]
    reason = "folder not found" if not folder.is_dir() else f"{remote.filename} not found"
    raise missing_files_error(dataset.info.name, folder, expected, reason)


def _load(
    dataset: IdxDataset,
    split: str,
    root: str | Path | None,
    download: bool,
    dtype: torch.dtype,
) -> LabeledImages:
    images, labels = read_idx_split(dataset, split, resolve_data_root(root), download)
    return to_labeled_images(images, labels, dataset.info, split, dtype)


def load_mnist(
    split: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    dtype: torch.dtype = torch.float32,
) -> LabeledImages:
    """MNIST `split` ('train': 60,000, 'test': 10,000) from `<root>/MNIST/raw`."""
    return _load(MNIST, split, root, download, dtype)


def load_fashion_mnist(
    split: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    dtype: torch.dtype = torch.float32,
) -> LabeledImages:
    """Fashion-MNIST `split` from `<root>/FashionMNIST/raw`."""
    return _load(FASHION_MNIST, split, root, download, dtype)
