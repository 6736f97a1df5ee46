"""Attack × defense matrices from a scenario file, each cell tuned on held-out images.

`fedsim attack SCENARIO` reads a TOML file (`scenarios/paper/matrix-*.toml`), applies
`--set key=value` overrides and validates it into `AttackScenario`; field names are
the TOML keys, so an error's dotted location (`tuning.space.bayes.priors`) is where
to look. For each defense the scored images become client updates exactly as in the
flag mode (`fedsim.attack_matrix`). An attack with a search space in `[tuning.space]`
is first tuned on updates made from the tuning images (same model, same defense,
other noise draws): every setting of the space is tried with the scenario's budget,
scored by the mean matched PSNR against the tuning images, and the best setting is
then run on the scored updates. Attacks without a space run as written.

The run directory (`<output>/<name>-<YYYYmmdd-HHMMSS>`, or exactly `--out`) receives

    scenario.toml   the scenario with every default filled in (runs again as it is)
    results.json    data, machine, start, wall seconds, and per cell: scores per image,
                    the tuned setting and every tried setting with its tuning PSNR
    table.md        mean PSNR and mean SSIM, defenses × attacks, best per row in bold
    grid.png        the scored originals over every cell's reconstructions

results.json is rewritten after every cell (`"complete": false` until the last one).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from fedsim.errors import ConfigError
from fedsim.scenario import names
from fedsim.scenario.loading import (
    apply_override,
    format_validation_error,
    parse_override,
    read_scenario_file,
)

TUNING_NOISE_OFFSET = 500_000
"""Added to the batch index in the noise seed of tuning updates (`defended_batches`):
scored batches use 0, 1, ..., tuning batches 500,000, 500,001, ..., so the two never
share a noise draw, and the tuning draws do not depend on how many images are scored."""

BUDGET_FIELDS = ("iterations", "restarts")
"""Hyper-parameters the budget decides; a search space may not contain them."""

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
DatasetName = Annotated[str, AfterValidator(names.known_dataset)]
ModelName = Annotated[str, AfterValidator(names.known_model)]
DefenseSpec = Annotated[str, AfterValidator(names.valid_defense)]
Slug = Annotated[str, AfterValidator(names.slug)]
DirPath = Annotated[str, AfterValidator(names.directory)]
Split = Literal["train", "test"]


def _attack_spec(text: str) -> str:
    """An attack spec as for `--attack` (name[:k=v,...]); its own checks name the problem."""
    from attacks.errors import AttackError
    from fedsim.attack_specs import parse_attack_spec

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


class ModelSection(_Strict):
    name: ModelName = "cnn"


class BudgetSection(_Strict):
    """Iterations per reconstruction (unset: each attack's default) and random restarts."""

    iterations: PositiveInt | None = None
    restarts: PositiveInt = 1


class TuningSection(_Strict):
    """Held-out images (batches of `data.batch_size`) and, per attack, the settings to try.

    `space` maps an attack name (the part of an `attacks` entry before ':') to its
    hyper-parameters and their candidate values; every combination is tried.
    """

    split: Split = "train"
    first: NonNegativeInt = 0
    images: PositiveInt = 8
    space: dict[str, dict[str, Candidates]] = Field(default_factory=dict)

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
        from fedsim.attack_specs import ADAPTED, parse_attack_spec

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

    def space_for(self, attack_name: str) -> dict[str, list[Any]]:
        """The search space of an attack (empty: run it as written)."""
        if self.tuning is None:
            return {}
        return dict(self.tuning.space.get(attack_name, {}))


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
    raw = read_scenario_file(path)
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(raw, keys, value)
    return validate_attack_scenario(raw)


def scenario_toml(scenario: AttackScenario) -> str:
    """The scenario with every default filled in (unset options, such as iterations, left out)."""
    return tomli_w.dumps(scenario.model_dump(mode="json", exclude_none=True))


# ---------------------------------------------------------------------- running


@dataclass
class ScenarioCell:
    """One attack × defense of a scenario run, with what tuning chose."""

    column: str
    """The attack as written in the scenario (the table's column)."""
    result: Any  # fedsim.attack_matrix.CellResult
    iterations: int
    restarts: int
    tuned: dict[str, Any] | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    tuning_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **self.result.to_json(),
            "requested": self.column,
            "budget": {"iterations": self.iterations, "restarts": self.restarts},
            "tuned": self.tuned,
            "trials": self.trials,
            "tuning_seconds": self.tuning_seconds,
        }


def _matrix_settings(scenario: AttackScenario, download: bool) -> Any:
    from fedsim.attack_matrix import MatrixSettings

    data = scenario.data
    return MatrixSettings(
        dataset=data.dataset,
        split=data.split,
        data_root=data.root,
        download=download,
        model=scenario.model.name,
        attacks=tuple(scenario.attacks),
        defenses=tuple(scenario.defenses),
        images=data.images,
        batch_size=data.batch_size,
        first=data.first,
        iterations=scenario.budget.iterations,
        restarts=scenario.budget.restarts,
        labels_known=data.labels == "known",
        seed=scenario.seed,
        device=scenario.device,
    )


