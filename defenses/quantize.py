"""Compression of the update: unbiased stochastic k-bit quantisation, and sign compression.

References: Alistarh et al., "QSGD: Communication-Efficient SGD via Gradient
Quantization and Encoding", NeurIPS 2017 (stochastic rounding, unbiased); Bernstein
et al., "signSGD: Compressed Optimisation for Non-Convex Problems", ICML 2018.

`quantize` rounds each tensor to a uniform grid of 2^bits levels spanning its own
[min, max], up or down at random with the probabilities that keep it unbiased.
Mechanism: exact stochastic-rounding likelihood (linear inside the neighbouring
cells, a steep penalty outside; see `StochasticQuantizationMechanism`). `sign`
sends sign(update); its mechanism is a heuristic sign-agreement likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from defenses.base import Defense, Parameter, draw_uniform
from defenses.mechanisms import Mechanism
from defenses.mechanisms.quantized import SignMechanism, StochasticQuantizationMechanism
from defenses.registry import register_defense


def stochastic_quantize(t: torch.Tensor, bits: int, generator: torch.Generator) -> torch.Tensor:
    """Unbiased rounding of `t` to 2^bits levels between its min and max."""
    lo, hi = t.min(), t.max()
    step = (hi - lo) / (2**bits - 1)
    if step <= 0:
        return t.clone()
    position = (t - lo) / step
    floor = position.floor()
    up = (draw_uniform(t, generator) < (position - floor)).to(t.dtype)
    return lo + (floor + up).clamp(max=2**bits - 1) * step


@register_defense
class StochasticQuantization(Defense):
    """g = per-tensor stochastic rounding of the update to 2^bits levels (E[g] = update)."""

    name = "quantize"
    randomised = True
    examples = ("quantize:bits=3",)
    reference = "Alistarh et al., QSGD: Communication-Efficient SGD via Gradient Quantization and Encoding, NeurIPS 2017"
    effect = "rounds every coordinate of the update to a few levels (compression)"
    parameters = (
        Parameter("bits", int, 4, "bits per coordinate (2^bits levels per tensor)", low=1, high=16),
    )
    stages = frozenset({"update"})
    perturbs_update = True
    bits: int

    @property
    def mechanism(self) -> Mechanism:
        return StochasticQuantizationMechanism(self.bits)

    @property
    def mechanism_note(self) -> str:
        return "exact inside the quantisation cells (linear), steep penalty outside; grid read from the observed tensor"

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        return [stochastic_quantize(u, self.bits, generator) for u in update]


@register_defense
class SignCompression(Defense):
    """g = sign(update): one bit per coordinate (zeros stay zero)."""

    name = "sign"
    examples = ("sign:temperature=0.3",)
    reference = (
        "Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, ICML 2018"
    )
    effect = "sends only the signs of the update, scaled (compression)"
    parameters = (
        Parameter(
            "temperature",
            float,
            0.1,
            "softness of the mechanism's sign agreement (adversary side only)",
            low=0.0,
            low_open=True,
        ),
    )
    stages = frozenset({"update"})
    perturbs_update = True
    temperature: float

    @property
    def mechanism(self) -> Mechanism:
        return SignMechanism(self.temperature)

    @property
    def mechanism_note(self) -> str:
        return "heuristic: sign is deterministic; soft sign agreement Σ log σ(g·c / (τ·rms c))"

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        return [torch.sign(u) for u in update]
