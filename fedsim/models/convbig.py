"""Soteria's ConvBig: a small conv stem and a wide 2000-unit representation layer."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from fedsim.models.base import ImageClassifier


class ConvBig(ImageClassifier):
    """conv3x3-32, ReLU, avgpool2, conv1x1-64 (padding 1), ReLU, avgpool2,
    dense 2000 (the feature layer), ReLU, dense 1000, ReLU, dense classes.

    The 1x1 convolution keeps the padding of 1 of the reference implementation, so a
    32×32 input gives 64×9×9 = 5184 features into the feature layer (4096 for 28×28).
    Soteria prunes the gradient of `body.fc2`, whose input is the 2000-d representation;
    `representation_layer` names it.
    """

    representation_layer = "body.fc2"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__(input_shape, num_classes, mean, std)
        channels, height, width = self.input_shape
        flat = 64 * ((height // 2 + 2) // 2) * ((width // 2 + 2) // 2)
        self.body = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(channels, 32, kernel_size=3, padding=1),
                relu1=nn.ReLU(),
                pool1=nn.AvgPool2d(2),
                conv2=nn.Conv2d(32, 64, kernel_size=1, padding=1),
                relu2=nn.ReLU(),
                pool2=nn.AvgPool2d(2),
                flatten=nn.Flatten(),
                fc1=nn.Linear(flat, 2000),
                relu3=nn.ReLU(),
                fc2=nn.Linear(2000, 1000),
                relu4=nn.ReLU(),
                fc3=nn.Linear(1000, num_classes),
            )
        )
