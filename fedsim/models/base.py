"""The contract every fedsim model keeps: pixel-space input, normalisation inside."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ImageClassifier(nn.Module):
    """A classifier of images in [0, 1] (or of feature rows) that normalises its own input.

    Attacks optimise in pixel space and metrics score there, so the model carries
    the data set's mean and std as buffers and applies them first in `forward`.
    Subclasses build `self.body`, which sees normalised input.

    `representation_layer` names (as for `get_submodule`) the layer whose *input*
    is the representation a defense such as Soteria protects; `None` means the
    last `nn.Linear` of the model, the usual feature → classifier boundary.
    """

    body: nn.Module
    representation_layer: str | None = None

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        # per channel of an image (C, 1, 1), or per feature of a row (F,)
        shape = (self.input_shape[0], *[1] * (len(self.input_shape) - 1))
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(shape))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    def representation_module(self) -> nn.Module:
        """The layer whose input is the defended representation (see `representation_layer`)."""
        if self.representation_layer is not None:
            return self.get_submodule(self.representation_layer)
        linears = [m for m in self.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise TypeError(
                f"{type(self).__name__} has no linear layer to take a representation from"
            )
        return linears[-1]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (buffers such as batch-norm statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
