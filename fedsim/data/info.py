"""What a model needs to know about a data set: shape, classes and normalisation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a data set, known without loading it.

    `mean` and `std` are per channel in [0, 1] pixel space (the standard published
    values); models use them to normalise their own input.
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
