"""From a validated scenario to the objects a run uses: data, partitions, model, defenses.

Client and auditor both build a `Federation` from the same scenario, so the auditor
can recompute every client's batch (same partition, same seeded sampler) without
anything but the update travelling over the federation.

Contract — a client's defense randomness never reaches an attack. In simulation a
client's defenses draw from `defense_generator`, derived from the scenario seed so
that runs repeat. Only two callers may use it: the client itself
(`fedsim.flower.apps.local_update`) and ground-truth scoring (`trained_batch`, which
replays the batch stage — ATS's transformations — so reconstructions can also be
scored against the image the gradient was computed on). No attack is ever handed it,
a Federation, or anything that holds one: an attack gets an `AttackTarget` (model,
update, mechanism, protocol, threat model) and a budget, nothing more. In a
deployment the defenses' randomness comes from the operating system's entropy
(`defenses.flower`, and fedsim's own deployable ClientApp, `fedsim.flower.apps.client_app.app`).
tests/test_defense_secrecy.py checks both. Whoever holds the scenario seed (the run
directory's scenario.toml) can regenerate a simulated client's noise, so the privacy
claims of a seeded run say they do not hold against such a holder (`privacy_spent`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attacks.domain import FeatureDomain, InputDomain
from attacks.target import Protocol
from defenses.accounting import PrivacyClaim, RoundSchedule
from defenses.base import stated_mechanism
from defenses.errors import DefenseError
from defenses.mechanisms import Mechanism
from fedsim.checkpoints import state_for_model
from fedsim.data.images import LabeledImages
from fedsim.data.info import DatasetInfo
from fedsim.data.partition import partition_dataset
from fedsim.data.registry import get_dataset, load_dataset
from fedsim.data.sampling import batch_indices
from fedsim.errors import ConfigError
from fedsim.metrics.guess_baseline import kappa_for
from fedsim.models import ImageClassifier, build_model
from fedsim.scenario.components import build_defense
from fedsim.scenario.config import Scenario

PUBLIC_SAMPLER = (
    "fedsim's clients draw their batches from a public function of the scenario seed "
    "(fedsim.data.sampling): the server recomputes every batch, so nothing is amplified"
)
SEEDED_NOISE = (
    "simulation: each client's defense noise is drawn from the scenario seed, which the "
    "run directory records (scenario.toml), so whoever holds it regenerates the noise and "
    "the claim does not hold against them; it holds against the simulated server, "
    "fedsim's auditor, which is never given the seed (fedsim's deployable ClientApp draws "
    "its noise from OS entropy)"
)

# Tags that keep the seeded streams derived from one scenario seed apart.
_MODEL_INIT_TAG = 0x1417
_DEFENSE_TAG = 0xDEF5
_TRAIN_TAG = 0x7A17
_AUDIT_TAG = 0xA0D1


def derived_seed(seed: int, tag: int, *values: int) -> int:
    """A 63-bit seed for one stream (tag) and position (round, client, …) of a scenario seed."""
    sequence = np.random.SeedSequence([int(seed), int(tag), *(int(v) for v in values)])
    return int(sequence.generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


@dataclass
class Federation:
    """Everything a scenario fixes before training starts; identical wherever it is built."""

    scenario: Scenario
    info: DatasetInfo
    train: LabeledImages
    test: LabeledImages
    partitions: list[np.ndarray]
    defense: Any
    """Every client's defenses stacked as one (`defenses.parse_defense`; 'none' if empty)."""
    template: ImageClassifier
    """The model at its initial weights; `build_model` copies it."""

    @property
    def num_clients(self) -> int:
        return len(self.partitions)

    @property
    def model_name(self) -> str:
        """The scenario's model, unless a defense's model stage names another (PRECODE)."""
        return self.defense.model_name or self.scenario.model.name

    def build_model(self) -> ImageClassifier:
        """A fresh copy of the model with the scenario's seeded initial weights.

        The template is built once, when the federation is; copies use no random
        numbers, so building models never races with attacks in a worker thread.
        """
        return copy.deepcopy(self.template)

    def initial_state(self) -> dict[str, torch.Tensor]:
        """The global model the run starts from: the seeded initialisation, or
        `model.checkpoint` checked against the model (names, shapes; ConfigError if not)."""
        model = self.build_model()
        path = self.scenario.model.checkpoint
        if path is not None:
            model.load_state_dict(state_for_model(path, model, self.model_name))
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def batch_indices(self, client: int, server_round: int) -> np.ndarray:
        """Data-set indices of client `client`'s batch in round `server_round` (seeded)."""
        return batch_indices(
            self.partitions[client],
            self.scenario.protocol.batch_size,
            self.scenario.seed,
            server_round,
            client,
        )

    def client_batch(self, client: int, server_round: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [0, 1] and labels of that batch, in the sampler's order."""
        batch = self.train.subset(self.batch_indices(client, server_round))
        return batch.images, batch.labels

    def trained_batch(self, client: int, server_round: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch after the defenses' batch stage (ATS's transformations): what the
        client's gradient was computed on, reproduced from the same seeded generator."""
        x, y = self.client_batch(client, server_round)
        return self.defense.transform_batch(x, y, self.defense_generator(client, server_round))

    def defense_generator(self, client: int, server_round: int) -> torch.Generator:
        """The generator a client's defenses draw from in one round (simulation only).

        For the client and for ground-truth scoring alone; no attack code path receives
        it (see the module note)."""
        return torch.Generator().manual_seed(
            derived_seed(self.scenario.seed, _DEFENSE_TAG, server_round, client)
        )

    def train_seed(self, client: int, server_round: int) -> int:
        """Seed of torch's global RNG while a client trains (stochastic layers)."""
        return derived_seed(self.scenario.seed, _TRAIN_TAG, server_round, client)

    def audit_rng(self, server_round: int) -> np.random.Generator:
        """The generator that samples which clients of a round are audited."""
        return np.random.default_rng(derived_seed(self.scenario.seed, _AUDIT_TAG, server_round))

    def attack_protocol(self) -> Protocol:
        """The scenario's protocol as the attacks describe it."""
        p = self.scenario.protocol
        return Protocol(
            kind=p.kind,
            local_steps=p.local_steps,
            local_lr=p.lr,
            local_batch_size=p.local_batch_size,
            optimizer=p.local_optimizer(),
        )

    @property
    def mechanism(self) -> Mechanism | None:
        """p(observed | clean update) the defenses induce, in the units of what clients
        send under the scenario's protocol; None where none is stated."""
        return self._stated_mechanism()[0]

    @property
    def mechanism_refusal(self) -> str | None:
        """Why no likelihood can be stated though the defenses perturb the update (then
        an attack that models the mechanism is refused), else None."""
        return self._stated_mechanism()[1]

    def _stated_mechanism(self) -> tuple[Mechanism | None, str | None]:
        batch = self.scenario.protocol.batch_size
        return stated_mechanism(self.defense, batch, self.attack_protocol())

    def privacy_spent(
        self, server_round: int, *, noise_from_seed: bool = True
    ) -> list[PrivacyClaim] | None:
        """The defenses' (ε, δ) after `server_round` rounds, one claim per threat model,
        for a client that trained in every round; None when no defense states a guarantee
        (`Defense.privacy_claims`: DP-SGD's).

        The partition size is the smallest partition's, so each ε holds for every client;
        a round is one batch of `batch_size` drawn and cycled by the local steps
        (`defenses.accounting.RoundSchedule`). fedsim's batches come from a public
        function of the scenario seed, so the ε amplified by subsampling is marked as not
        holding here. `noise_from_seed`: the clients draw their noise from the scenario
        seed (simulation), so no claim holds against whoever holds it (`SEEDED_NOISE`).
        The informed claim carries the reconstruction bound, from the scenario's κ
        (`fedsim.metrics.guess_baseline.kappa_for`).
        """
        if not self.defense.states_privacy:
            return None
        scenario = self.scenario
        threat = scenario.audit.threat
        return self.defense.privacy_claims(
            self.round_schedule(),
            server_round,
            secret_sampling=False,
            public_sampling_note=PUBLIC_SAMPLER,
            seeded_noise=SEEDED_NOISE if noise_from_seed else "",
            kappa=kappa_for(scenario.data.dataset, threat.labels == "given", threat.kappa),
        )

    def round_schedule(self) -> RoundSchedule:
        """How one round uses a client's records, for the accounting (smallest partition)."""
        return _round_schedule(self.scenario, self.partitions)

    def domain(self) -> InputDomain:
        """Where the inputs live, as the auditor's attacks see it: the data set's domain,
        with the training split's per-feature mean and std where the threat model grants
        them (tabular data)."""
        domain = self.info.domain()
        if isinstance(domain, FeatureDomain) and self.scenario.audit.threat.feature_stats_known:
            rows = self.train.images.double()
            domain = dataclasses.replace(
                domain,
                mean=tuple(rows.mean(0).tolist()),
                std=tuple(rows.std(0).clamp_min(1e-6).tolist()),
            )
        return domain

    def eval_set(self) -> LabeledImages:
        """The held-out split the server evaluates on (its first `eval_samples`, if set)."""
        limit = self.scenario.data.eval_samples
        if limit is None or limit >= len(self.test):
            return self.test
        return self.test.subset(np.arange(limit))


def _round_schedule(scenario: Scenario, partitions: list[np.ndarray]) -> RoundSchedule:
    protocol = scenario.protocol
    fedavg = protocol.kind == "fedavg"
    return RoundSchedule(
        partition_size=min(len(p) for p in partitions),
        batch_size=protocol.batch_size,
        local_steps=protocol.local_steps if fedavg else 1,
        step_batch=protocol.local_batch_size if fedavg else None,
    )


def _check_privacy(defense: Any, scenario: Scenario, partitions: list[np.ndarray]) -> None:
    """ConfigError naming the field where the defenses' privacy claims cannot be stated for
    this run (DP-SGD's δ must be below 1/(smallest partition)): the claims of no round."""
    if not defense.states_privacy:
        return
    try:
        defense.privacy_claims(_round_schedule(scenario, partitions), 0, secret_sampling=False)
    except DefenseError as error:
        raise ConfigError(f"defenses: {error}") from None


def build_federation(scenario: Scenario) -> Federation:
    """Load the data, partition it and parse the defenses of `scenario`."""
    return _build_cached(scenario.model_dump_json())


@functools.lru_cache(maxsize=4)
def _build_cached(scenario_json: str) -> Federation:
    scenario = Scenario.model_validate_json(scenario_json)
    entry = get_dataset(scenario.data.dataset)
    data = scenario.data
    train = load_dataset(data.dataset, "train", data.root, download=data.download)
    test = load_dataset(data.dataset, "test", data.root, download=data.download)
    try:
        partitions = partition_dataset(
            train.labels,
            scenario.federation.clients,
            scenario.data.partition,
            scenario.seed,
            alpha=scenario.data.alpha,
            min_samples=scenario.protocol.batch_size,
        )
    except ConfigError as error:
        raise ConfigError(f"data.partition: {error}") from None
    defense = build_defense(scenario.defenses)
    _check_privacy(defense, scenario, partitions)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(scenario.seed, _MODEL_INIT_TAG))
        template = build_model(defense.model_name or scenario.model.name, entry.info)
    return Federation(scenario, entry.info, train, test, partitions, defense, template)
