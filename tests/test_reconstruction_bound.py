"""The reconstruction bound beside each DP claim, checked against a Monte-Carlo estimate of
the trade-off curve it comes from (the most powerful test between the two output
distributions a record can cause), and the check of measured success against it.

For a bound built from the trade-off curve f, P[success] ≤ 1 − f(κ): the power, at
type-I error κ, of the Neyman–Pearson test between the transcript with the attacked
record and with another. The Monte-Carlo estimate simulates each step's release as the
client makes it (per-step Gaussian noise, the record's clipped gradient in the steps
that use it) and runs that test.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch

from defenses.accounting import RoundSchedule, privacy_claims
from defenses.client import local_chunk
from defenses.reconstruction import (
    Kappa,
    gaussian_steps_bound,
    gdp_bound,
    subsampled_gaussian_bound,
)
from fedsim.auditor.bound_check import check_round
from fedsim.auditor.flower_dp import LocalDp

KAPPA = Kappa(0.1, "test")
DELTA = 1e-5
SAMPLES = 400_000


def _power(h0: torch.Tensor, h1: torch.Tensor, alpha: float) -> tuple[float, float]:
    """Power at type-I error `alpha` of rejecting H0 when the statistic is large, and its
    standard error."""
    threshold = torch.quantile(h0[:SAMPLES], 1 - alpha).item()
    power = float((h1 > threshold).double().mean())
    return power, math.sqrt(power * (1 - power) / len(h1))


def _gaussian_transcripts(shifts: torch.Tensor, std: float, seed: int) -> tuple[torch.Tensor, ...]:
    """Log-likelihood-ratio statistics of `SAMPLES` transcripts, one column per release,
    without and with the record's contribution `shifts` (per release) under noise `std`."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(2, SAMPLES, len(shifts), generator=generator, dtype=torch.float64)
    without, with_record = noise[0] * std, noise[1] * std + shifts
    statistic = (shifts / std**2).unsqueeze(0)  # Neyman–Pearson: linear in the releases
    return (without * statistic).sum(1), (with_record * statistic).sum(1)


def _steps_with_record(schedule: RoundSchedule, rounds: int) -> torch.Tensor:
    """1 for each local step of `rounds` rounds that trains on record 0 of the batch, else 0."""
    per_round = [
        float(0 in local_chunk(step, schedule.chunk, schedule.batch_size))
        for step in range(schedule.local_steps)
    ]
    return torch.tensor(per_round * rounds, dtype=torch.float64)


FEDSGD = RoundSchedule(partition_size=600, batch_size=1)
FEDAVG = RoundSchedule(partition_size=600, batch_size=4, local_steps=8, step_batch=1)


@pytest.mark.parametrize(
    "schedule, rounds, sigma", [(FEDSGD, 3, 2.0), (FEDSGD, 1, 4.0), (FEDAVG, 2, 3.0)]
)
def test_the_informed_claims_bound_matches_the_simulated_dpsgd_transcript(
    schedule: RoundSchedule, rounds: int, sigma: float
) -> None:
    """Replace one record by another: each step that uses it moves by 2C under std σC."""
    informed = privacy_claims(sigma, DELTA, schedule, rounds, secret_sampling=False, kappa=KAPPA)[1]
    bound = informed.reconstruction_bound
    assert informed.threat_model == "informed" and bound is not None
    clip = 1.0
    shifts = 2 * clip * _steps_with_record(schedule, rounds)
    assert bound.mu == pytest.approx(2 * math.sqrt(float(shifts.count_nonzero())) / sigma)
    h0, h1 = _gaussian_transcripts(shifts, sigma * clip, seed=rounds)
    power, error = _power(h0, h1, KAPPA.value)
    assert bound.method == "gdp" and bound.kappa == KAPPA.value
    assert abs(bound.bound - power) < 4 * error + 2e-3, (bound.bound, power)


