"""The modes a setting may act in, and the conditions (`Need`) it acts under.

A run's modes: which engine runs the clients (`simulation.engine`), whether Ray is
joined or started and where (`simulation.address`), where the attacks run
(`audit.worker`), the protocol, the data's domain (images or feature rows), secure
aggregation, and the attacks with what each of them reads (`GradientAttack.reads`).
`Modes` is read off a scenario (`of_scenario`) or off the arguments of
`LeakageAuditor.for_model` (`fedsim.auditor.arguments`).

A `Need` is one condition for a setting to act. When it fails it says which setting
ignores the field and what would make it act, in the words of the context: a scenario
key (`protocol.kind`) or a `for_model` argument (`protocol`). `fedsim.scenario.acts`
pairs every field of the schema with its needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fedsim.scenario.audit import AttackConfig
    from fedsim.scenario.config import Scenario


@dataclass(frozen=True)
class AttackReads:
    """One configured attack: its name, what it reads (None: known only once the run has
    chosen it, as for `adapted`), the budget fields it sets itself, and the options
    (`overrides`) it is given."""

    name: str
    reads: frozenset[str] | None
    own_budget: frozenset[str] = frozenset()
    options: frozenset[str] = frozenset()

    def takes(self, what: str) -> bool:
        return self.reads is None or what in self.reads


SCENARIO_NAMES: Mapping[str, str] = MappingProxyType(
    {"protocol.kind": "protocol.kind", "data.dataset": "data.dataset", "attacks": "[[attacks]]"}
)
"""How a scenario names the settings a mode is chosen by."""


@dataclass(frozen=True)
class Modes:
    """What runs: the settings every `Need` is decided on."""

    engine: str | None
    """`simulation.engine`; None in a Flower app of the user's own (`for_model`)."""
    worker: str
    protocol: str
    domain: str
    """`images` or `rows`."""
    dataset: str
    """How the domain was chosen: a data set's name, or `for_model`'s `domain`."""
    attacks: tuple[AttackReads, ...]
    secure_aggregation: bool = False
    address: str | None = None
    packaged_data: bool = False
    model: str = ""
    batch_norm: bool = False
    records: bool = True
    """A run directory is written (for_model: `out_dir` given)."""
    partition: str = "iid"
    optimizer: str = "sgd"
    """The clients' local optimiser (`protocol.optimizer`; unset: plain SGD)."""
    momentum: float = 0.0
    local_steps: int = 1
    checkpoint: bool = False
    strategy: str = "fedavg"
    privacy_claims: bool = False
    """A DP-style defense whose claims carry a reconstruction bound (DP-SGD in a
    scenario; Flower's LocalDpMod in a Flower app)."""
    names: Mapping[str, str] = field(default_factory=lambda: SCENARIO_NAMES)

    @property
    def deployment(self) -> bool:
        """A Flower app of the user's own: no scenario data, no simulation engine."""
        return self.engine is None

    def name(self, setting: str) -> str:
        return self.names.get(setting, setting)

    def attack_names(self) -> str:
        return ", ".join(a.name for a in self.attacks)


@dataclass(frozen=True)
class Need:
    """A condition for a setting to act: `holds(modes, index)` (`index`: the attack a
    field of `attacks.N` belongs to); else `ignored` names the setting that ignores the
    field and `fix` what would make it act."""

    holds: Callable[[Modes, int | None], bool]
    ignored: Callable[[Modes, int | None], str]
    fix: Callable[[Modes, int | None], str]


def _quoted(value: object) -> str:
    """A value as TOML writes it: strings quoted, booleans lower-case."""
    return str(value).lower() if isinstance(value, bool) else f'"{value}"'


def setting_is(setting: str, mode: str, wanted: object) -> Need:
    """The setting `setting` (the mode `mode` of `Modes`) has the value `wanted`."""
    return Need(
        lambda m, _: getattr(m, mode) == wanted,
        lambda m, _: f"{m.name(setting)} is {_quoted(getattr(m, mode))}",
        lambda m, _: f"set {m.name(setting)} = {_quoted(wanted)}",
    )


