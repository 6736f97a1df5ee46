"""`adult-sample`: a small real sample of the UCI Adult census data shipped with fedsim (tabular).

The file `sample/adult_sample.npz` holds the first 2,000 training and the first 500
test rows of UCI Adult that have no missing value, built by
`scripts/build_adult_sample.py`; see `sample/README.md` for attribution. Each row
becomes one float32 feature vector: the six continuous columns (age, fnlwgt,
education-num, capital-gain, capital-loss, hours-per-week) standardised with the mean
and std of the sample's training split, then the eight categorical columns one-hot,
in the order of `adult.names` (105 features). The label is 1 for income > 50K.
`ADULT_SAMPLE_INFO.categorical` gives the one-hot groups, so the attacks relax them
as TabLeak does (`attacks.domain.FeatureDomain`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from fedsim.data.images import LabeledImages, check_split
from fedsim.data.info import DatasetInfo
from fedsim.data.packaged import read_packaged
from fedsim.errors import ConfigError, DataError

SAMPLE_PATH = Path(__file__).resolve().parent / "sample" / "adult_sample.npz"

CONTINUOUS = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
CATEGORY_SIZES = {
    "workclass": 8,
    "education": 16,
    "marital-status": 7,
    "occupation": 14,
    "relationship": 6,
    "race": 5,
    "sex": 2,
    "native-country": 41,
}


def _groups() -> tuple[tuple[int, int], ...]:
    groups, start = [], len(CONTINUOUS)
    for size in CATEGORY_SIZES.values():
        groups.append((start, start + size))
        start += size
    return tuple(groups)


FEATURES = len(CONTINUOUS) + sum(CATEGORY_SIZES.values())

ADULT_SAMPLE_INFO = DatasetInfo(
    name="adult-sample",
    input_shape=(FEATURES,),
    num_classes=2,
    mean=(0.0,) * FEATURES,
    std=(1.0,) * FEATURES,
    class_names=("<=50K", ">50K"),
    categorical=_groups(),
)


@functools.lru_cache(maxsize=1)
def _read_sample(path: Path) -> dict[str, np.ndarray]:
    arrays = read_packaged(path, "Adult sample")
    for key, size in CATEGORY_SIZES.items():
        if len(arrays.get(f"categories_{key}", ())) != size:
            raise DataError(f"the packaged Adult sample {path.name} is not the expected one")
    return arrays


def feature_rows(split: str, path: Path = SAMPLE_PATH) -> tuple[np.ndarray, np.ndarray]:
    """Float32 rows (N, 105) of `split` (standardised with the training split) and int64 labels."""
    check_split(split)
    arrays = _read_sample(path)
    train = arrays["train_continuous"].astype(np.float64)
    mean, std = train.mean(axis=0), train.std(axis=0)
    continuous = (arrays[f"{split}_continuous"].astype(np.float64) - mean) / std
    codes = arrays[f"{split}_categorical"].astype(np.int64)
    one_hot = [np.eye(size)[codes[:, i]] for i, size in enumerate(CATEGORY_SIZES.values())]
    rows = np.concatenate([continuous, *one_hot], axis=1).astype(np.float32)
    return rows, arrays[f"{split}_labels"].astype(np.int64)


def load_adult_sample(
    split: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    dtype: torch.dtype = torch.float32,
) -> LabeledImages:
    """The packaged Adult sample ('train': 2,000 rows, 'test': 500); needs no data root or network.

    `root` and `download` are accepted for a uniform loader signature and ignored.
    """
    del root, download
    if dtype != torch.float32:
        raise ConfigError(f"adult-sample: feature rows are float32, got dtype {dtype}")
    rows, labels = feature_rows(split)
    return LabeledImages(
        torch.from_numpy(rows.copy()), torch.from_numpy(labels.copy()), ADULT_SAMPLE_INFO, split
    )
