"""Attack scenario files: the schema, its checks, loading with `--set`, and the resolved TOML.

Field names are the TOML keys, so an error's dotted location (`tuning.space.bayes.priors`)
is where to look.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from fedsim.errors import ConfigError
from fedsim.scenario.fields import DatasetName, DefenseSpec, DirPath, ModelName, PositiveInt, Slug
from fedsim.scenario.loading import format_validation_error, read_with_overrides

BUDGET_FIELDS = ("iterations", "restarts")
"""Hyper-parameters the budget decides; a search space may not contain them."""

NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Split = Literal["train", "test"]


def _attack_spec(text: str) -> str:
    """An attack spec as for `--attack` (name[:k=v,...]); its own checks name the problem."""
    from attacks.errors import AttackError
    from attacks.specs import parse_attack_spec

    try:
        parse_attack_spec(text)
    except AttackError as error:
        message = str(error).splitlines()[0] if str(error) else "refused"
        raise ValueError(f"attack spec {text!r} refused ({message})") from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"attack spec {text!r} refused its options ({error})") from None
    return text


AttackText = Annotated[str, AfterValidator(_attack_spec)]
Candidates = Annotated[list[Any], Field(min_length=1)]


class _Strict(BaseModel):
    """Base of every section: unknown keys are errors, values are not coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class DataSection(_Strict):
    """The scored images: `images` client updates of `batch_size` images from index `first`."""

    dataset: DatasetName = "mnist-sample"
    root: DirPath | None = None
    """Data root (standard layouts); `--data-root` on the command line replaces it."""
    split: Split = "test"
    first: NonNegativeInt = 0
    images: PositiveInt = 10
    batch_size: PositiveInt = 1
    labels: Literal["known", "inferred"] = "known"

    def index_range(self) -> range:
        return range(self.first, self.first + self.images * self.batch_size)


class TrainingSection(_Strict):
    """Attack the model as trained under each defense (`trained_states`): its states after
    each of `steps` Adam steps of `lr` on batches of `batch_size` training images, the
    defense applied to every step's update. States are kept in the folder `states`;
    one missing there is trained on first use (`scripts/train_paper_states.py` trains
    them ahead)."""

    steps: Annotated[list[NonNegativeInt], Field(min_length=1)]
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 0.001
    states: DirPath = "runs/states"

    @model_validator(mode="after")
    def _distinct(self) -> TrainingSection:
        if len(set(self.steps)) != len(self.steps):
            raise ValueError(f"steps: {self.steps} names a step twice")
        return self


class ModelSection(_Strict):
    name: ModelName = "cnn"
    training: TrainingSection | None = None
    """None: attack the seeded, untrained model."""


class BudgetSection(_Strict):
    """Iterations per reconstruction (unset: each attack's default) and random restarts."""

    iterations: PositiveInt | None = None
    restarts: PositiveInt = 1


class SweepSection(_Strict):
    """The paper's weight sweep for one attack (`attacks.tuning.Sweep`): one weight set on
    every hyper-parameter in `names`, halved from `high` while above `low`, the best
    refined over `refine` points from half to twice it. The attack's `space` is searched
    after it, its values for these names read as factors of the weight found."""

    names: Annotated[list[str], Field(min_length=1)]
    high: PositiveFloat
    low: PositiveFloat
    ratio: Annotated[float, Field(gt=1)] = 2.0
    refine: NonNegativeInt = 20

    @model_validator(mode="after")
    def _ordered(self) -> SweepSection:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self

    def sweep(self) -> Any:
        from attacks.tuning import Sweep

        return Sweep(tuple(self.names), self.high, self.low, self.ratio, self.refine)


class TuningSection(_Strict):
    """Held-out images (batches of `data.batch_size`) and, per attack, the settings to try.

    `space` maps an attack name (the part of an `attacks` entry before ':') to its
    hyper-parameters and their candidate values; every combination is tried, or
    `samples` of them drawn at random (seeded by the scenario's seed). `sweep` gives an
    attack the paper's weight sweep before its space (`SweepSection`).
    """

    split: Split = "train"
    first: NonNegativeInt = 0
    images: PositiveInt = 8
    samples: PositiveInt | None = None
    space: dict[str, dict[str, Candidates]] = Field(default_factory=dict)
    sweep: dict[str, SweepSection] = Field(default_factory=dict)

    def index_range(self, batch_size: int) -> range:
        return range(self.first, self.first + self.images * batch_size)