def test_the_local_dp_mods_bound_matches_the_simulated_releases() -> None:
    """LocalDpMod: each round the clipped update (any two differ by ≤ 2C) plus N(0, s²)."""
    clip, std, rounds = 0.5, 1.6, 4
    claim = LocalDp(clip=clip, std=std, delta=DELTA, kappa=KAPPA).client_fields(rounds)
    bound = claim["privacy"][0]["reconstruction_bound"]
    h0, h1 = _gaussian_transcripts(torch.full((rounds,), 2 * clip, dtype=torch.float64), std, 7)
    power, error = _power(h0, h1, KAPPA.value)
    assert bound["mu"] == pytest.approx(2 * clip * math.sqrt(rounds) / std)
    assert abs(bound["bound"] - power) < 4 * error + 2e-3, (bound["bound"], power)


def test_the_numerical_curve_agrees_with_the_closed_form_without_subsampling() -> None:
    for multiplier, steps in ((1.0, 1), (2.0, 10), (0.5, 3)):
        closed = gdp_bound(KAPPA.value, math.sqrt(steps) / multiplier)
        numerical = subsampled_gaussian_bound(KAPPA.value, multiplier, 1.0, steps)
        assert closed <= numerical < closed + 5e-3, (multiplier, steps)


def test_the_subsampled_bound_covers_the_simulated_subsampled_transcript() -> None:
    """Poisson sampling at q: each release has the record's C with probability q.

    The bound takes the worse of adding and removing the record, with pessimistic
    rounding, so it lies at or above the add direction simulated here, and close to it.
    """
    q, multiplier, steps = 0.2, 1.0, 4
    bound = gaussian_steps_bound(KAPPA, multiplier, steps, sample_rate=q)
    assert bound.method == "pld" and bound.mu is None
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(2, SAMPLES, steps, generator=generator, dtype=torch.float64)
    used = torch.rand(SAMPLES, steps, generator=generator, dtype=torch.float64) < q
    without, with_record = noise[0] * multiplier, noise[1] * multiplier + used.double()

    def log_ratio(x: torch.Tensor) -> torch.Tensor:
        density = torch.exp((x - 0.5) / multiplier**2)  # N(1, m²) over N(0, m²)
        return torch.log1p(q * (density - 1)).sum(1)

    power, error = _power(log_ratio(without), log_ratio(with_record), KAPPA.value)
    assert power - 4 * error <= bound.bound < power + 0.03, (bound.bound, power)
    assert bound.bound < gdp_bound(KAPPA.value, math.sqrt(steps) / multiplier)


def test_no_kappa_gives_no_bound_and_says_why() -> None:
    bound = gaussian_steps_bound(Kappa(None, "nothing measured"), 1.0, 3)
    assert bound.bound is None and bound.kappa_source == "nothing measured"
    assert bound.mu == pytest.approx(math.sqrt(3))


def _records(successes: int, images: int, attack: str = "bayes") -> list[dict]:
    ssim = [0.9] * successes + [0.1] * (images - successes)
    return [{"attack": attack, "ssim_images": [value]} for value in ssim]


def test_a_measured_share_far_above_its_bound_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    bound = gaussian_steps_bound(Kappa(0.01, "test"), 4.0, 1)  # μ = 0.25: bound ≈ 0.017
    records = _records(4, 10)
    with caplog.at_level(logging.WARNING, logger="fedsim.auditor"):
        check_round(3, records, bound, batch_size=1)
    check = records[0]["reconstruction_check"]
    assert check["exceeded"] and check["recognisable"] == 4 and check["images"] == 10
    assert check["bound"] == pytest.approx(bound.bound)
    assert any("above the reconstruction bound" in r.getMessage() for r in caplog.records)


def test_a_share_within_chance_of_its_bound_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bound = gaussian_steps_bound(Kappa(0.1, "test"), 1.0, 1)  # μ = 1: bound ≈ 0.39
    records = _records(1, 1) + _records(0, 2, attack="l2")
    with caplog.at_level(logging.WARNING, logger="fedsim.auditor"):
        check_round(3, records, bound, batch_size=1)
    assert not records[0]["reconstruction_check"]["exceeded"]
    assert records[1]["reconstruction_check"]["images"] == 2
    assert not caplog.records


def test_batches_are_checked_against_the_bound_of_several_guesses() -> None:
    bound = gaussian_steps_bound(Kappa(0.05, "test"), 2.0, 1)
    records = _records(1, 4)
    check_round(1, records, bound, batch_size=4)
    assert records[0]["reconstruction_check"]["bound"] == pytest.approx(gdp_bound(0.2, 0.5))
