"""Data sets by name: the table behind `load_dataset` and `fedsim list datasets`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fedsim.data.adult import ADULT_SAMPLE_INFO, load_adult_sample
from fedsim.data.cifar import CIFAR10_INFO, CIFAR100_INFO, load_cifar10, load_cifar100
from fedsim.data.images import LabeledImages
from fedsim.data.info import DatasetInfo
from fedsim.data.mnist import FASHION_MNIST_INFO, MNIST_INFO, load_fashion_mnist, load_mnist
from fedsim.data.sample import MNIST_SAMPLE_INFO, load_mnist_sample
from fedsim.errors import ConfigError

#: loader(split, root, *, download, dtype) -> LabeledImages (images, or feature rows)
Loader = Callable[..., LabeledImages]


@dataclass(frozen=True)
class DatasetEntry:
    """One registered data set: its name, a one-line summary, static info and loader."""

    name: str
    summary: str
    info: DatasetInfo
    loader: Loader
    needs_root: bool = True
    train_samples: int | None = None
    """Size of the training split, known without loading it (scenario checks use it)."""


DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry(
            "mnist-sample",
            "packaged real MNIST sample, 2,000 + 500; offline default",
            MNIST_SAMPLE_INFO,
            load_mnist_sample,
            needs_root=False,
            train_samples=2_000,
        ),
        DatasetEntry(
            "adult-sample",
            "packaged real UCI Adult census rows, 2,000 + 500; tabular, one-hot categories",
            ADULT_SAMPLE_INFO,
            load_adult_sample,
            needs_root=False,
            train_samples=2_000,
        ),
        DatasetEntry(
            "mnist",
            "MNIST handwritten digits, 60,000 + 10,000",
            MNIST_INFO,
            load_mnist,
            train_samples=60_000,
        ),
        DatasetEntry(
            "fashion-mnist",
            "Zalando clothing images, 60,000 + 10,000",
            FASHION_MNIST_INFO,
            load_fashion_mnist,
            train_samples=60_000,
        ),
        DatasetEntry(
            "cifar10",
            "CIFAR-10 colour images, 50,000 + 10,000",
            CIFAR10_INFO,
            load_cifar10,
            train_samples=50_000,
        ),
        DatasetEntry(
            "cifar100",
            "CIFAR-100 colour images, fine labels, 50,000 + 10,000",
            CIFAR100_INFO,
            load_cifar100,
            train_samples=50_000,
        ),
    )
}

#: Column names of `dataset_rows`.
DATASET_COLUMNS = ("name", "shape", "classes", "summary")


def get_dataset(name: str) -> DatasetEntry:
    """The registered entry for `name`; a `ConfigError` listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise ConfigError(f"unknown data set {name!r}; known data sets: {known}") from None


def load_dataset(
    name: str,
    split: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    dtype: torch.dtype = torch.float32,
) -> LabeledImages:
    """Load split 'train' or 'test' of data set `name` (root resolved by `resolve_data_root`)."""
    return get_dataset(name).loader(split, root, download=download, dtype=dtype)


def dataset_rows() -> list[tuple[str, ...]]:
    """One row of strings per data set, in `DATASET_COLUMNS` order, for `fedsim list datasets`."""
    return [
        (
            entry.name,
            "x".join(str(size) for size in entry.info.input_shape),
            str(entry.info.num_classes),
            entry.summary,
        )
        for entry in DATASETS.values()
    ]
