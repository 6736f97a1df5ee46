"""PRECODE: a feed-forward classifier with a variational bottleneck before its head."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from fedsim.models.base import ImageClassifier
from fedsim.models.mlp import dense_relu_stack


class VariationalBottleneck(nn.Module):
    """Encode to μ and log σ², sample z = μ + σ·ε in train mode (z = μ in eval), keep the KL.

    ε comes from `generator` when one is set (it must live on the input's device), else
    from the global RNG. `kl_loss` holds KL(N(μ, σ²) ‖ N(0, I)) of the last forward pass,
    summed over latent units and averaged over the batch, still attached to the graph.
    """

    def __init__(self, in_features: int, latent: int) -> None:
        super().__init__()
        self.to_mean = nn.Linear(in_features, latent)
        self.to_log_var = nn.Linear(in_features, latent)
        self.generator: torch.Generator | None = None
        self.kl_loss: torch.Tensor | None = None

    def __getstate__(self) -> dict:
        # The last pass's KL term is attached to its graph, which cannot be copied or
        # pickled; a copy of the model starts without it.
        state = self.__dict__.copy()
        state["kl_loss"] = None
        return state

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        mean, log_var = self.to_mean(h), self.to_log_var(h)
        kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var)
        self.kl_loss = kl.sum(dim=1).mean()
        if not self.training:
            return mean
        noise = torch.randn(
            mean.shape, generator=self.generator, device=mean.device, dtype=mean.dtype
        )
        return mean + torch.exp(0.5 * log_var) * noise


def uniform_init_(module: nn.Module, bound: float = 0.05) -> None:
    """Every linear layer's weight and bias from U(−bound, bound), as the PRECODE network of
    Balunović et al. is initialised in their code (`weights_init`, default 0.05).

    Either initialisation starves the bottleneck at first: after the six-layer ReLU
    encoder its mean varies across MNIST images by about 0.003 (0.0014 from PyTorch's
    default) against unit sampling noise. Under FedAvg with SGD this one learns after
    about 820 rounds, PyTorch's default had not moved off chance after 200
    (EXPERIMENTS.md, section 7); the paper trains the network with Adam.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.uniform_(layer.bias, -bound, bound)


class Precode(ImageClassifier):
    """flatten, dense 500 (with bias: the layer the analytic attack inverts), ReLU,
    4 × (dense 500, ReLU), dense `latent`, ReLU, variational bottleneck of `latent` units,
    dense 500, ReLU, dense classes — the FFN of Scheliga et al. with a 256-unit PRECODE
    layer, initialised as in the code of Balunović et al. (`uniform_init_`).

    Train with cross-entropy + β · `kl_loss` (the paper's β is 0.003).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        hidden: int = 500,
        depth: int = 5,
        latent: int = 256,
    ) -> None:
        super().__init__(input_shape, num_classes, mean, std)
        encoder, in_features = dense_relu_stack(math.prod(self.input_shape), hidden, depth)
        encoder += [nn.Linear(in_features, latent), nn.ReLU()]
        self.bottleneck = VariationalBottleneck(latent, latent)
        self.body = nn.Sequential(
            nn.Sequential(*encoder),
            self.bottleneck,
            nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)),
        )
        uniform_init_(self.body)

    @property
    def first_layer(self) -> nn.Linear:
        """The fully connected input layer (weight and bias) whose gradient reveals the input."""
        return self.body[0][1]

    @property
    def kl_loss(self) -> torch.Tensor:
        """KL term of the last forward pass (batch mean); add β times it to the training loss."""
        if self.bottleneck.kl_loss is None:
            raise RuntimeError("Precode.kl_loss is defined only after a forward pass")
        return self.bottleneck.kl_loss

    @property
    def generator(self) -> torch.Generator | None:
        """Source of the bottleneck's noise in train mode; None uses the global RNG."""
        return self.bottleneck.generator

    @generator.setter
    def generator(self, generator: torch.Generator | None) -> None:
        self.bottleneck.generator = generator