RAY_ENGINE = setting_is("simulation.engine", "engine", "ray")
RAY_USED = Need(
    lambda m, _: "ray" in (m.engine, m.worker),
    lambda m, _: (
        f"simulation.engine is {_quoted(m.engine)} and audit.worker is {_quoted(m.worker)}"
    ),
    lambda m, _: 'set simulation.engine = "ray" (or audit.worker = "ray")',
)
LOCAL_RAY = Need(
    lambda m, _: m.address is None,
    lambda m, _: "simulation.address joins a cluster, whose nodes declare their own CPUs",
    lambda m, _: "remove it (pass `ray start --num-cpus N` on each node)",
)
CLUSTER = Need(
    lambda m, _: m.address is not None,
    lambda m, _: "simulation.address is not set (a local Ray starts)",
    lambda m, _: "set simulation.address, or remove it",
)
HAS_ATTACKS = Need(
    lambda m, _: bool(m.attacks),
    lambda m, _: f"no attack is configured ({m.name('attacks')} is empty)",
    lambda m, _: f"add one under {m.name('attacks')}, or remove it",
)
INDIVIDUAL_UPDATES = Need(
    lambda m, _: not m.secure_aggregation,
    lambda m, _: "federation.secure_aggregation is true (the server sees only the aggregate)",
    lambda m, _: "set federation.secure_aggregation = false, or remove it",
)
FEDAVG = setting_is("protocol.kind", "protocol", "fedavg")
IMAGES = Need(
    lambda m, _: m.domain == "images",
    lambda m, _: f"{m.name('data.dataset')} is {_quoted(m.dataset)} (feature rows)",
    lambda m, _: f"set {m.name('data.dataset')} to images, or remove it",
)
ROWS = Need(
    lambda m, _: m.domain == "rows",
    lambda m, _: f"{m.name('data.dataset')} is {_quoted(m.dataset)} (images)",
    lambda m, _: 'set data.dataset to feature rows ("adult-sample"), or remove it',
)
SCENARIO_DATA = Need(
    lambda m, _: not m.deployment,
    lambda m, _: "this auditor holds no training data (a Flower app of your own)",
    lambda m, _: "pass the statistics in domain=FeatureDomain(..., mean=..., std=...) instead",
)
RECORDS = Need(
    lambda m, _: m.records,
    lambda m, _: "out_dir is not given (nothing is written)",
    lambda m, _: "pass out_dir",
)
DATA_FILES = Need(
    lambda m, _: not m.packaged_data,
    lambda m, _: f"data.dataset {_quoted(m.dataset)} is packaged with fedsim (no files are read)",
    lambda m, _: "remove it, or set data.dataset to one read from files",
)
DIRICHLET = setting_is("data.partition", "partition", "dirichlet")
CHECKPOINT = Need(
    lambda m, _: m.checkpoint,
    lambda m, _: "model.checkpoint is not set",
    lambda m, _: "set model.checkpoint",
)
PRIVACY_CLAIMS = Need(
    lambda m, _: m.privacy_claims,
    lambda m, _: "no defense states a DP claim with a bound on reconstruction",
    lambda m, _: "add dpsgd to the defenses (in a Flower app: LocalDpMod), or remove it",
)
SECURE_AGGREGATION = setting_is("federation.secure_aggregation", "secure_aggregation", True)
QUEUED_WORKER = Need(
    lambda m, _: m.worker in ("thread", "ray"),
    lambda m, _: f"audit.worker is {_quoted(m.worker)} (attacks run in the round)",
    lambda m, _: 'set audit.worker = "thread" or "ray"',
)
RAY_WORKER = setting_is("audit.worker", "worker", "ray")


def optimizer_is(*names: str) -> Need:
    """The clients' local optimiser is one of `names` (an unset one is plain SGD)."""
    return Need(
        lambda m, _: m.optimizer in names,
        lambda m, _: f"protocol.optimizer is {_quoted(m.optimizer)}",
        lambda m, _: "set protocol.optimizer = " + " or ".join(map(_quoted, names)),
    )


STEPS_AFTER_THE_FIRST = Need(
    lambda m, _: m.local_steps >= 2,
    lambda m, _: (
        f"protocol.local_steps is {m.local_steps} (the optimiser's state acts from the second"
        " step on)"
    ),
    lambda m, _: "let the clients take 2 or more local steps (local_steps, local_epochs)",
)


MOMENTUM = Need(
    lambda m, _: m.momentum > 0,
    lambda m, _: "protocol.momentum is 0 (torch dampens only a momentum buffer)",
    lambda m, _: "set protocol.momentum > 0, or remove it",
)


def strategy_takes(option: str) -> Need:
    """`option` of the server strategy: acts for the strategies that take it."""
    from fedsim.scenario.federation import STRATEGY_OPTIONS

    takers = [name for name, options in STRATEGY_OPTIONS.items() if option in options]
    return Need(
        lambda m, _: m.strategy in takers,
        lambda m, _: f"federation.strategy.name is {_quoted(m.strategy)}",
        lambda m, _: f"set federation.strategy.name to one of {', '.join(takers)}",
    )


