"""What a defense's mechanism must state for an attack to use it: the likelihood and its noise.

The Bayes adversary maximises log p(g_obs | ∇θ ℓ(x)) + log p(x), where p(g | c) is the
defense's mechanism. Attacks import torch alone (never `fedsim`, never `defenses`), so
the contract is a `typing.Protocol` declared here, on the side that consumes it, and
`defenses.mechanisms.Mechanism` satisfies it structurally: the attacks receive the
mechanism as an object and read only these members.

- `log_likelihood(observed, candidate)`: log p(observed | candidate) up to a constant,
  one value per candidate (candidate tensors carry a leading candidate dimension).
- `noise`: the distribution of the additive noise on each coordinate of the observed
  update, ``"gaussian"`` or ``"laplacian"``; None where the mechanism adds none (pruning
  alone, quantisation, sign compression).
- `noise_scale`: that noise's scale in the units of the observed update — σ, the
  standard deviation, for Gaussian noise; b for Laplacian noise — and None exactly where
  `noise` is None.
- `noise_only`: True where the observed update is the candidate (formed as
  `per_sample_clip` says, where it says anything) plus that noise and nothing else (no
  clipping, masking or rounding), so the likelihood is the noise density of the
  difference alone.
- `per_sample_clip`: C where the client clipped each sample's gradient to norm C (over
  all parameters, in gradient units) and averaged (DP-SGD); the attack then forms each
  candidate update the same way from its candidate batch, and `log_likelihood` reads
  candidates so formed. None where the clean update is the batch's own update.

`check_likelihood` refuses an object that does not state all of these consistently:
an attack never guesses a scale from attribute names, and a mechanism that forgets to
state one is an error, not a silent σ = 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import torch

from attacks.errors import AttackError

NoiseKind = Literal["gaussian", "laplacian"]
"""The additive noise distributions a mechanism may state."""

NOISE_KINDS: tuple[str, ...] = ("gaussian", "laplacian")


@runtime_checkable
class Likelihood(Protocol):
    """p(observed update | candidate clean update), with its additive noise stated."""

    @property
    def noise(self) -> NoiseKind | None: ...

    @property
    def noise_scale(self) -> float | None: ...

    @property
    def noise_only(self) -> bool: ...

    @property
    def per_sample_clip(self) -> float | None: ...

    def log_likelihood(
        self, observed: Sequence[torch.Tensor], candidate: Sequence[torch.Tensor]
    ) -> torch.Tensor: ...


def check_likelihood(mechanism: object) -> Likelihood:
    """`mechanism` itself, once it states the contract above consistently; AttackError otherwise."""
    name = type(mechanism).__name__
    if not isinstance(mechanism, Likelihood):
        missing = [
            member
            for member in (
                "log_likelihood",
                "noise",
                "noise_scale",
                "noise_only",
                "per_sample_clip",
            )
            if not hasattr(mechanism, member)
        ]
        raise AttackError(
            f"mechanism: {name} does not state {', '.join(missing)} "
            "(see attacks.likelihood.Likelihood)"
        )
    noise, scale = mechanism.noise, mechanism.noise_scale
    if noise is not None and noise not in NOISE_KINDS:
        raise AttackError(
            f"mechanism: {name}.noise is {noise!r}; expected one of {', '.join(NOISE_KINDS)} or None"
        )
    if (noise is None) != (scale is None):
        raise AttackError(
            f"mechanism: {name} states noise {noise!r} with noise_scale {scale!r}; "
            "a scale is stated exactly where there is additive noise"
        )
    if scale is not None and not (
        isinstance(scale, int | float) and math.isfinite(scale) and scale > 0
    ):
        raise AttackError(
            f"mechanism: {name}.noise_scale must be a finite number > 0, got {scale!r}"
        )
    if not isinstance(mechanism.noise_only, bool):
        raise AttackError(f"mechanism: {name}.noise_only must be a bool")
    if mechanism.noise_only and noise is None:
        raise AttackError(f"mechanism: {name} is noise_only but states no noise")
    clip = mechanism.per_sample_clip
    if clip is not None and not (
        isinstance(clip, int | float) and math.isfinite(clip) and clip > 0
    ):
        raise AttackError(
            f"mechanism: {name}.per_sample_clip must be a finite number > 0, got {clip!r}"
        )
    return mechanism


def gaussian_sigma(mechanism: Likelihood | None) -> float | None:
    """σ where the mechanism is isotropic Gaussian noise and nothing else (then −log p is
    ‖g − c‖²/(2σ²)); None for any other mechanism, or none."""
    if mechanism is None or not mechanism.noise_only or mechanism.noise != "gaussian":
        return None
    return float(mechanism.noise_scale)  # type: ignore[arg-type]


class ScaledLikelihood:
    """The likelihood of observed' = observed / factor given candidate' = candidate / factor.

    A FedAvg attack that does not know the local hyper-parameters reads a weight delta δ
    as the gradient −δ / (lr · steps); the mechanism is stated in the delta's units, so
    it is evaluated back there: p(o' | c') = p(factor·o' | factor·c'), and the stated noise
    scale divides by |factor|.
    """

    def __init__(self, inner: Likelihood, factor: float) -> None:
        if factor == 0 or not math.isfinite(factor):
            raise AttackError(
                f"mechanism: scaling factor must be finite and non-zero, got {factor}"
            )
        self.inner = check_likelihood(inner)
        self.factor = float(factor)

    @property
    def noise(self) -> NoiseKind | None:
        return self.inner.noise

    @property
    def noise_scale(self) -> float | None:
        scale = self.inner.noise_scale
        return None if scale is None else scale / abs(self.factor)

    @property
    def noise_only(self) -> bool:
        return self.inner.noise_only

    @property
    def per_sample_clip(self) -> float | None:
        """In gradient units, as the inner mechanism states it: scaling does not change it."""
        return self.inner.per_sample_clip

    @property
    def name(self) -> str:
        return mechanism_name(self.inner)

    def log_likelihood(
        self, observed: Sequence[torch.Tensor], candidate: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        return self.inner.log_likelihood(
            [self.factor * o for o in observed], [self.factor * c for c in candidate]
        )


def mechanism_name(mechanism: object) -> str:
    """A mechanism's display name (its `name`, else its class name); never a scale."""
    name = getattr(mechanism, "name", None)
    return name if isinstance(name, str) else type(mechanism).__name__


def describe_likelihood(mechanism: Likelihood, units: str) -> dict[str, object]:
    """What a record says of the likelihood an attack used: its name, its noise with the
    scale (``sigma`` for Gaussian, ``b`` for Laplacian noise) in `units`, the units
    themselves, and the per-sample clip C (gradient units) where one is stated."""
    described: dict[str, object] = {"name": mechanism_name(mechanism), "noise": mechanism.noise}
    if mechanism.noise is not None:
        key = "sigma" if mechanism.noise == "gaussian" else "b"
        described[key] = float(mechanism.noise_scale)  # type: ignore[arg-type]
    described["units"] = units
    if mechanism.per_sample_clip is not None:
        described["per_sample_clip"] = float(mechanism.per_sample_clip)
    return described