def _load_splits(scenario: AttackScenario, download: bool) -> dict[str, Any]:
    """The splits the run needs; the other one too when it is at hand (for its size only)."""
    from fedsim.data import load_dataset
    from fedsim.errors import FedsimError

    data = scenario.data
    needed = {data.split} | ({scenario.tuning.split} if scenario.tuning else set())
    loaded: dict[str, Any] = {}
    for split in ("train", "test"):
        if split in needed:
            loaded[split] = load_dataset(data.dataset, split, data.root, download=download)
        else:
            try:
                loaded[split] = load_dataset(data.dataset, split, data.root)
            except FedsimError:
                loaded[split] = None
    return loaded


def run_directory(scenario: AttackScenario, out: str | Path | None, started: dt.datetime) -> Path:
    """`--out` exactly (refused if it holds a run), else a new `<output>/<name>-<time>`."""
    from fedsim.private_files import private_dir

    if out is not None:
        folder = Path(out)
        if (folder / "results.json").exists() or (folder / "scenario.toml").exists():
            raise ConfigError(f"--out: {folder} already holds a run; choose another directory")
    else:
        stem = Path(scenario.output) / f"{scenario.name}-{started.strftime('%Y%m%d-%H%M%S')}"
        folder, suffix = stem, 1
        while folder.exists():
            folder, suffix = stem.with_name(f"{stem.name}-{suffix}"), suffix + 1
    try:
        return private_dir(folder)
    except OSError as error:
        raise ConfigError(f"--out: cannot create {folder} ({error.strerror})") from None


def _machine(device: torch.device) -> dict[str, Any]:
    machine = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    return machine


def _span(indices: range) -> str:
    """'images 3–7' or 'image 3'."""
    if len(indices) == 1:
        return f"image {indices.start}"
    return f"images {indices.start}–{indices.stop - 1}"


def _updates(count: int, batch_size: int) -> str:
    """'2 images' or '2 batches of 4'."""
    return (
        _count(count, "image") if batch_size == 1 else f"{_count(count, 'batch')} of {batch_size}"
    )


def _count(count: int, noun: str) -> str:
    plural = "es" if noun.endswith("ch") else "s"
    return f"{count} {noun}{plural if count != 1 else ''}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _setting(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in params.items())