def read_by_an_attack(*what: str) -> Need:
    """Some attack reads one of `what`; the audit budget counts only where an attack does
    not set that field in its own budget."""

    def holds(m: Modes, _: int | None) -> bool:
        return any(a.takes(w) and w not in a.own_budget for a in m.attacks for w in what)

    def own(m: Modes) -> list[str]:
        return [a.name for a in m.attacks if any(a.takes(w) and w in a.own_budget for w in what)]

    def ignored(m: Modes, _: int | None) -> str:
        if own(m):
            return f"the attacks that read it set their own ({', '.join(own(m))})"
        return f"none of the attacks ({m.attack_names()}) reads it"

    def fix(m: Modes, _: int | None) -> str:
        return (
            "remove it"
            if own(m)
            else f"remove it, or add an attack that reads it ({readers(what)})"
        )

    return Need(holds, ignored, fix)


def read_by_this_attack(what: str) -> Need:
    """The attack the field belongs to (`attacks.N`) reads `what`."""

    def holds(m: Modes, index: int | None) -> bool:
        return index is None or m.attacks[index].takes(what)

    return Need(
        holds,
        lambda m, _: "its attack does not read it",
        lambda m, _: f"remove it (attacks that read it: {readers((what,))})",
    )


REPLACED_OPTIONS = {
    "seed": "set the scenario's seed",
    "iterations": "set attacks.{index}.budget.iterations",
    "restarts": "set attacks.{index}.budget.restarts",
}
"""Attack options the auditor sets itself (each attack's seed, derived from the run's seed
and the round; the budget), and what to set instead."""


def _replaced(m: Modes, index: int | None) -> list[str]:
    options = m.attacks[index].options if index is not None else frozenset()
    return [option for option in REPLACED_OPTIONS if option in options]


OWN_OPTIONS = Need(
    lambda m, index: not _replaced(m, index),
    lambda m, index: f"the auditor sets {' and '.join(_replaced(m, index))} itself",
    lambda m, index: (
        "; ".join(REPLACED_OPTIONS[o].format(index=index) for o in _replaced(m, index)) + " instead"
    ),
)


BATCH_NORM = Need(
    lambda m, _: m.batch_norm or any(a.takes("bn_stats_known") for a in m.attacks),
    lambda m, _: f"model.name {_quoted(m.model)} has no batch norm, and no attack needs the flag",
    lambda m, _: "remove it, or use a model with batch norm (convnet64, resnet18)",
)
"""`bn_stats_known` gates an attack that needs it (GradInversion) whatever the model; as a
prior (Bayes) it adds nothing to a model without batch norm."""


def readers(what: tuple[str, ...]) -> str:
    """The registered attacks that read any of `what`, with their defaults."""
    from attacks.registry import ATTACKS, build_attack

    names = [n for n in sorted(ATTACKS) if any(w in build_attack(n).reads() for w in what)]
    return ", ".join(names) or "none"


def attack_reads(config: AttackConfig) -> AttackReads:
    """What a configured attack reads: its registry class built with its overrides."""
    from attacks.registry import ATTACKS, build_attack

    own = frozenset(config.budget.model_dump(exclude_none=True))
    options = frozenset(config.overrides)
    if config.name not in ATTACKS:  # `adapted`, or an attack object given by code
        return AttackReads(config.display_name, None, own, options)
    try:
        reads = build_attack(config.name, **config.overrides).reads()
    except Exception:  # noqa: BLE001 - bad options are refused by validation, with their name
        reads = None
    return AttackReads(config.display_name, reads, own, options)


def of_scenario(scenario: Scenario) -> Modes:
    """The modes a scenario runs in."""
    from fedsim.data.registry import DATASETS
    from fedsim.scenario.names import has_batch_norm

    entry = DATASETS[scenario.data.dataset]
    return Modes(
        engine=scenario.simulation.engine,
        worker=scenario.audit.worker,
        protocol=scenario.protocol.kind,
        domain="images" if entry.info.is_image else "rows",
        dataset=scenario.data.dataset,
        attacks=tuple(attack_reads(a) for a in scenario.attacks),
        secure_aggregation=scenario.federation.secure_aggregation,
        address=scenario.simulation.address,
        packaged_data=not entry.needs_root,
        model=scenario.model.name,
        batch_norm=has_batch_norm(scenario.model.name, scenario.data.dataset),
        partition=scenario.data.partition,
        optimizer=scenario.protocol.optimizer or "sgd",
        momentum=scenario.protocol.momentum or 0.0,
        local_steps=scenario.protocol.local_steps,
        checkpoint=scenario.model.checkpoint is not None,
        strategy=scenario.federation.strategy.name,
        privacy_claims=_states_privacy(scenario),
    )


def _states_privacy(scenario: Scenario) -> bool:
    """Whether a defense of the scenario states a DP claim (`Defense.states_privacy`), read
    off the registered class of each part of each stack (bad specs are refused elsewhere)."""
    from defenses.registry import DEFENSES

    names = [part.split(":")[0].strip() for spec in scenario.defenses for part in spec.split("|")]
    return any(getattr(DEFENSES.get(name), "states_privacy", False) for name in names)
