"""Running an attack scenario: the run directory, machine facts, the tuned matrix, results.json."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from attacks.specs import AttackSpec, parse_attack_spec
from attacks.target import Budget
from fedsim.attack_matrix.cells import (
    MatrixSettings,
    cell_budget,
    defended_batches,
    mean_matched_psnr,
    run_cell,
    select_batches,
)
from fedsim.attack_matrix.config import AttackScenario, scenario_toml
from fedsim.attack_matrix.console import print_results
from fedsim.attack_matrix.results import ScenarioCell
from fedsim.attack_matrix.tables import markdown_tables
from fedsim.attack_matrix.trained_states import states_by_defense
from fedsim.errors import ConfigError

TUNING_NOISE_OFFSET = 500_000
"""The noise offset of tuning updates (`defended_batches`): scored batches draw from
positions (0, i), tuning batches from (500,000, i), so the two never share a noise draw,
and the tuning draws do not depend on how many images are scored."""


def _matrix_settings(scenario: AttackScenario, download: bool) -> MatrixSettings:
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
    needed |= {"train"} if scenario.model.training else set()
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
    """`--out` exactly (refused if it holds anything), else a new `<output>/<name>-<time>`."""
    from fedsim.private_files import output_dir, private_dir

    if out is not None:
        folder = Path(out)
        if (folder / "results.json").exists() or (folder / "scenario.toml").exists():
            raise ConfigError(f"--out: {folder} already holds a run; choose another directory")
        return output_dir(folder)
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


def _results_header(
    scenario: AttackScenario,
    splits: Mapping[str, Any],
    device: torch.device,
    started: dt.datetime,
) -> dict[str, Any]:
    """What results.json says before its cells: the data used (split sizes included, so a
    subset is identifiable), the model, the seed and the machine."""
    data, tuning = scenario.data, scenario.tuning
    sizes = {f"{s}_size": None if d is None else len(d) for s, d in splits.items()}
    return {
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


def run_attack_scenario(
    scenario: AttackScenario, out: str | Path | None = None, *, download: bool = False
) -> Path:
    """Run the matrix of `scenario`; returns the run directory. Progress goes to stderr."""
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

    header = _results_header(scenario, splits, device, started)
    cells: list[ScenarioCell] = []

    def write_results(complete: bool) -> None:
        record = {
            **header,
            "seconds": time.perf_counter() - clock,
            "complete": complete,
            "cells": [cell.to_json() for cell in cells],
        }
        write_atomic(run_dir / "results.json", json.dumps(record, indent=2).encode("utf-8"))

    states = states_by_defense(scenario, splits, device, say=_say)
    total = sum(len(kept) for kept in states.values()) * len(attacks)
    tuned_on = (
        f"; tuning on {_updates(tuning.images, data.batch_size)} of {tuning.split}"
        if tuning and (tuning.space or tuning.sweep)
        else ""
    )
    per_state = (
        ""
        if scenario.model.training is None
        else f" at {_count(len(scenario.model.training.steps), 'state')}"
    )
    _say(
        f"fedsim attack: {scenario.name}: {_count(len(scenario.defenses), 'defense')} ×"
        f" {_count(len(attacks), 'attack')}{per_state} on {_updates(data.images, data.batch_size)} of"
        f" {data.dataset}/{data.split}{tuned_on} → {run_dir}"
    )
    grid_rows: list[tuple[str, torch.Tensor]] = [("original", images.flatten(0, 1))]
    rows: list[str] = []
    for spec, state in [(spec, state) for spec, kept in states.items() for state in kept]:
        batches = defended_batches(settings, spec, info, images, labels, device, state=state)
        model = batches.targets[0].model
        tuning_batches = None
        for requested in attacks:
            attack = requested.resolve(batches.defense, model)
            budget = cell_budget(settings, attack)
            cell = ScenarioCell(
                requested.label, None, budget.iterations, budget.restarts, state=state
            )
            space, sweep = scenario.space_for(requested.name), scenario.sweep_for(requested.name)
            if (space or sweep) and held_out is not None:
                if tuning_batches is None:
                    tuning_batches = defended_batches(
                        settings, spec, info, *held_out, device, TUNING_NOISE_OFFSET, state
                    )
                attack = _tune(cell, attack, space, sweep, tuning_batches, budget, scenario)
            cell.result, recon = run_cell(settings, attack, batches)
            cells.append(cell)
            if cell.row not in rows:
                rows.append(cell.row)
            grid_rows.append((f"{attack.label} | {cell.row}", recon))
            write_results(complete=False)
            tuned_text = (
                ""
                if cell.tuned is None
                else f"tuned {_setting(cell.tuned)} ({len(cell.trials)} settings,"
                f" {cell.tuning_seconds:.1f} s), "
            )
            _say(
                f"[{len(cells)}/{total}] {requested.label} × {cell.row}: {tuned_text}"
                f"PSNR {cell.result.psnr_summary.text()} dB, SSIM {cell.result.ssim_mean:.3f}"
                f" ({cell.result.seconds:.1f} s); elapsed {_clock(time.perf_counter() - clock)}"
            )
            if cell.result.priors_source.startswith("untuned"):
                _say(f"  {requested.label}: {cell.result.priors_source}")
    write_results(complete=True)
    table = markdown_tables(scenario, rows, cells)
    write_atomic(run_dir / "table.md", table.encode("utf-8"))
    save_image_grid(run_dir / "grid.png", grid_rows, title=scenario.name, max_columns=10)
    make_private(run_dir / "grid.png")
    print_results([cell.result for cell in cells], rows=[cell.row for cell in cells])
    _say(f"done in {time.perf_counter() - clock:.1f} s; results in {run_dir}")
    return run_dir


def _tune(
    cell: ScenarioCell,
    attack: AttackSpec,
    space: Mapping[str, Any],
    sweep: Any,
    tuning: Any,
    budget: Budget,
    scenario: AttackScenario,
) -> AttackSpec:
    """The attack's sweep (if any), then its space, on the tuning updates; note every trial
    in `cell`; the best attack."""
    from attacks.tuning import tune

    assert scenario.tuning is not None
    started = time.perf_counter()
    found = tune(
        attack.build(scenario.seed),
        space,
        tuning.targets,
        truth=tuning.originals,
        score=mean_matched_psnr,
        sweep=sweep,
        budget=budget,
        samples=scenario.tuning.samples,
        seed=scenario.seed,
    )
    cell.tuning_seconds = time.perf_counter() - started
    cell.tuned = dict(found.best)
    cell.trials = [{"params": t.params, "psnr": t.value, "phase": t.phase} for t in found.trials]
    return AttackSpec(attack.name, {**attack.overrides, **found.best}, attack.text)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
