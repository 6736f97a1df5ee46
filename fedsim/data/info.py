"""What a model needs to know about a data set: shape, classes, normalisation and domain."""

from __future__ import annotations

from dataclasses import dataclass

from attacks.domain import FeatureDomain, ImageDomain, InputDomain


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a data set, known without loading it.

    Images: `input_shape` (C, H, W), `mean` and `std` per channel in [0, 1] pixel space
    (the standard published values); models use them to normalise their own input.
    Feature rows (tabular data): `input_shape` (F,), `mean` and `std` per feature (the
    loaders standardise, so these are 0 and 1), and `categorical` the column ranges
    [start, stop) of one-hot groups.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    categorical: tuple[tuple[int, int], ...] = ()

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    def domain(self) -> InputDomain:
        """Where the inputs live, as the attacks see it (no feature statistics granted)."""
        if self.is_image:
            return ImageDomain()
        return FeatureDomain(categorical=self.categorical)
