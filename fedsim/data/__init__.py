"""Data for the federation: loaders, the data set registry, client partitions and batch sampling."""

from __future__ import annotations

from fedsim.data.images import LabeledImages
from fedsim.data.info import DatasetInfo
from fedsim.data.partition import (
    PARTITION_SCHEMES,
    dirichlet_partition,
    iid_partition,
    partition_dataset,
)
from fedsim.data.registry import (
    DATASET_COLUMNS,
    DATASETS,
    DatasetEntry,
    dataset_rows,
    get_dataset,
    load_dataset,
)
from fedsim.data.root import DATA_ROOT_ENV, resolve_data_root
from fedsim.data.sampling import batch_indices

__all__ = [
    "DATASETS",
    "DATASET_COLUMNS",
    "DATA_ROOT_ENV",
    "PARTITION_SCHEMES",
    "DatasetEntry",
    "DatasetInfo",
    "LabeledImages",
    "batch_indices",
    "dataset_rows",
    "dirichlet_partition",
    "get_dataset",
    "iid_partition",
    "load_dataset",
    "partition_dataset",
    "resolve_data_root",
]
