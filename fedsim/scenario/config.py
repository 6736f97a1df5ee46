"""The typed scenario: every setting a run takes, validated, with extra keys refused.

A scenario file is TOML; `fedsim.scenario.loading` reads it, applies `--set`
overrides and validates it into `Scenario`. Field names here are the TOML keys, so
an error's dotted location (`protocol.lr`) is where the user must look.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from attacks.errors import AttackError
from attacks.local_optimizer import LocalOptimizer
from fedsim.scenario import names

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]
DatasetName = Annotated[str, AfterValidator(names.known_dataset)]
ModelName = Annotated[str, AfterValidator(names.known_model)]
AttackName = Annotated[str, AfterValidator(names.known_attack)]
DefenseSpec = Annotated[str, AfterValidator(names.valid_defense)]
Slug = Annotated[str, AfterValidator(names.slug)]
DirPath = Annotated[str, AfterValidator(names.directory)]


class _Strict(BaseModel):
    """Base of every section: unknown keys are errors, values are not coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class DataConfig(_Strict):
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


class ModelConfig(_Strict):
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


class SecAggConfig(_Strict):
    """Flower's SecAgg+ settings, used when `federation.secure_aggregation` is on.

    `num_shares`: into how many shares each client's secrets are split, an integer
    (1 or at least 3, at most the clients per round) or a fraction of the clients per
    round; the default 1.0 shares with all of them. `reconstruction_threshold`: how
    many shares rebuild a secret, an integer below `num_shares` or a fraction of the
    shares (at least 2 either way). Each client's weights are clipped to
    [-clipping_range, clipping_range] and stochastically rounded to one of
    `quantization_range` levels, so the aggregate is FedAvg's up to 2·clipping_range /
    quantization_range per coordinate; masks live modulo `modulus_range` (a power of 2).
    """

    num_shares: int | float = 1.0
    reconstruction_threshold: int | float = 0.5
    clipping_range: PositiveFloat = 8.0
    quantization_range: Annotated[int, Field(ge=2)] = 2**22
    modulus_range: Annotated[int, Field(ge=4, le=2**32)] = 2**32

    @model_validator(mode="after")
    def _flower_rules(self) -> SecAggConfig:
        """The checks `SecAggPlusWorkflow.__init__` makes, as scenario errors."""
        shares, threshold = self.num_shares, self.reconstruction_threshold
        if isinstance(shares, int) and shares != 1 and shares < 3:
            raise ValueError("num_shares: an integer must be 1 (all) or at least 3")
        if isinstance(shares, float) and not 0 < shares <= 1:
            raise ValueError(f"num_shares: a fraction must lie in (0, 1], got {shares}")
        if isinstance(threshold, int) and threshold != 1:
            if threshold < 2:
                raise ValueError("reconstruction_threshold: an integer must be 1 (all) or ≥ 2")
            if isinstance(shares, int) and shares != 1 and threshold >= shares:
                raise ValueError(
                    f"reconstruction_threshold: must be below num_shares = {shares},"
                    f" got {threshold}"
                )
        if isinstance(threshold, float) and not 0 < threshold <= 1:
            raise ValueError(
                f"reconstruction_threshold: a fraction must lie in (0, 1], got {threshold}"
            )
        if self.modulus_range & (self.modulus_range - 1):
            raise ValueError(f"modulus_range: must be a power of 2, got {self.modulus_range}")
        if self.modulus_range <= self.quantization_range:
            raise ValueError(
                f"modulus_range: must exceed quantization_range = {self.quantization_range}"
            )
        return self

    def shares_and_threshold(self, clients: int) -> tuple[int, int, int]:
        """(shares, threshold, neighbourhood) SecAgg+ uses for `clients` per round.

        Follows `SecAggPlusWorkflow.setup_stage`: each client shares its secrets with
        the `neighbourhood` clients around it on a ring (itself included), and every
        client needs `threshold` of them alive, or the round's aggregation halts.
        """
        value = self.num_shares
        if isinstance(value, int) and value != 1:
            shares = value
        else:
            shares = round(float(value) * clients)
            if shares < clients and shares % 2 == 0:
                shares += 1
            if shares <= 2:
                shares = clients
        value = self.reconstruction_threshold
        if isinstance(value, int) and value != 1:
            threshold = value
        else:
            threshold = max(round(float(value) * shares), 2)
        if shares != clients and shares % 2 == 0:
            shares += 1  # SecAgg+ wants an odd number of shares
        return shares, threshold, min(shares, clients)

    def check_fits(self, clients: int) -> None:
        """ValueError when SecAgg+ cannot aggregate `clients` updates with these settings."""
        if isinstance(self.num_shares, int) and self.num_shares > clients:
            raise ValueError(
                f"secagg.num_shares: {self.num_shares} exceeds the clients per round ({clients})"
            )
        _, threshold, neighbourhood = self.shares_and_threshold(clients)
        if threshold > neighbourhood:
            raise ValueError(
                f"secagg.reconstruction_threshold: {threshold} shares needed but each client"
                f" has only {neighbourhood} neighbours with {clients} clients per round"
            )
        if clients * self.quantization_range >= self.modulus_range:
            raise ValueError(
                f"secagg.modulus_range: the sum of {clients} quantised updates can reach"
                f" {clients} × quantization_range = {clients * self.quantization_range},"
                f" not below modulus_range = {self.modulus_range} (it would wrap around)"
            )