class AttackScenario(_Strict):
    """An attack × defense matrix: data, model, defenses, attacks, budget, tuning, output."""

    name: Slug = "attack-matrix"
    """Names the run directory: letters, digits, '.', '_', '-' (no path separators)."""
    seed: NonNegativeInt = 0
    device: str = "auto"
    output: DirPath = "runs"
    """Parent of run directories (`<output>/<name>-<time>`); `--out` names one exactly."""
    defenses: Annotated[list[DefenseSpec], Field(min_length=1)] = Field(
        default_factory=lambda: ["none"]
    )
    attacks: Annotated[list[AttackText], Field(min_length=1)] = Field(
        default_factory=lambda: ["bayes"]
    )
    data: DataSection = Field(default_factory=DataSection)
    model: ModelSection = Field(default_factory=ModelSection)
    budget: BudgetSection = Field(default_factory=BudgetSection)
    tuning: TuningSection | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AttackScenario:
        from defenses import parse_defense

        specs = [parse_defense(spec).spec for spec in self.defenses]
        twice = sorted({s for s in specs if specs.count(s) > 1})
        if twice:
            raise ValueError(f"defenses: {', '.join(twice)} appears twice")
        twice = sorted({a for a in self.attacks if self.attacks.count(a) > 1})
        if twice:
            raise ValueError(f"attacks: {', '.join(twice)} appears twice")
        if self.tuning is not None:
            self._tuning_fits()
        return self

    def _tuning_fits(self) -> None:
        from attacks.base import GradientAttack, check_overrides
        from attacks.errors import AttackError
        from attacks.registry import ATTACKS, build_attack
        from attacks.specs import ADAPTED, parse_attack_spec

        assert self.tuning is not None
        tuning, data = self.tuning, self.data
        scored, held_out = data.index_range(), tuning.index_range(data.batch_size)
        if (
            tuning.split == data.split
            and scored.start < held_out.stop
            and held_out.start < scored.stop
        ):
            before = f", end before {scored.start}" if scored.start > 0 else ""
            raise ValueError(
                f"tuning.first: the tuning images {held_out.start}–{held_out.stop - 1} of the"
                f" {data.split} split overlap the scored images {scored.start}–{scored.stop - 1};"
                f" start at {scored.stop} or later{before}, or tune on the other split"
            )
        specs = {}
        for text in self.attacks:
            spec = parse_attack_spec(text)
            specs.setdefault(spec.name, spec)
        self._sweeps_fit(specs)
        for name, space in tuning.space.items():
            where = f"tuning.space.{name}"
            if name not in specs:
                raise ValueError(f"{where}: {name!r} is not among the attacks ({', '.join(specs)})")
            if name == ADAPTED:
                raise ValueError(
                    f"{where}: the adapted attack changes with the defense; tune the"
                    f" attacks it stands for instead"
                )
            cls = ATTACKS[name]
            if not issubclass(cls, GradientAttack):
                raise ValueError(f"{where}: attack {name!r} has no hyper-parameters to search")
            try:
                check_overrides(cls, dict(space))
            except AttackError as error:
                unknown = next(key for key in space if key not in cls.__dataclass_fields__)
                raise ValueError(f"{where}.{unknown}: {error}") from None
            for key, values in space.items():
                if key in BUDGET_FIELDS:
                    raise ValueError(
                        f"{where}.{key}: the budget sets {key}; use budget.{key} instead"
                    )
                for value in values:
                    try:
                        build_attack(name, **{**specs[name].overrides, key: value})
                    except (AttackError, TypeError, ValueError) as error:
                        message = str(error).splitlines()[0] if str(error) else "refused"
                        raise ValueError(
                            f"{where}.{key}: attack {name!r} refused the value {value!r} ({message})"
                        ) from None

    def _sweeps_fit(self, specs: dict[str, Any]) -> None:
        from attacks.base import GradientAttack
        from attacks.registry import ATTACKS

        assert self.tuning is not None
        for name, sweep in self.tuning.sweep.items():
            where = f"tuning.sweep.{name}"
            if name not in specs:
                raise ValueError(f"{where}: {name!r} is not among the attacks ({', '.join(specs)})")
            cls = ATTACKS.get(name)
            if cls is None or not issubclass(cls, GradientAttack):
                raise ValueError(f"{where}: attack {name!r} has no hyper-parameters to sweep")
            fields = cls.__dataclass_fields__
            for key in sweep.names:
                if key not in fields or str(fields[key].type) not in ("float", "float | None"):
                    raise ValueError(
                        f"{where}.names: {key!r} is not a weight of attack {name!r}"
                        " (a float hyper-parameter such as weight_start or weight_end)"
                    )
            for key in set(sweep.names) & set(self.tuning.space.get(name, {})):
                if any(isinstance(v, bool) or not isinstance(v, int | float)
                       for v in self.tuning.space[name][key]):  # fmt: skip
                    raise ValueError(
                        f"tuning.space.{name}.{key}: swept by {where}, so its values are"
                        " factors of the swept weight and must be numbers"
                    )

    def space_for(self, attack_name: str) -> dict[str, list[Any]]:
        """The search space of an attack (empty: run it as written)."""
        if self.tuning is None:
            return {}
        return dict(self.tuning.space.get(attack_name, {}))

    def sweep_for(self, attack_name: str) -> Any:
        """The attack's weight sweep (`attacks.tuning.Sweep`), or None."""
        if self.tuning is None or attack_name not in self.tuning.sweep:
            return None
        return self.tuning.sweep[attack_name].sweep()


# ---------------------------------------------------------------------- loading


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    if first["type"] == "value_error" and not first["loc"]:
        # A whole-scenario check: its message starts with the dotted field it is about.
        return str(first["msg"]).removeprefix("Value error, ")
    return format_validation_error(error)


def validate_attack_scenario(raw: Mapping[str, Any]) -> AttackScenario:
    """Validate a raw TOML tree; ConfigError names the first bad field in one line."""
    try:
        return AttackScenario.model_validate(dict(raw))
    except ValidationError as error:
        raise ConfigError(f"scenario: {_one_line(error)}") from None


def load_attack_scenario(path: str | Path, overrides: Iterable[str] = ()) -> AttackScenario:
    """Read, override (`key=value` strings, in order) and validate an attack scenario."""
    return validate_attack_scenario(read_with_overrides(path, overrides))


def scenario_toml(scenario: AttackScenario) -> str:
    """The scenario with every default filled in (unset options, such as iterations, left out)."""
    return tomli_w.dumps(scenario.model_dump(mode="json", exclude_none=True))
