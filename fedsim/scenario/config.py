"""The typed scenario: every setting a run takes, validated, with extra keys refused.

A scenario file is TOML; `fedsim.scenario.loading` reads it, applies `--set`
overrides and validates it into `Scenario`. Field names here are the TOML keys, so
an error's dotted location (`protocol.lr`) is where the user must look. The sections
live in modules named for them: `federation` (with `secagg`), `protocol`, `audit`
(with `rounds`); `fields` holds their base and the field types they share.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from fedsim.scenario import names
from fedsim.scenario.audit import AttackConfig, AuditConfig
from fedsim.scenario.federation import FederationConfig
from fedsim.scenario.fields import (
    DatasetName,
    DefenseSpec,
    DirPath,
    ModelName,
    PositiveFloat,
    PositiveInt,
    Section,
    Slug,
)
from fedsim.scenario.protocol import ProtocolConfig


class DataConfig(Section):
    """Which data set, where it lives, and how it is split across clients."""

    dataset: DatasetName = "mnist-sample"
    root: DirPath | None = None
    partition: Literal["iid", "dirichlet"] = "iid"
    alpha: PositiveFloat | None = None
    eval_samples: PositiveInt | None = None
    """Held-out test samples the server evaluates on each round (None: the whole split)."""
    download: bool = False
    """Fetch missing data-set files into `root` (checksummed); offline runs leave it off."""

    @model_validator(mode="after")
    def _alpha_for_dirichlet(self) -> DataConfig:
        if self.partition == "dirichlet" and self.alpha is None:
            raise ValueError("alpha: data.partition = 'dirichlet' needs alpha > 0")
        if self.partition == "iid" and self.alpha is not None:
            raise ValueError("alpha: only data.partition = 'dirichlet' takes alpha")
        return self


class ModelConfig(Section):
    """Which network, and optionally the trained state it starts from."""

    name: ModelName = "cnn"
    checkpoint: str | None = None
    """A state dict to start from instead of the seeded initialisation: a run's
    `checkpoints/round-NNNN.pt` or any `torch.save(model.state_dict())` of this model.
    Read with `torch.load(weights_only=True)` (tensors only, no code) and checked
    against the model's names and shapes before the run starts."""
    checkpoint_round: Annotated[int, Field(ge=0)] = 0
    """The round after which the checkpoint holds the global model; the run goes on
    with round `checkpoint_round + 1`, so its batches, noise, client samples and audits
    are those the run that saved the checkpoint had from that round on. Under DP-SGD
    such a run records no ε: what the training before the checkpoint spent is not
    known to it."""

    @model_validator(mode="after")
    def _round_needs_checkpoint(self) -> ModelConfig:
        if self.checkpoint_round and self.checkpoint is None:
            raise ValueError("checkpoint_round: set only with a checkpoint to start from")
        if self.checkpoint is not None and (not self.checkpoint or "\0" in self.checkpoint):
            raise ValueError("checkpoint: expected the path of a state-dict file")
        return self


class SimulationConfig(Section):
    """Which engine runs the clients, and the resources Ray gives each client and the run.

    `ray`: Flower's simulation engine, one virtual SuperNode per client; set `address`
    to join an existing Ray cluster (`ray start --head` on one machine, `ray start
    --address HEAD:6379` on the others, then `address = "HEAD:6379"` or "auto"), and
    the per-client resources decide how many clients run at once
    (`fedsim.flower.runtimes.ray_cluster`). `inprocess`: clients run one after another in this
    process (no Ray start-up; for tests and small runs; Ray is still joined or started
    for `audit.worker = "ray"`). With a
    stochastic model (PRECODE) and `audit.worker = "thread"`, in-process clients and the
    attacks share torch's global RNG, so such runs are not repeatable bit for bit.
    """

    engine: Literal["ray", "inprocess"] = "ray"

    cpus_per_client: PositiveFloat = 1.0
    gpus_per_client: Annotated[float, Field(ge=0)] = 0.0
    num_cpus: PositiveInt | None = None
    """CPUs the local Ray instance may use (None: all of them); a joined cluster's nodes
    declare their own, so it does not apply with `address`."""
    address: str | None = None
    """An existing Ray cluster to join: HOST:PORT of its head, or 'auto' ($RAY_ADDRESS,
    else the cluster `ray start` last joined on this machine); None starts a local one."""
    connect_timeout: PositiveFloat = 10.0
    """Seconds to wait for the cluster at `address` to answer before the run is refused."""