def log_mantissas(per_decade: int) -> frozenset[int]:
    """The one-digit leading numbers of `per_decade` log-spaced rounds in each decade:
    10^(i / per_decade) rounded, so 3 gives {1, 2, 5} (1, 2, 5, 10, 20, 50, …)."""
    return frozenset(round(10 ** (i / per_decade)) for i in range(per_decade))


class RoundSchedule(_Strict):
    """Which rounds are selected: at most one of `every`, `first`, `rounds`, `log`
    (none: every round).

    `log = k` picks about k rounds per decade, at round numbers with one significant
    digit: 3 gives 1, 2, 5, 10, 20, 50, 100, 200, …; 1 gives 1, 10, 100, …; 2 gives
    1, 3, 10, 30, …. A whole run from its first rounds to a converged model is then
    covered by a few rounds per decade.
    """

    every: PositiveInt | None = None
    first: PositiveInt | None = None
    rounds: list[PositiveInt] | None = None
    log: Annotated[int, Field(ge=1, le=9)] | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> RoundSchedule:
        given = [k for k in ("every", "first", "rounds", "log") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(
                f"give at most one of every, first, rounds, log (got {', '.join(given)})"
            )
        return self

    def selects(self, server_round: int) -> bool:
        if self.every is not None:
            return (server_round - 1) % self.every == 0
        if self.first is not None:
            return server_round <= self.first
        if self.rounds is not None:
            return server_round in self.rounds
        if self.log is not None:
            if server_round < 1:
                return False
            leading = server_round
            while leading % 10 == 0:
                leading //= 10
            return leading in log_mantissas(self.log)
        return True

    def through(self, last: int, first: int = 1) -> list[int]:
        """The selected rounds from `first` to `last`."""
        return [r for r in range(first, last + 1) if self.selects(r)]


STRATEGY_OPTIONS: dict[str, tuple[str, ...]] = {
    "fedavg": (),
    "fedadagrad": ("eta", "tau"),
    "fedadam": ("eta", "beta_1", "beta_2", "tau"),
    "fedyogi": ("eta", "beta_1", "beta_2", "tau"),
}
"""Each server strategy a scenario can name, and the options it takes."""

Decay = Annotated[float, Field(ge=0, lt=1)]


class StrategyConfig(_Strict):
    """How the server turns a round's replies into the next global model.

    `fedavg`: Flower's FedAvg, the mean of the clients' weights by their sample counts.
    `fedadagrad`, `fedadam`, `fedyogi`: Flower's adaptive server optimisers (Reddi et
    al., "Adaptive Federated Optimization", ICLR 2021), which treat FedAvg's mean minus
    the current model as a pseudo-gradient and step with server learning rate `eta`,
    moments decaying by `beta_1` and `beta_2`, and adaptivity `tau`; they keep those
    moments from round to round (saved with each checkpoint, so `--resume` restores
    them). Options left unset take Flower's defaults; a strategy refuses the options it
    does not have.
    """

    name: Literal["fedavg", "fedadagrad", "fedadam", "fedyogi"] = "fedavg"
    eta: PositiveFloat | None = None
    beta_1: Decay | None = None
    beta_2: Decay | None = None
    tau: PositiveFloat | None = None

    @model_validator(mode="after")
    def _options_taken(self) -> StrategyConfig:
        taken = STRATEGY_OPTIONS[self.name]
        for option in ("eta", "beta_1", "beta_2", "tau"):
            if getattr(self, option) is not None and option not in taken:
                accepted = ", ".join(taken) if taken else "no options"
                raise ValueError(f"{option}: {self.name} takes {accepted}")
        return self

    def options(self) -> dict[str, float]:
        """The options given, as keyword arguments of the Flower strategy."""
        return {k: v for k in STRATEGY_OPTIONS[self.name] if (v := getattr(self, k)) is not None}


class FederationConfig(_Strict):
    """How many clients exist and how many train each round.

    `clients_per_round` is a count (integer) or a fraction of `clients` (a float in (0, 1]).
    """

    clients: PositiveInt = 4
    clients_per_round: int | float = 1.0
    rounds: PositiveInt = 3
    round_timeout: PositiveFloat | None = None
    """Seconds the server waits for a round's replies (None: Flower's default, an hour);
    a client that has not answered by then counts as failed for that round."""
    secure_aggregation: bool = False
    """Aggregate with Flower's SecAgg+ (`fedsim.flower.apps.secagg`): the server sees only the
    sum of each round's masked, quantised updates, and the auditor records per-client
    attacks as impossible instead of attacking."""
    secagg: SecAggConfig = Field(default_factory=SecAggConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    keep_checkpoints: RoundSchedule | None = None
    """Rounds whose global model stays in `checkpoints/` (e.g. `{ log = 3 }`), to start
    later runs from with `model.checkpoint`; None keeps only what `--resume` needs."""

    @model_validator(mode="after")
    def _count_fits(self) -> FederationConfig:
        value = self.clients_per_round
        if isinstance(value, int) and not 1 <= value <= self.clients:
            raise ValueError(
                f"clients_per_round: a count must lie in [1, clients = {self.clients}], got {value}"
            )
        if isinstance(value, float) and not 0 < value <= 1:
            raise ValueError(f"clients_per_round: a fraction must lie in (0, 1], got {value}")
        if self.secure_aggregation and self.per_round() < 2:
            raise ValueError(
                "secure_aggregation: needs at least 2 clients per round (federation.clients"
                " × federation.clients_per_round; the sum of one update is that update)"
            )
        if self.secure_aggregation:
            self.secagg.check_fits(self.per_round())
        if self.secure_aggregation and self.strategy.name != "fedavg":
            raise ValueError(
                f"strategy.name: federation.secure_aggregation runs Flower's SecAgg+ with"
                f" FedAvg only, not {self.strategy.name}"
            )
        return self

    def per_round(self) -> int:
        """Number of clients that train in each round."""
        if isinstance(self.clients_per_round, int):
            return self.clients_per_round
        return max(1, int(self.clients * self.clients_per_round))


class ProtocolConfig(_Strict):
    """What a client computes and sends.

    Each round a client draws a fresh seeded batch of `batch_size` images from its
    partition: these are all the private images its update is computed from, so they
    are what an audit tries to reconstruct. `fedsgd`: the gradient g of the mean loss
    at the start parameters θ; the client sends θ − lr·g so that FedAvg's weighted mean
    of the replies is one SGD step of the mean gradient. `fedavg`: `local_steps` SGD
    steps of `lr` on consecutive chunks of `local_batch_size` samples of the batch (the
    whole batch when unset), wrapping around it; the client sends its new weights.

    Local epochs as a Flower client trains them (`local_epochs` passes over its data in
    mini-batches of `local_batch_size`) are passes over the round's batch: `local_epochs
    = E` sets `local_steps = E · ⌈batch_size / local_batch_size⌉`, the order of the
    batch kept in every pass (exact passes when `local_batch_size` divides `batch_size`;
    otherwise chunks wrap around the batch, as the attacks model it). A Flower client
    that trains on its whole partition each round is `batch_size` = the partition's size.

    FedAvg clients step plain SGD of `lr` unless `optimizer` names torch's `sgd` (with
    `momentum`, `dampening`, `nesterov`), `adam` or `adamw` (with `betas`, `eps`,
    `amsgrad`), each with `weight_decay`; unset values are torch's defaults. The clients
    train with that torch optimiser and the attacks unroll it
    (`attacks.local_optimizer`).
    """

    kind: Literal["fedsgd", "fedavg"] = "fedsgd"
    lr: PositiveFloat = 0.1
    batch_size: PositiveInt = 4
    local_steps: PositiveInt = 1
    local_batch_size: PositiveInt | None = None
    local_epochs: PositiveInt | None = None
    """FedAvg: passes over the round's batch; sets `local_steps` (see above)."""
    optimizer: Literal["sgd", "adam", "adamw"] | None = None
    """FedAvg: the clients' torch optimiser (None: plain SGD of `lr`)."""
    momentum: NonNegativeFloat | None = None
    """FedAvg, optimizer `sgd`: momentum μ (torch's default 0)."""
    dampening: NonNegativeFloat | None = None
    """FedAvg, optimizer `sgd`: dampening τ of the momentum (torch's default 0)."""
    nesterov: bool | None = None
    """FedAvg, optimizer `sgd`: Nesterov momentum (torch's default false)."""
    weight_decay: NonNegativeFloat | None = None
    """FedAvg, any optimizer: weight decay λ (torch's default: 0; 0.01 for `adamw`)."""
    betas: tuple[Beta, Beta] | None = None
    """FedAvg, optimizer `adam`/`adamw`: (β₁, β₂) (torch's default (0.9, 0.999))."""
    eps: PositiveFloat | None = None
    """FedAvg, optimizer `adam`/`adamw`: ε (torch's default 1e-8)."""
    amsgrad: bool | None = None
    """FedAvg, optimizer `adam`/`adamw`: AMSGrad (torch's default false)."""

    @model_validator(mode="before")
    @classmethod
    def _epochs_to_steps(cls, raw: Any) -> Any:
        """`local_epochs` → `local_steps`, so that everything downstream reads one field."""
        if not isinstance(raw, dict) or raw.get("local_epochs") is None:
            return raw
        epochs, batch = raw["local_epochs"], raw.get("batch_size", 4)
        chunk = raw.get("local_batch_size") or batch
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1
            for v in (epochs, batch, chunk)
        ):
            return raw  # field validation names the bad value
        steps = epochs * -(-batch // chunk)
        given = raw.get("local_steps", 1)
        if given not in (1, steps):
            raise ValueError(
                f"local_steps: {given} contradicts protocol.local_epochs = {epochs}"
                f" ({epochs} × ⌈{batch} / {chunk}⌉ = {steps} steps); give one of them"
            )
        return {**raw, "local_steps": steps}

    @model_validator(mode="after")
    def _fedavg_only(self) -> ProtocolConfig:
        if self.kind == "fedsgd":
            given = [
                name
                for name, value in (
                    ("local_epochs", self.local_epochs),
                    ("local_batch_size", self.local_batch_size),
                    ("local_steps", None if self.local_steps == 1 else self.local_steps),
                )
                if value is not None
            ]
            if given:
                raise ValueError(
                    f"{given[0]}: fedsgd takes one step on the whole batch; use kind = 'fedavg'"
                )
        if self.local_batch_size is not None and self.local_batch_size > self.batch_size:
            raise ValueError(
                f"local_batch_size: {self.local_batch_size} exceeds batch_size ({self.batch_size})"
            )
        self.local_optimizer()  # refuses what torch.optim would
        return self

    def local_optimizer(self) -> LocalOptimizer:
        """The clients' optimiser as the attacks describe it (plain SGD unless `optimizer`)."""
        given = {k: getattr(self, k) for k in _OPTIMIZER_FIELDS if getattr(self, k) is not None}
        if self.kind == "fedsgd" and (self.optimizer is not None or given):
            field = "optimizer" if self.optimizer is not None else next(iter(given))
            raise ValueError(
                f"{field}: fedsgd clients send one gradient; an optimiser applies to kind = 'fedavg'"
            )
        name = self.optimizer or "sgd"
        for key in given:
            if name not in _OPTIMIZER_FIELDS[key]:
                raise ValueError(
                    f"{key}: applies to protocol.optimizer"
                    f" {' or '.join(map(repr, _OPTIMIZER_FIELDS[key]))}, not {name!r}"
                )
        if given.get("nesterov") and (given.get("momentum", 0) <= 0 or given.get("dampening")):
            raise ValueError("nesterov: needs protocol.momentum > 0 and protocol.dampening 0")
        try:
            return LocalOptimizer(name, **given)
        except AttackError as error:
            raise ValueError(str(error)) from None


_OPTIMIZER_FIELDS: dict[str, tuple[str, ...]] = {
    "momentum": ("sgd",),
    "dampening": ("sgd",),
    "nesterov": ("sgd",),
    "weight_decay": ("sgd", "adam", "adamw"),
    "betas": ("adam", "adamw"),
    "eps": ("adam", "adamw"),
    "amsgrad": ("adam", "adamw"),
}
"""`ProtocolConfig` fields of the clients' optimiser and the optimisers they apply to."""


class BudgetConfig(_Strict):
    """How much one attack may spend on one target."""

    iterations: PositiveInt = 200
    restarts: PositiveInt = 1
    seconds: PositiveFloat | None = None


class BudgetOverride(_Strict):
    iterations: PositiveInt | None = None
    restarts: PositiveInt | None = None
    seconds: PositiveFloat | None = None


class AttackConfig(_Strict):
    """One attack by registry name, its option overrides, and (optionally) its own budget.

    The name `adapted` stands for the attack adapted to the scenario's defenses
    (`defenses.adapted`: Soteria → cosine matching without the defended layer, ATS →
    strong Inverting Gradients, PRECODE → analytic inversion, others → bayes); its
    overrides apply where the chosen attack has them.
    """

    name: AttackName
    overrides: dict[str, bool | int | float | str | dict[str, float]] = Field(default_factory=dict)
    """Hyper-parameters of the attack, e.g. ``{ lr = 0.1, priors = { tv = 300.0 } }``."""
    budget: BudgetOverride = Field(default_factory=BudgetOverride)
    label: str | None = None
    """Name in records and plots (default: `name`); lets one attack appear twice with other options."""

    @model_validator(mode="after")
    def _overrides_accepted(self, info: ValidationInfo) -> AttackConfig:
        names.check_attack_overrides(self.name, self.overrides, info)
        return self

    @property
    def display_name(self) -> str:
        return self.label or self.name


class ClientSchedule(_Strict):
    """Which of a round's clients are audited: all, or a seeded sample of `sample`."""

    sample: PositiveInt | None = None


class ThreatConfig(_Strict):
    """What the honest-but-curious server knows (see `attacks.target.ThreatModel`)."""

    labels: Literal["given", "inferred"] = "inferred"
    bn_stats_known: bool = False
    mechanism_known: bool = True
    local_hparams_known: bool = True
    feature_stats_known: bool = False
    """Tabular data: the server knows each feature's mean and std over the training split
    (the attacks then use them as a Gaussian prior, `attacks.priors.FeatureStatistics`)."""
    kappa: Annotated[float, Field(gt=0, lt=1)] | None = None
    """κ: how often the server's best guess made without any update is recognisable, the
    baseline of the reconstruction bound under DP-SGD (`defenses.reconstruction`); None:
    fedsim's measured one for the data set (`fedsim.metrics.guess_baseline`)."""


class AuditConfig(_Strict):
    rounds: RoundSchedule = Field(default_factory=RoundSchedule)
    clients: ClientSchedule = Field(default_factory=ClientSchedule)
    threat: ThreatConfig = Field(default_factory=ThreatConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    worker: Literal["thread", "inline", "ray"] = "thread"
    """`thread`: attacks run in a worker the next round need not wait for; `inline`: in the
    round; `ray`: as Ray tasks on the cluster's nodes, one per attack and round
    (`fedsim.auditor.ray_tasks`), recorded in round order."""
    pending: PositiveInt = 2
    """Rounds whose attacks may wait or run at once (`thread`, `ray`); a federation faster
    than its attacks is held back beyond that."""
    cpus: Annotated[float, Field(ge=0)] | None = None
    """CPUs each attack task reserves under `ray` (None: 1, or 0 when the clients run on
    Ray's simulation engine, whose client actors reserve every CPU)."""
    gpus: Annotated[float, Field(ge=0)] | None = None
    """GPUs each attack task reserves under `ray` (None: 0); fractions share a GPU."""
    grids: bool = True
    """Write originals-over-reconstructions PNG grids to `reconstructions/`."""

    @model_validator(mode="after")
    def _task_resources_for_ray(self) -> AuditConfig:
        for option in ("cpus", "gpus"):
            if getattr(self, option) is not None and self.worker != "ray":
                raise ValueError(
                    f"{option}: per-task resources apply to worker = 'ray' only"
                    f" (worker is {self.worker!r}); set worker = 'ray'"
                )
        return self

    def task_resources(self, clients_hold_cpus: bool) -> tuple[float, float]:
        """(CPUs, GPUs) each Ray attack task reserves; `clients_hold_cpus` when Flower's
        simulation engine holds every CPU for its client actors."""
        default_cpus = 0.0 if clients_hold_cpus else 1.0
        return (
            self.cpus if self.cpus is not None else default_cpus,
            self.gpus if self.gpus is not None else 0.0,
        )


class SimulationConfig(_Strict):
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


class Scenario(_Strict):
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

    def budget_for(self, attack: AttackConfig) -> BudgetConfig:
        """The audit budget with the attack's own overrides applied."""
        own = attack.budget.model_dump(exclude_none=True)
        return self.audit.budget.model_copy(update=own)

    @property
    def first_round(self) -> int:
        """The first round this run trains: 1, or the one after its checkpoint's round."""
        return self.model.checkpoint_round + 1

    @property
    def defense_label(self) -> str:
        """How records name the defense chain: specs joined by '+', or 'none'."""
        return "+".join(self.defenses) if self.defenses else "none"
