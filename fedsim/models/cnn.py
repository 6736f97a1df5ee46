"""The CNN of the Bayesian gradient-leakage paper (Balunović et al., ICLR 2022)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from fedsim.models.base import ImageClassifier


class PaperCNN(ImageClassifier):
    """conv3x3-32, ReLU, avgpool2, conv3x3-64, ReLU, avgpool2, dense 100, ReLU, dense classes."""

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
