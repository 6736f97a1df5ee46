"""ε per threat model, checked against an independent accountant (Google's dp-accounting,
the library Flower's own RDP accountant wraps), FedAvg local steps included.

The dp-accounting events are written as what a round does — one Poisson-sampled batch,
inside which a record enters the Gaussian steps that use it — not as fedsim's formula.
dp-accounting sums the subsampled Gaussian's fractional-order series to at most 1000
terms and drops an order that has not converged by then (small σ, large q); the cases
below are ones where it converges, which is what the 1e-6 comparison itself shows.
"""

from __future__ import annotations

import math
from collections import Counter

import dp_accounting
import pytest
import torch
from dp_accounting import rdp

from defenses.accounting import ORDERS, RoundSchedule, dp_epsilon, privacy_claims
from defenses.base import Defense
from defenses.client import client_update
from defenses.errors import DefenseError

DELTA = 1e-5


def reference(event: dp_accounting.DpEvent) -> float:
    accountant = rdp.RdpAccountant(orders=list(ORDERS))
    accountant.compose(event)
    return accountant.get_epsilon(DELTA)


def events(sigma: float, schedule: RoundSchedule, rounds: int) -> dict[str, dp_accounting.DpEvent]:
    """The three threat models as dp-accounting events of what the rounds did.

    Subsampled: add or remove one record (sensitivity C, multiplier σ). Informed and user:
    replace one record (sensitivity 2C) or all of a step's B records (2·B·C); dp-accounting's
    REPLACE_ONE relation does not double a GaussianDpEvent's sensitivity, so the events
    carry the multiplier σ/2 (σ/(2B)) themselves.
    """
    gaussian = dp_accounting.GaussianDpEvent
    uses = schedule.uses_per_round
    one_round = dp_accounting.ComposedDpEvent([gaussian(sigma)] * uses)
    replace_one = dp_accounting.ComposedDpEvent([gaussian(sigma / 2)] * uses)
    return {
        "subsampled": dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(schedule.sample_rate, one_round), rounds
        ),
        "informed": dp_accounting.SelfComposedDpEvent(replace_one, rounds),
        "user": dp_accounting.SelfComposedDpEvent(
            gaussian(sigma / (2 * schedule.chunk)), schedule.local_steps * rounds
        ),
    }


FEDSGD = RoundSchedule(partition_size=600, batch_size=1)
"""scenarios/paper/dpsgd-mnist.toml on the full MNIST: 600 images per client, one per round."""
FEDAVG = RoundSchedule(partition_size=600, batch_size=4, local_steps=8, step_batch=1)
"""FedAvg, 8 local steps of one image cycling a batch of 4: each image enters 2 steps."""
FEDAVG_ONCE = RoundSchedule(partition_size=500, batch_size=4, local_steps=4, step_batch=1)

CASES = [
    (sigma, schedule, rounds)
    for sigma in (0.01, 0.1, 1.0)
    for schedule in (FEDSGD,)
    for rounds in (1, 11, 51)
] + [
    (1.0, FEDAVG, 1),
    (1.0, FEDAVG, 11),
    (1.0, FEDAVG, 51),
    (1.0, FEDAVG_ONCE, 21),
    (2.0, FEDAVG, 51),
]


@pytest.mark.parametrize("sigma, schedule, rounds", CASES)
def test_each_threat_models_epsilon_equals_dp_accountings(
    sigma: float, schedule: RoundSchedule, rounds: int
) -> None:
    claims = privacy_claims(sigma, DELTA, schedule, rounds, secret_sampling=True)
    expected = events(sigma, schedule, rounds)
    assert [c.threat_model for c in claims] == list(expected)
    for claim in claims:
        assert claim.epsilon == pytest.approx(reference(expected[claim.threat_model]), rel=1e-6)
        assert claim.delta == DELTA


def test_fedavg_local_steps_are_accounted_as_one_batch_per_round() -> None:
    """8 local steps of one image on a batch of 4: each image is in 2 steps of each round
    and the batch is one draw, not 8 independent draws at q = 1/600 (which gave 0.75)."""
    subsampled = privacy_claims(1.0, DELTA, FEDAVG, 51, secret_sampling=True)[0]
    independent_steps = dp_epsilon(1.0, 1 / 600, 8 * 51, DELTA)
    assert independent_steps == pytest.approx(0.747, abs=5e-3)
    assert subsampled.epsilon == pytest.approx(2.389, abs=5e-3)


def test_the_informed_adversarys_epsilon_for_the_dpsgd_sweep() -> None:
    """σ = 1: ε < 0.7 with amplification after 51 rounds; for the adversary who knows the
    batch and tells the attacked record from any other (sensitivity 2C) 10.7 after one
    round and 168.6 after 51 (with C, as before, 4.73 and 58.2)."""
    one = privacy_claims(1.0, DELTA, FEDSGD, 1, secret_sampling=False)[1]
    subsampled, informed, user = privacy_claims(1.0, DELTA, FEDSGD, 51, secret_sampling=False)
    assert one.epsilon == pytest.approx(10.7, abs=0.05)
    assert subsampled.epsilon < 0.7 and informed.epsilon == pytest.approx(168.6, abs=0.1)
    assert dp_epsilon(1.0, 1.0, 1, DELTA) == pytest.approx(4.73, abs=0.01)
    assert user.epsilon == informed.epsilon  # one image per round: the user is that record
    assert not subsampled.holds and informed.holds and user.holds


