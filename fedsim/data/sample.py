"""`mnist-sample`: a small real MNIST sample shipped with fedsim, the offline default.

The file `sample/mnist_sample.npz` holds the first 2,000 training and the first
500 test images of MNIST with their labels, built by
`scripts/build_mnist_sample.py`; see `sample/README.md` for attribution.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import torch

from fedsim.data.images import LabeledImages, check_split, to_labeled_images
from fedsim.data.mnist import MNIST_INFO
from fedsim.data.packaged import read_packaged
from fedsim.errors import DataError

SAMPLE_PATH = Path(__file__).resolve().parent / "sample" / "mnist_sample.npz"

MNIST_SAMPLE_INFO = dataclasses.replace(MNIST_INFO, name="mnist-sample")


@functools.lru_cache(maxsize=1)
def _read_sample(path: Path) -> dict[str, np.ndarray]:
    return read_packaged(path, "MNIST sample")


def read_sample_split(split: str, path: Path = SAMPLE_PATH) -> tuple[np.ndarray, np.ndarray]:
    """Uint8 images (N, 1, 28, 28) and int64 labels of the packaged sample."""
    check_split(split)
    arrays = _read_sample(path)
    try:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    except KeyError as exc:
        raise DataError(
            f"the packaged MNIST sample {path.name} lacks {exc}; reinstall fedsim"
        ) from exc
    return images[:, None, :, :], labels.astype(np.int64)


def load_mnist_sample(
    split: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    dtype: torch.dtype = torch.float32,
) -> LabeledImages:
    """The packaged MNIST sample ('train': 2,000, 'test': 500); needs no data root or network.

    `root` and `download` are accepted for a uniform loader signature and ignored.
    """
    del root, download
    images, labels = read_sample_split(split)
    return to_labeled_images(images, labels, MNIST_SAMPLE_INFO, split, dtype)
