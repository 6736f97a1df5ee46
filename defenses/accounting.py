"""Privacy spent by DP-SGD, stated per threat model (RDP: Mironov, CSF 2017; Mironov,
Talwar, Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism", 2019).

An ε means nothing without the adversary it holds against, so fedsim never reports
one alone: `privacy_claims` gives one `PrivacyClaim` per threat model, each saying what
it bounds and whether the run at hand satisfies its assumption. For one client that
trained in each of R rounds (client sampling is not counted: the server knows who took
part):

- ``subsampled`` — record-level, with amplification by subsampling: each round the
  client draws its batch with probability q = b/N per record, and only holds when that
  sampling is secret from the server (Poisson sampling from client-secret randomness,
  as Opacus' data loader does). fedsim's own clients, simulated or deployed, draw their
  batches from a public function of the scenario seed (`fedsim.data.sampling`), which
  the server recomputes: there this ε does not hold and is marked so.
- ``informed`` — record-level against an informed adversary who knows which records
  each step used (q = 1): the bound that speaks to reconstructing an attacked record.
  It is the worst case over records, one that was in every round's batch.
- ``user`` — user-level: all of one client's records, by group privacy over the B
  records of each step (sensitivity B·C per step, q = 1).

What a round does (`RoundSchedule`): the client draws one batch of b records and its k
local steps cycle through it in chunks of B (`defenses.client.local_chunk`), so a
record enters m of the k steps (m = 1 for FedSGD). m Gaussian mechanisms of noise
multiplier σ on the same record compose exactly to one of σ/√m, so a round is one
subsampled Gaussian mechanism (σ/√m, q), composed over the rounds. The RDP accountant
assumes Poisson sampling; clients draw fixed-size batches (the usual approximation).

ε comes from Opacus' RDP accountant over the orders `ORDERS`; the tests check it
against Google's dp-accounting.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

from defenses.client import local_chunk
from defenses.errors import DefenseError

ORDERS: tuple[float, ...] = (
    *(1 + x / 10.0 for x in range(1, 100)),
    *range(12, 64),
    80,
    96,
    128,
    192,
    256,
    512,
)
"""RDP orders α the accountant minimises over (Opacus' defaults and a few large ones)."""

ThreatModelName = Literal["subsampled", "informed", "user"]


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
    """ε at δ of `steps` compositions of the subsampled Gaussian mechanism (σ, q).

    A bare number: which threat model it bounds depends on what q and the steps stand
    for (see `privacy_claims`, which says so for each).
    """
    _check(noise_multiplier, sample_rate, steps, delta)
    if steps == 0:
        return 0.0
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    rdp = compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=list(ORDERS)
    )
    with warnings.catch_warnings():
        # At large ε the best order is the smallest: the bound stays valid, only looser.
        warnings.filterwarnings("ignore", message="Optimal order is the smallest alpha")
        epsilon, _ = get_privacy_spent(orders=list(ORDERS), rdp=rdp, delta=delta)
    return float(epsilon)


@dataclass(frozen=True)
class RoundSchedule:
    """How one round of DP-SGD uses a client's records.

    `partition_size` N records, `batch_size` b drawn per round, `local_steps` k, each on
    `step_batch` B of them (None: the whole batch), cycled as `local_chunk` does.
    """

    partition_size: int
    batch_size: int
    local_steps: int = 1
    step_batch: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= self.partition_size:
            raise DefenseError(
                f"accounting: batch_size must be in [1, partition_size {self.partition_size}], "
                f"got {self.batch_size}"
            )
        if self.local_steps < 1 or (self.step_batch is not None and self.step_batch < 1):
            raise DefenseError("accounting: local_steps and step_batch must be ≥ 1")

    @property
    def sample_rate(self) -> float:
        """q = b / N: the chance a given record is in a round's batch."""
        return self.batch_size / self.partition_size

    @property
    def chunk(self) -> int:
        """Records per local step."""
        return min(self.step_batch or self.batch_size, self.batch_size)

    @property
    def uses_per_round(self) -> int:
        """m: the most local steps of one round any record of the batch enters."""
        uses = Counter(
            index
            for step in range(self.local_steps)
            for index in local_chunk(step, self.chunk, self.batch_size)
        )
        return max(uses.values())


@dataclass(frozen=True)
class PrivacyClaim:
    """One (ε, δ) and the threat model it holds under; `epsilon` None: no finite bound.

    `holds` says whether the run it was computed for satisfies the claim's assumption;
    where it does not, `why_not` says why and the number must not be read as a guarantee.
    None: the assumption cannot be checked from where the claim is made (`why_not` says
    what it depends on), so the number is a guarantee only if that holds.
    """

    threat_model: ThreatModelName
    epsilon: float | None
    delta: float
    statement: str
    holds: bool | None
    why_not: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def privacy_claims(
    noise_multiplier: float,
    delta: float,
    schedule: RoundSchedule,
    rounds: int,
    *,
    secret_sampling: bool,
    public_sampling_note: str = "",
) -> list[PrivacyClaim]:
    """ε per threat model for one client after `rounds` rounds of `schedule` (module note).

    `secret_sampling`: whether the client's batch sampling is secret from the server;
    `public_sampling_note` says why not, where it is not.
    """
    sigma, m, chunk = noise_multiplier, schedule.uses_per_round, schedule.chunk
    q = schedule.sample_rate

    def spent(multiplier: float, rate: float, steps: int) -> float | None:
        if sigma == 0:
            return None
        return dp_epsilon(multiplier, rate, steps, delta)

    round_note = f"{m} of {schedule.local_steps} local steps per round" if m > 1 else ""
    subsampled = (
        f"record-level, amplified by subsampling at q = {schedule.batch_size}/"
        f"{schedule.partition_size}; assumes the client samples its batch secretly"
    )
    return [
        PrivacyClaim(
            "subsampled",
            spent(sigma / math.sqrt(m), q, rounds),
            delta,
            subsampled + (f" ({round_note})" if round_note else ""),
            holds=secret_sampling,
            why_not="" if secret_sampling else public_sampling_note,
        ),
        PrivacyClaim(
            "informed",
            spent(sigma, 1.0, m * rounds),
            delta,
            "record-level against an informed adversary who knows which records each step "
            "used (q = 1): bounds what the server learns of an attacked record",
            holds=True,
        ),
        PrivacyClaim(
            "user",
            spent(sigma / chunk, 1.0, schedule.local_steps * rounds),
            delta,
            f"user-level: all of one client's records, by group privacy over the {chunk} "
            "record(s) of each step (q = 1)",
            holds=True,
        ),
    ]
