"""A small fully connected network: flatten, hidden ReLU layers of 200 units, classes."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from fedsim.models.base import ImageClassifier


def dense_relu_stack(in_features: int, hidden: int, depth: int) -> tuple[list[nn.Module], int]:
    """`depth` × (dense `hidden`, ReLU) after a flatten, and the width it ends with."""
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(depth):
        layers += [nn.Linear(in_features, hidden), nn.ReLU()]
        in_features = hidden
    return layers, in_features


class MLP(ImageClassifier):
    """flatten, `depth` × (dense `hidden`, ReLU), dense classes (the "2NN" of McMahan et al.)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        hidden: int = 200,
        depth: int = 2,
    ) -> None:
        super().__init__(input_shape, num_classes, mean, std)
        layers, in_features = dense_relu_stack(math.prod(self.input_shape), hidden, depth)
        layers.append(nn.Linear(in_features, num_classes))
        self.body = nn.Sequential(*layers)
