"""An upper bound on reconstruction success from a DP guarantee (reconstruction robustness).

Balle, Cherubin, Hayes, "Reconstructing Training Data with Informed Adversaries", S&P
2022; Hayes, Mahloujifar, Balle, "Bounding Training Data Reconstruction in DP-SGD",
NeurIPS 2023; Kaissis, Hayes, Ziller, Rueckert, "Bounding data reconstruction attacks
with the hypothesis testing interpretation of differential privacy", 2023.

An adversary who knows everything but the target record z ~ π sees the mechanism's
output O and returns a guess; it succeeds when the guess is close to z (in fedsim:
recognisable, SSIM ≥ 0.4). κ = sup_w P_{z~π}[w is close to z] is the success of the best
guess made without O. If every output pair the target can cause has trade-off function
at least f (f-DP: any test of one against the other with type-I error α has type-II
error ≥ f(α)), then for each z the event "the guess from O is close to z" has
probability ≤ 1 − f(α_z) under z and α_z under a reference independent of z; averaging
over z (1 − f is concave and non-decreasing, E α_z ≤ κ):

    P[success] ≤ 1 − f(κ).

For μ-GDP, f(α) = Φ(Φ⁻¹(1 − α) − μ), so the bound is Φ(Φ⁻¹(κ) + μ). T Gaussian steps of
noise multiplier σ (std σ·C) whose outputs for two neighbours differ by at most 2C
(replace-one: one clipped gradient for another) compose to μ = 2√T/σ.

Where no closed form applies (Poisson subsampling) the curve comes from the privacy
profile δ(ε) of dp-accounting's privacy loss distribution (PLD, pessimistic rounding):
f(α) ≥ max(1 − δ(ε) − e^ε α, e^(−ε)(1 − δ(ε) − α)) for every ε ≥ 0, so

    P[success] ≤ inf_ε min(δ(ε) + e^ε κ, 1 − e^(−ε)(1 − δ(ε) − κ)),

minimised over a grid of ε, refined around its best point (a coarser grid only loosens
the bound).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

from defenses.errors import DefenseError

SUCCESS = "a guess with SSIM ≥ 0.4 against the private image (recognisable)"
"""What counts as a successful reconstruction for the bound (fedsim.metrics.recognisable)."""

_NORMAL = NormalDist()


@dataclass(frozen=True)
class Kappa:
    """The adversary's best success without the update, and how it was chosen; `value`
    None where none is known (`source` then says why)."""

    value: float | None
    source: str

    def __post_init__(self) -> None:
        if self.value is not None and not 0 < self.value < 1:
            raise DefenseError(f"reconstruction bound: kappa must be in (0, 1), got {self.value}")


@dataclass(frozen=True)
class ReconstructionBound:
    """P[success] ≤ `bound` for an informed adversary whose best blind guess succeeds with
    probability `kappa`; `mu` where the mechanism is μ-GDP (`method` "gdp"), else None
    (`method` "pld": numerical trade-off curve). `bound` None: no κ is known
    (`kappa_source` says why)."""

    kappa: float | None
    kappa_source: str
    bound: float | None
    mu: float | None
    method: Literal["gdp", "pld"]
    success: str = SUCCESS

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def gdp_bound(kappa: float, mu: float) -> float:
    """Φ(Φ⁻¹(κ) + μ): the reconstruction bound of a μ-GDP mechanism."""
    if mu == math.inf:
        return 1.0
    return _NORMAL.cdf(_NORMAL.inv_cdf(kappa) + mu)


def gaussian_mu(noise_multiplier: float, steps: int) -> float:
    """μ of `steps` Gaussian steps of `noise_multiplier` (std over sensitivity): √T/multiplier."""
    if noise_multiplier <= 0:
        return math.inf
    return math.sqrt(steps) / noise_multiplier


def profile_bound(kappa: float, epsilons: Any, deltas: Any) -> float:
    """inf over the (ε, δ(ε)) pairs of min(δ + e^ε κ, 1 − e^(−ε)(1 − δ − κ)), at most 1."""
    best = 1.0
    for epsilon, delta in zip(epsilons, deltas, strict=True):
        epsilon, delta = float(epsilon), float(delta)
        upper = delta + math.exp(epsilon) * kappa if epsilon < 700 else math.inf
        lower = 1.0 - math.exp(-epsilon) * (1.0 - delta - kappa)
        best = min(best, upper, lower)
    return max(best, kappa)


def subsampled_gaussian_bound(
    kappa: float, noise_multiplier: float, sample_rate: float, steps: int, points: int = 1000
) -> float:
    """The bound of `steps` Poisson-subsampled Gaussian steps (add or remove one, std over
    sensitivity `noise_multiplier`), from dp-accounting's PLD privacy profile (losses
    discretised to 1e-3, rounded pessimistically): the infimum over a grid of ε, refined
    once around its best point."""
    from dp_accounting.pld import privacy_loss_distribution as pld

    if steps == 0:
        return kappa
    loss = pld.from_gaussian_mechanism(
        noise_multiplier,
        sensitivity=1.0,
        sampling_prob=sample_rate,
        value_discretization_interval=1e-3,
    ).self_compose(steps)
    low, high = 0.0, loss.get_epsilon_for_delta(1e-12) * 1.1 + 1.0
    best = 1.0
    for _ in range(2):
        width = (high - low) / (points - 1)
        epsilons = [low + width * i for i in range(points)]
        deltas = loss.get_delta_for_epsilon(epsilons)
        values = [profile_bound(kappa, [e], [d]) for e, d in zip(epsilons, deltas, strict=True)]
        at = min(range(points), key=values.__getitem__)
        best = min(best, values[at])
        low, high = max(0.0, epsilons[at] - width), epsilons[at] + width
    return best


def gaussian_steps_bound(
    kappa: Kappa, noise_multiplier: float, steps: int, sample_rate: float = 1.0
) -> ReconstructionBound:
    """The bound after `steps` Gaussian steps of `noise_multiplier` (std over the
    sensitivity of the neighbouring relation), each on a Poisson sample of `sample_rate`:
    closed form (GDP) at rate 1, the PLD's trade-off curve below."""
    closed = sample_rate >= 1.0
    mu = gaussian_mu(noise_multiplier, steps) if closed else None
    method: Literal["gdp", "pld"] = "gdp" if closed else "pld"
    if kappa.value is None:
        return ReconstructionBound(None, kappa.source, None, mu, method)
    if closed:
        assert mu is not None
        bound = gdp_bound(kappa.value, mu)
    else:
        bound = subsampled_gaussian_bound(kappa.value, noise_multiplier, sample_rate, steps)
    return ReconstructionBound(kappa.value, kappa.source, bound, mu, method)
