"""A CIFAR-style ResNet-18: 3x3 stem without max pooling, BasicBlocks [2, 2, 2, 2]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedsim.models.base import ImageClassifier


class BasicBlock(nn.Module):
    """Two conv3x3-BN layers with an identity (or 1x1 conv-BN projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(ImageClassifier):
    """conv3x3-64-BN-ReLU stem, four stages of two BasicBlocks (64, 128, 256, 512; the last
    three stride 2), global average pooling, dense classes. 11.17M parameters on CIFAR-10."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__(input_shape, num_classes, mean, std)
        channels = self.input_shape[0]
        stages: list[nn.Module] = []
        in_channels = 64
        for index, out_channels in enumerate((64, 128, 256, 512)):
            stride = 1 if index == 0 else 2
            stages.append(
                nn.Sequential(
                    BasicBlock(in_channels, out_channels, stride),
                    BasicBlock(out_channels, out_channels, 1),
                )
            )
            in_channels = out_channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            *stages,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(in_channels, num_classes),
        )
