"""The data domain of an attack's inputs: their shape, where they may lie, how a search starts.

The attack engine optimises a variable z of shape (N, B, *input_shape); the domain
says what the model sees of it and what the reconstruction is:

- `ImageDomain`: images (C, H, W) in the box [low, high], [0, 1] by default (pixel
  space; fedsim's models normalise inside). z is the image; the box is kept by
  projection after every step. A pipeline that normalises before the model (e.g.
  to [−1, 1]) declares that box.
- `FeatureDomain`: feature vectors (F,). Continuous columns have no box (they are
  whatever the client's pipeline feeds the model, e.g. standardised values); when
  the threat model grants their mean and std, the `features` prior is a Gaussian
  around them. One-hot categorical columns are relaxed as in TabLeak (Vero,
  Balunović, Dimitrov, Vechev, "TabLeak: Tabular Data Leakage in Federated
  Learning", ICML 2023; arXiv 2210.01785): z holds one logit per category, the model
  sees their softmax, and the reconstruction is the one-hot of the largest logit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from attacks.errors import AttackError


@dataclass(frozen=True)
class ImageDomain:
    """Images (channels, height, width) with every value in [low, high]."""

    low: float = 0.0
    high: float = 1.0

    kind: ClassVar[str] = "image"

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise AttackError(f"image domain: low {self.low} must be below high {self.high}")

    def check(self, input_shape: Sequence[int]) -> None:
        """Refuse shapes that are not (C, H, W) with every size at least 1."""
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise AttackError(
                f"input_shape: images need (channels, height, width), got {tuple(input_shape)}"
            )

    def initial(self, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        """A start point: uniform in the box."""
        return self.low + (self.high - self.low) * torch.rand(tuple(shape), generator=generator)

    def random_inputs(self, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        """Inputs drawn with no knowledge of the data: uniform in the box."""
        return self.initial(shape, generator)

    def to_input(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def project_(self, z: torch.Tensor) -> None:
        """In place: back into the box."""
        z.clamp_(self.low, self.high)

    def finalize(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Images rescaled to [0, 1], for pictures and pixel metrics."""
        return (x - self.low) / (self.high - self.low)


@dataclass(frozen=True)
class FeatureDomain:
    """Feature vectors (F,): continuous columns unboxed, one-hot groups relaxed by softmax.

    `categorical` lists the column ranges [start, stop) of one-hot groups (each at least
    two columns, not overlapping); every other column is continuous. `mean` and `std`
    (one value per column; categorical entries unused) are the feature statistics the
    adversary is granted, or None.
    """

    categorical: tuple[tuple[int, int], ...] = ()
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    kind: ClassVar[str] = "features"

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "categorical", tuple((int(a), int(b)) for a, b in self.categorical)
        )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))
        if (self.mean is None) != (self.std is None):
            raise AttackError("feature domain: give both mean and std, or neither")
        if self.std is not None and min(self.std) <= 0:
            raise AttackError("feature domain: every std must be positive")

    @property
    def has_statistics(self) -> bool:
        return self.mean is not None

    def check(self, input_shape: Sequence[int]) -> None:
        """Refuse shapes other than (F,) and groups or statistics that do not fit F."""
        if len(input_shape) != 1 or input_shape[0] < 1:
            raise AttackError(
                f"input_shape: feature vectors need (features,), got {tuple(input_shape)}"
            )
        width = int(input_shape[0])
        taken = 0
        for start, stop in sorted(self.categorical):
            if start < taken or stop > width or stop - start < 2:
                raise AttackError(
                    f"feature domain: one-hot group [{start}, {stop}) must hold at least two "
                    f"columns inside [0, {width}) and overlap no other group"
                )
            taken = stop
        if self.mean is not None and len(self.mean) != width:
            raise AttackError(
                f"feature domain: {len(self.mean)} feature statistics for {width} features"
            )

    def continuous(self, width: int) -> list[int]:
        """Indices of the continuous columns."""
        inside = {i for start, stop in self.categorical for i in range(start, stop)}
        return [i for i in range(width) if i not in inside]

    def initial(self, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        """A start point: N(mean, std²) (N(0, 1) without statistics); logits N(0, 1)."""
        z = torch.randn(tuple(shape), generator=generator)
        if self.mean is not None and self.std is not None:
            columns = self.continuous(shape[-1])
            mean = torch.tensor(self.mean)[columns]
            std = torch.tensor(self.std)[columns]
            z[..., columns] = mean + std * z[..., columns]
        return z

    def random_inputs(self, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        """Inputs drawn with no knowledge of the data beyond the domain: a random start, finalised."""
        return self.finalize(self.initial(shape, generator))

    def to_input(self, z: torch.Tensor) -> torch.Tensor:
        """What the model sees: z, with each one-hot group replaced by the softmax of its logits."""
        if not self.categorical:
            return z
        pieces, at = [], 0
        for start, stop in sorted(self.categorical):
            pieces += [z[..., at:start], torch.softmax(z[..., start:stop], dim=-1)]
            at = stop
        pieces.append(z[..., at:])
        return torch.cat(pieces, dim=-1)

    def project_(self, z: torch.Tensor) -> None:
        """Nothing to project: continuous columns and logits are unbounded."""

    def finalize(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction: continuous columns as they are, each group one-hot at its argmax."""
        out = z.detach().clone()
        for start, stop in self.categorical:
            group = out[..., start:stop]
            out[..., start:stop] = torch.nn.functional.one_hot(
                group.argmax(dim=-1), stop - start
            ).to(out.dtype)
        return out


InputDomain = ImageDomain | FeatureDomain
"""Every domain offers check, initial, random_inputs, to_input, project_ and finalize."""
