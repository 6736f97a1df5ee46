"""The data set registry: names, errors, the listing rows and the common result type."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsim.data import DATASET_COLUMNS, DATASETS, dataset_rows, get_dataset, load_dataset
from fedsim.errors import ConfigError, DataError


def test_registered_names_and_infos() -> None:
    assert set(DATASETS) == {
        "adult-sample",
        "mnist",
        "mnist-sample",
        "fashion-mnist",
        "cifar10",
        "cifar100",
    }
    for name, entry in DATASETS.items():
        info = entry.info
        assert info.name == name and entry.name == name
        assert len(info.mean) == len(info.std) == info.input_shape[0]
        assert len(info.class_names) == info.num_classes
    assert DATASETS["cifar100"].info.num_classes == 100


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ConfigError, match="unknown data set 'imagenet'.*mnist-sample.*cifar100"):
        get_dataset("imagenet")
    with pytest.raises(ConfigError, match="unknown data set"):
        load_dataset("svhn", "train")


def test_rows_for_listing() -> None:
    rows = dataset_rows()
    assert [row[0] for row in rows] == list(DATASETS)
    assert all(len(row) == len(DATASET_COLUMNS) for row in rows)
    assert rows[0][:3] == ("mnist-sample", "1x28x28", "10")
    assert DATASET_COLUMNS == ("name", "shape", "classes", "summary")


def test_bad_split_and_dtype() -> None:
    with pytest.raises(ConfigError, match="unknown split 'validation'"):
        load_dataset("mnist-sample", "validation")
    with pytest.raises(ConfigError, match="dtype"):
        load_dataset("mnist-sample", "test", dtype=torch.float64)


def test_labeled_images_subset_and_checks() -> None:
    test = load_dataset("mnist-sample", "test")
    picked = test.subset(np.array([3, 0]))
    assert picked.labels.tolist() == [0, 7] and torch.equal(picked.images[1], test.images[0])
    assert len(picked) == 2 and picked.info is test.info
    with pytest.raises(DataError, match="shape"):
        type(test)(test.images[:, :, :27], test.labels, test.info, "test")
    with pytest.raises(DataError, match="int64"):
        type(test)(test.images, test.labels.int(), test.info, "test")
