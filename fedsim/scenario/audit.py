"""The audit of a scenario: which attacks, on which rounds and clients, with what budget,
against what the server knows."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, model_validator

from fedsim.scenario import names
from fedsim.scenario.fields import AttackName, PositiveFloat, PositiveInt, Section
from fedsim.scenario.rounds import RoundSelection


class BudgetConfig(Section):
    """How much one attack may spend on one target."""

    iterations: PositiveInt = 200
    restarts: PositiveInt = 1
    seconds: PositiveFloat | None = None


class BudgetOverride(Section):
    """An attack's own budget (`attacks[i].budget`): the fields it sets replace the audit's."""

    iterations: PositiveInt | None = None
    restarts: PositiveInt | None = None
    seconds: PositiveFloat | None = None


class AttackConfig(Section):
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


class ClientSelection(Section):
    """Which of a round's clients are audited: all, or a seeded sample of `sample`."""

    sample: PositiveInt | None = None


class ThreatConfig(Section):
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


class AuditConfig(Section):
    """Which rounds and clients are attacked, what the server knows, what each attack may
    spend, and where the attacks run."""

    rounds: RoundSelection = Field(default_factory=RoundSelection)
    clients: ClientSelection = Field(default_factory=ClientSelection)
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

    def budget_for(self, attack: AttackConfig) -> BudgetConfig:
        """The audit budget with the attack's own overrides applied."""
        return self.budget.model_copy(update=attack.budget.model_dump(exclude_none=True))

    def task_resources(self, clients_hold_cpus: bool) -> tuple[float, float]:
        """(CPUs, GPUs) each Ray attack task reserves; `clients_hold_cpus` when Flower's
        simulation engine holds every CPU for its client actors."""
        default_cpus = 0.0 if clients_hold_cpus else 1.0
        return (
            self.cpus if self.cpus is not None else default_cpus,
            self.gpus if self.gpus is not None else 0.0,
        )