def markdown_tables(
    scenario: AttackScenario, defenses: Sequence[str], cells: Sequence[ScenarioCell]
) -> str:
    """Mean PSNR and mean SSIM, one row per defense and one column per attack."""
    from fedsim.metrics.psnr import PSNR_CAP_DB

    columns = list(scenario.attacks)
    by_cell = {(c.result.defense, c.column): c.result for c in cells}

    def table(metric: str, digits: int) -> list[str]:
        lines = [
            "| defense | " + " | ".join(columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        for defense in defenses:
            values = {
                column: getattr(by_cell[(defense, column)], metric)
                for column in columns
                if (defense, column) in by_cell
            }
            texts = {column: f"{value:.{digits}f}" for column, value in values.items()}
            best = texts[max(values, key=values.__getitem__)] if values else None
            row = [f"**{texts[c]}**" if texts.get(c) == best else texts.get(c, "") for c in columns]
            lines.append(f"| {defense} | " + " | ".join(row) + " |")
        return lines

    data = scenario.data
    about = (
        f"{data.dataset}, {data.split} {_span(data.index_range())}"
        f" ({data.images} per cell, batches of {data.batch_size}), model {scenario.model.name},"
        f" labels {data.labels}, iterations "
        + (
            str(scenario.budget.iterations)
            if scenario.budget.iterations
            else "each attack's default"
        )
        + f", restarts {scenario.budget.restarts}, seed {scenario.seed}"
    )
    tuning = scenario.tuning
    if tuning is not None and tuning.space:
        tuned = "; ".join(f"{name}: {', '.join(space)}" for name, space in tuning.space.items())
        about += f"; tuned on {tuning.split} {_span(tuning.index_range(data.batch_size))} ({tuned})"
    return "\n".join(
        [
            f"# {scenario.name}",
            "",
            f"Mean PSNR (dB, each image capped at {PSNR_CAP_DB:g}) after optimal matching;"
            " best attack per defense in bold.",
            "",
            *table("psnr_mean", 2),
            "",
            "Mean SSIM; best attack per defense in bold.",
            "",
            *table("ssim_mean", 3),
            "",
            about + ".",
            "",
        ]
    )


def run_attack_scenario(
    scenario: AttackScenario, out: str | Path | None = None, *, download: bool = False
) -> Path:
    """Run the matrix of `scenario`; returns the run directory. Progress goes to stderr."""
    from attacks.tuning import search
    from fedsim.attack_matrix import (
        cell_budget,
        defended_batches,
        mean_matched_psnr,
        run_cell,
        select_batches,
    )
    from fedsim.attack_report import print_results
    from fedsim.attack_specs import AttackSpec, parse_attack_spec
    from fedsim.device import resolve_device
    from fedsim.image_grid import save_image_grid
    from fedsim.private_files import make_private, write_atomic

    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    settings = _matrix_settings(scenario, download)
    device = resolve_device(scenario.device)
    attacks = [parse_attack_spec(text) for text in scenario.attacks]
    data, tuning = scenario.data, scenario.tuning
    splits = _load_splits(scenario, download)
    scored = splits[data.split]
    info = scored.info
    images, labels = select_batches(scored, data.first, data.images, data.batch_size, "data.images")
    held_out = None
    if tuning is not None:
        held_out = select_batches(
            splits[tuning.split], tuning.first, tuning.images, data.batch_size, "tuning.images"
        )
    run_dir = run_directory(scenario, out, started.astimezone())
    write_atomic(run_dir / "scenario.toml", scenario_toml(scenario).encode("utf-8"))

    sizes = {f"{s}_size": None if d is None else len(d) for s, d in splits.items()}
    header: dict[str, Any] = {
        "scenario": scenario.name,
        "data": {
            "dataset": data.dataset,
            "split": data.split,
            "first": data.first,
            "images": data.images,
            "batch_size": data.batch_size,
            "labels": data.labels,
            "indices": list(data.index_range()),
            **sizes,
            "tuning": None
            if tuning is None
            else {
                "split": tuning.split,
                "first": tuning.first,
                "images": tuning.images,
                "indices": list(tuning.index_range(data.batch_size)),
            },
        },
        "model": scenario.model.name,
        "seed": scenario.seed,
        "machine": _machine(device),
        "started": started.isoformat(timespec="seconds"),
    }
    cells: list[ScenarioCell] = []

    def write_results(complete: bool) -> None:
        record = {
            **header,
            "seconds": time.perf_counter() - clock,
            "complete": complete,
            "cells": [cell.to_json() for cell in cells],
        }
        write_atomic(run_dir / "results.json", json.dumps(record, indent=2).encode("utf-8"))

    total = len(scenario.defenses) * len(attacks)
    tuned_on = (
        f"; tuning on {_updates(tuning.images, data.batch_size)} of {tuning.split}"
        if tuning and tuning.space
        else ""
    )
    _say(
        f"fedsim attack: {scenario.name}: {_count(len(scenario.defenses), 'defense')} ×"
        f" {_count(len(attacks), 'attack')} on {_updates(data.images, data.batch_size)} of"
        f" {data.dataset}/{data.split}{tuned_on} → {run_dir}"
    )
    grid_rows: list[tuple[str, torch.Tensor]] = [("original", images.flatten(0, 1))]
    defense_labels: list[str] = []
    for spec in scenario.defenses:
        batches = defended_batches(settings, spec, info, images, labels, device)
        defense_labels.append(batches.defense.spec)
        model = batches.targets[0].model
        tuning_batches = None
        for requested in attacks:
            attack = requested.resolve(batches.defense, model)
            budget = cell_budget(settings, attack)
            cell = ScenarioCell(requested.label, None, budget.iterations, budget.restarts)
            space = scenario.space_for(requested.name)
            if space and held_out is not None:
                if tuning_batches is None:
                    tuning_batches = defended_batches(
                        settings, spec, info, *held_out, device, noise_offset=TUNING_NOISE_OFFSET
                    )
                tuning_started = time.perf_counter()
                found = search(
                    attack.build(settings.seed),
                    space,
                    tuning_batches.targets,
                    truth=tuning_batches.originals,
                    score=mean_matched_psnr,
                    budget=budget,
                )
                cell.tuning_seconds = time.perf_counter() - tuning_started
                cell.tuned = dict(found.best)
                cell.trials = [{"params": t.params, "psnr": t.value} for t in found.trials]
                attack = AttackSpec(attack.name, {**attack.overrides, **found.best}, attack.text)
            cell.result, recon = run_cell(settings, attack, batches)
            cells.append(cell)
            grid_rows.append((f"{attack.label} | {batches.defense.spec}", recon))
            write_results(complete=False)
            tuned_text = (
                ""
                if cell.tuned is None
                else f"tuned {_setting(cell.tuned)} ({len(cell.trials)} settings,"
                f" {cell.tuning_seconds:.1f} s), "
            )
            _say(
                f"[{len(cells)}/{total}] {requested.label} × {batches.defense.spec}: {tuned_text}"
                f"PSNR {cell.result.psnr_mean:.2f} dB, SSIM {cell.result.ssim_mean:.3f}"
                f" ({cell.result.seconds:.1f} s); elapsed {_clock(time.perf_counter() - clock)}"
            )
    write_results(complete=True)
    table = markdown_tables(scenario, defense_labels, cells)
    write_atomic(run_dir / "table.md", table.encode("utf-8"))
    save_image_grid(run_dir / "grid.png", grid_rows, title=scenario.name, max_columns=10)
    make_private(run_dir / "grid.png")
    print_results([cell.result for cell in cells])
    _say(f"done in {time.perf_counter() - clock:.1f} s; results in {run_dir}")
    return run_dir


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