class Scenario(Section):
    """A whole run: data, model, federation, protocol, defenses, attacks, audit, output."""

    name: Slug = "scenario"
    """Used in the run directory's name: letters, digits, '.', '_', '-' (no path separators)."""
    seed: Annotated[int, Field(ge=0)] = 0
    device: str = "auto"
    output: DirPath = "runs"
    """Parent folder of run directories (`<output>/<name>-<timestamp>`); `--out` names one exactly."""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    federation: FederationConfig = Field(default_factory=FederationConfig)
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    defenses: list[DefenseSpec] = Field(default_factory=list)
    """Defense spec strings applied by every client, in order (e.g. 'gaussian:sigma=0.01')."""
    attacks: list[AttackConfig] = Field(default_factory=list)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)

    @model_validator(mode="after")
    def _device_name(self) -> Scenario:
        if self.device not in ("auto", "cpu", "cuda") and not (
            self.device.startswith("cuda:") and self.device[5:].isdigit()
        ):
            raise ValueError(
                f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            )
        if self.federation.secure_aggregation and self.audit.clients.sample is not None:
            raise ValueError(
                "audit.clients.sample: selects individual updates, which secure aggregation"
                " hides; remove it or set federation.secure_aggregation = false"
            )
        labels = [a.display_name for a in self.attacks]
        duplicates = sorted({x for x in labels if labels.count(x) > 1})
        if duplicates:
            raise ValueError(
                f"attacks: {', '.join(duplicates)} appears twice; give each a distinct label"
            )
        names.check_defense_chain(self.defenses)
        self._fits_the_data()
        self._schedule_fits()
        return self

    def _fits_the_data(self) -> None:
        """Every client must hold at least one batch (partitions guarantee it when this holds)."""
        samples = names.train_samples(self.data.dataset)
        clients = self.federation.clients
        batch = self.protocol.batch_size
        if samples is not None and batch * clients > samples:
            raise ValueError(
                f"protocol.batch_size: a batch of {batch} is larger than a client's partition"
                f" ({self.data.dataset}: {samples} training samples for {clients} clients,"
                f" at most {samples // clients} each)"
            )

    def _schedule_fits(self) -> None:
        first = self.first_round
        if first > self.federation.rounds:
            raise ValueError(
                f"federation.rounds: {self.federation.rounds} is not past model.checkpoint_round"
                f" = {self.model.checkpoint_round}; the run goes on from round {first}"
            )
        rounds = self.audit.rounds.rounds or []
        late = [r for r in rounds if r > self.federation.rounds]
        if late:
            raise ValueError(
                f"audit.rounds.rounds: round {late[0]} is past the last round"
                f" (federation.rounds = {self.federation.rounds})"
            )
        early = [r for r in rounds if r < first]
        if early:
            raise ValueError(
                f"audit.rounds.rounds: round {early[0]} comes before the first round of this"
                f" run ({first}, after model.checkpoint_round)"
            )
        sample = self.audit.clients.sample
        per_round = self.federation.per_round()
        if sample is not None and sample > per_round:
            raise ValueError(
                f"audit.clients.sample: {sample} exceeds the clients trained per round"
                f" ({per_round})"
            )

    @property
    def first_round(self) -> int:
        """The first round this run trains: 1, or the one after its checkpoint's round."""
        return self.model.checkpoint_round + 1

    @property
    def defense_label(self) -> str:
        """How records name the defense chain: specs joined by '+', or 'none'."""
        return "+".join(self.defenses) if self.defenses else "none"
