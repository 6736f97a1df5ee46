"""A small fully connected network: flatten, hidden ReLU layers of 200 units, classes."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from fedsim.models.base import ImageClassifier


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
        layers: list[nn.Module] = [nn.Flatten()]
        in_features = math.prod(self.input_shape)
        for _ in range(depth):
            layers += [nn.Linear(in_features, hidden), nn.ReLU()]
            in_features = hidden
        layers.append(nn.Linear(in_features, num_classes))
        self.body = nn.Sequential(*layers)
