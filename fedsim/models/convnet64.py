"""The batch-normalised ConvNet of width 64 from Inverting Gradients and ATS."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from fedsim.errors import ConfigError
from fedsim.models.base import ImageClassifier

# Multiples of the width for the eight conv blocks, and after which blocks a 3x3 max pool follows.
_WIDTH_FACTORS = (1, 2, 2, 4, 4, 4, 4, 4)
_POOL_AFTER = (5, 7)


class ConvNet64(ImageClassifier):
    """Eight conv3x3-BN-ReLU blocks of widths 64,128,128,256,256,256,256,256, a 3x3 max pool
    after the sixth and the eighth block, then one dense layer.

    With width 64 this has 2,904,970 parameters on CIFAR-10 (about 2.9M, as stated by
    Geiping et al. 2020); 32×32 and 28×28 inputs both pool down to 3×3.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        width: int = 64,
    ) -> None:
        super().__init__(input_shape, num_classes, mean, std)
        channels, height, width_px = self.input_shape
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = channels
        for index, factor in enumerate(_WIDTH_FACTORS):
            out_channels = factor * width
            layers[f"conv{index}"] = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
            layers[f"bn{index}"] = nn.BatchNorm2d(out_channels)
            layers[f"relu{index}"] = nn.ReLU()
            in_channels = out_channels
            if index in _POOL_AFTER:
                layers[f"pool{_POOL_AFTER.index(index)}"] = nn.MaxPool2d(3)
        out_h, out_w = height // 3 // 3, width_px // 3 // 3
        if out_h == 0 or out_w == 0:
            raise ConfigError(
                f"model convnet64: input {height}×{width_px} is too small (needs ≥ 9×9)"
            )
        layers["flatten"] = nn.Flatten()
        layers["linear"] = nn.Linear(in_channels * out_h * out_w, num_classes)
        self.body = nn.Sequential(layers)
