"""The CNN of the Bayesian gradient-leakage paper (Balunović et al., ICLR 2022)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from fedsim.models.base import ImageClassifier

_TRUNCATED_STD = 0.87962566103423978
"""Std of a standard normal truncated to [-2, 2]; dividing by it restores unit variance."""


def lecun_normal_(module: nn.Module) -> None:
    """Flax's default initialisation: weights from a normal truncated at ±2 std with
    variance 1/fan_in (`lecun_normal`), biases zero.

    The paper's networks are Flax modules with default initialisers (its code,
    eth-sri/bayes-framework-leakage, `bayes_optimal_attack/models/base_flax.py`).
    PyTorch's default (uniform ±1/√fan_in, variance 1/(3·fan_in)) gives the untrained
    CNN gradients about 3.4× smaller on MNIST, which changes what noise of a given σ hides.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            std = 1.0 / math.sqrt(m.weight[0].numel()) / _TRUNCATED_STD
            with torch.no_grad():
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
                if m.bias is not None:
                    m.bias.zero_()


class PaperCNN(ImageClassifier):
    """conv3x3-32, ReLU, avgpool2, conv3x3-64, ReLU, avgpool2, dense 100, ReLU, dense classes,
    initialised as the paper's Flax model (`lecun_normal_`)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__(input_shape, num_classes, mean, std)
        channels, height, width = self.input_shape
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (height // 4) * (width // 4), 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
        )
        lecun_normal_(self.body)
