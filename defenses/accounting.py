"""Privacy spent by DP-SGD, from Opacus' RDP accountant (Mironov, CSF 2017; Mironov et al. 2019).

The accountant composes the subsampled Gaussian mechanism over steps: a step with
noise multiplier σ and sampling rate q (batch size / client data set size). ε is
reported at a given δ, per round and cumulated over the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from defenses.errors import DefenseError


def _accountant():  # noqa: ANN202 - opacus is imported lazily (heavy, and only needed here)
    from opacus.accountants import RDPAccountant

    return RDPAccountant()


def _check(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> None:
    if noise_multiplier <= 0:
        raise DefenseError(
            f"accounting: parameter 'sigma' must be > 0 for a finite ε, got {noise_multiplier}"
        )
    if not 0 < sample_rate <= 1:
        raise DefenseError(
            f"accounting: parameter 'sample_rate' must be in (0, 1], got {sample_rate}"
        )
    if steps < 0:
        raise DefenseError(f"accounting: parameter 'steps' must be ≥ 0, got {steps}")
    if not 0 < delta < 1:
        raise DefenseError(f"accounting: parameter 'delta' must be in (0, 1), got {delta}")


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε at δ after `steps` DP-SGD steps of noise multiplier σ at sampling rate q (RDP)."""
    _check(noise_multiplier, sample_rate, steps, delta)
    if steps == 0:
        return 0.0
    accountant = _accountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    return float(accountant.get_epsilon(delta=delta))


@dataclass
class PrivacyLedger:
    """Per-round and cumulative ε of one client, at a fixed δ.

    `record_round(steps)` adds one round of `steps` DP-SGD steps and returns
    (ε of that round alone, ε of all rounds so far).
    """

    noise_multiplier: float
    sample_rate: float
    delta: float
    rounds: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check(self.noise_multiplier, self.sample_rate, 0, self.delta)

    def record_round(self, steps: int) -> tuple[float, float]:
        _check(self.noise_multiplier, self.sample_rate, steps, self.delta)
        self.rounds.append(steps)
        return self.round_epsilon(steps), self.total_epsilon()

    def round_epsilon(self, steps: int) -> float:
        return dp_epsilon(self.noise_multiplier, self.sample_rate, steps, self.delta)

    def total_epsilon(self) -> float:
        return dp_epsilon(self.noise_multiplier, self.sample_rate, sum(self.rounds), self.delta)