def test_a_server_that_can_regenerate_the_noise_gets_no_claim_that_holds() -> None:
    note = "the server holds the seed"
    claims = privacy_claims(1.0, DELTA, FEDSGD, 3, secret_sampling=True, noise_known_to_server=note)
    assert all(not c.holds and c.why_not == note for c in claims)


@pytest.mark.parametrize("delta", [1 / 600, 0.01, 0.0, 1.0, -1e-5])
def test_a_delta_of_one_over_the_partition_or_more_is_refused(delta: float) -> None:
    with pytest.raises(DefenseError, match="parameter 'delta' must be"):
        privacy_claims(1.0, delta, FEDSGD, 1, secret_sampling=False)
    assert privacy_claims(1.0, 0.99 / 600, FEDSGD, 1, secret_sampling=False)[1].epsilon > 0


class _Recorder(Defense):
    """Records which images each local step trains on (the gradient stage sees the step's batch)."""

    name = "recorder"
    stages = frozenset({"gradient"})

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[int]] = []

    def transform_gradients(self, model, x, y, grads, generator):  # noqa: ANN001, ANN201
        self.seen.append([int(v) for v in x[:, 0, 0, 0].round()])
        return grads


@pytest.mark.parametrize(
    "batch, step_batch, steps", [(4, 1, 8), (4, 1, 4), (4, 4, 3), (6, 4, 3), (5, 2, 7), (1, 1, 1)]
)
def test_uses_per_round_counts_what_the_client_trains_on(
    batch: int, step_batch: int, steps: int
) -> None:
    recorder = _Recorder()
    x = torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1).expand(batch, 1, 2, 2)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    client_update(
        recorder, model, x.clone(), torch.zeros(batch, dtype=torch.long), torch.Generator(),
        kind="fedavg", local_steps=steps, local_batch_size=step_batch,
    )  # fmt: skip
    trained = Counter(index for step in recorder.seen for index in step)
    schedule = RoundSchedule(100, batch, steps, step_batch)
    assert schedule.uses_per_round == max(trained.values())
    assert schedule.chunk == max(len(step) for step in recorder.seen)


def test_no_noise_gives_no_finite_epsilon_and_bad_schedules_are_refused() -> None:
    claims = privacy_claims(0.0, DELTA, FEDSGD, 3, secret_sampling=False)
    assert all(c.epsilon is None for c in claims)
    with pytest.raises(DefenseError, match="batch_size"):
        RoundSchedule(partition_size=3, batch_size=4)
    assert math.isclose(dp_epsilon(1.0, 0.01, 0, DELTA), 0.0)


# ------------------------------------------------------------- the claims a run records

QUICKSTART = ["federation.clients=2", "audit.clients.sample=2", "model.name='mlp'"]


def _federation(*overrides: str):  # noqa: ANN202
    from pathlib import Path

    from fedsim.scenario.build import build_federation
    from fedsim.scenario.loading import load_scenario

    path = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml"
    return build_federation(load_scenario(path, [*QUICKSTART, *overrides]))


@pytest.mark.parametrize("seeded", [True, False])
def test_a_rounds_record_says_whether_the_server_can_regenerate_the_noise(seeded: bool) -> None:
    """Simulated clients draw their noise from the scenario seed; fedsim's deployable
    ClientApp from OS entropy. Both claims hold against the server (the simulated one is
    never given the seed); a simulated run's claims say who else could regenerate it."""
    from flwr.app import ArrayRecord

    from fedsim.flower.bookkeeping.round_end import RoundEnd
    from fedsim.scenario.build import SEEDED_NOISE

    federation = _federation("defenses=['dpsgd:clip=1,sigma=1,delta=1e-4']")
    seen: list[dict] = []
    observer = type("Observer", (), {"round_finished": lambda self, r: seen.append(r)})()
    end = RoundEnd(federation, None, observer, torch.device("cpu"), noise_from_seed=seeded)
    end.close(2, ArrayRecord(federation.initial_state()), {"clients": [0, 1]})
    claims = {c["threat_model"]: c for c in seen[0]["privacy"]}
    for name in ("informed", "user"):
        assert claims[name]["holds"]  # against the simulated server, which has no seed
        assert claims[name].get("caveat", "") == (SEEDED_NOISE if seeded else "")
    bound = claims["informed"]["reconstruction_bound"]
    assert bound["kappa"] is not None and "mnist-sample" in bound["kappa_source"]
    assert bound["mu"] == pytest.approx(2 * math.sqrt(2 * 3) / 1.0)  # 2 rounds × 3 local steps
    assert 0 < bound["kappa"] < bound["bound"] < 1
    assert "reconstruction_bound" not in claims["user"]


def test_a_stated_kappa_is_used_and_named() -> None:
    federation = _federation(
        "defenses=['dpsgd:clip=1,sigma=1,delta=1e-4']", "audit.threat.kappa=0.02"
    )
    bound = federation.privacy_spent(1)[1].reconstruction_bound
    assert bound.kappa == 0.02 and "audit.threat.kappa" in bound.kappa_source


def test_a_scenario_delta_at_or_above_one_over_the_partition_is_refused_naming_the_field() -> None:
    from fedsim.errors import ConfigError

    # 2,000 images over 2 clients: 1,000 per partition
    with pytest.raises(ConfigError) as caught:
        _federation("defenses=['dpsgd:clip=1,sigma=1,delta=0.001']")
    message = str(caught.value)
    assert message.startswith("defenses: dpsgd parameter 'delta' must be below 1/1000")
    assert "\n" not in message
