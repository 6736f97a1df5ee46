"""One split of a data set as tensors: images (N, C, H, W) or feature rows (N, F), and int64 labels."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from fedsim.data.info import DatasetInfo
from fedsim.errors import ConfigError, DataError

#: The dtypes a loader can return: raw bytes, or floats in [0, 1].
IMAGE_DTYPES = (torch.uint8, torch.float32)


@dataclass(frozen=True)
class LabeledImages:
    """Inputs and labels of one split; float images live in [0, 1] pixel space.

    For a tabular data set `images` holds the float32 feature rows (N, F) (see
    `fedsim.data.adult`); everything downstream treats them alike."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    split: str

    def __post_init__(self) -> None:
        shape = self.info.input_shape
        if self.images.ndim != 1 + len(shape) or tuple(self.images.shape[1:]) != shape:
            raise DataError(
                f"{self.info.name} {self.split}: inputs of shape {tuple(self.images.shape)}, "
                f"expected (N, {', '.join(map(str, shape))})"
            )
        if self.labels.shape != (self.images.shape[0],) or self.labels.dtype != torch.int64:
            raise DataError(
                f"{self.info.name} {self.split}: labels must be int64 of shape ({self.images.shape[0]},)"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray | torch.Tensor) -> LabeledImages:
        """The samples at `indices`, in that order (e.g. one client's batch)."""
        index = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        return LabeledImages(self.images[index], self.labels[index], self.info, self.split)

    def as_float(self) -> LabeledImages:
        """The same split with float32 images in [0, 1]."""
        if self.images.dtype == torch.float32:
            return self
        return LabeledImages(self.images.float().div_(255.0), self.labels, self.info, self.split)


def to_labeled_images(
    images: np.ndarray,
    labels: np.ndarray,
    info: DatasetInfo,
    split: str,
    dtype: torch.dtype = torch.float32,
) -> LabeledImages:
    """Wrap uint8 (N, C, H, W) and integer arrays as tensors of the requested dtype."""
    if dtype not in IMAGE_DTYPES:
        raise ConfigError(f"image dtype must be torch.uint8 or torch.float32, got {dtype}")
    source = _read_only_view(np.asarray(images, dtype=np.uint8))
    image_tensor = torch.empty(source.shape, dtype=dtype).copy_(source)
    if dtype == torch.float32:
        image_tensor.div_(255.0)
    label_tensor = torch.from_numpy(np.array(labels, dtype=np.int64, copy=True))
    return LabeledImages(image_tensor, label_tensor, info, split)


def _read_only_view(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing `array`'s memory, used only as the source of a copy.

    Loader caches keep their arrays read-only; torch warns about wrapping those,
    which is moot here because the view is never written.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def check_split(split: str) -> str:
    """Refuse any split name other than 'train' and 'test'."""
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r}; expected 'train' or 'test'")
    return split
