"""A run directory read back: its scenario, rounds and leakage records, and whether it finished.

What the leakage records come to is `fedsim.judgement`'s to say (`RunRecords.facts`,
`RunRecords.verdicts`); this module only reads.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.errors import ConfigError
from fedsim.judgement import SeriesFacts, Verdict, leakage_facts, read_record, verdicts
from fedsim.records import LEAKAGE_FILE, RECONSTRUCTIONS_DIR, ROUNDS_FILE, SCENARIO_FILE, read_jsonl
from fedsim.report.privacy import TITLES


@dataclass
class RunRecords:
    """Everything a report needs from one run directory."""

    path: Path
    name: str
    scenario: dict[str, Any]
    rounds: list[dict[str, Any]]
    leakage: list[dict[str, Any]]
    parts: list[Path] = field(default_factory=list)
    """The runs a folder of audited states was merged from (see `load_states`)."""

    @property
    def planned_rounds(self) -> int | None:
        rounds = self.scenario.get("federation", {}).get("rounds")
        return int(rounds) if isinstance(rounds, int) else None

    @property
    def finished_rounds(self) -> int:
        return max((int(r["round"]) for r in self.rounds), default=0)

    @property
    def partial(self) -> bool:
        """True when the run stopped before its last planned round."""
        planned = self.planned_rounds
        return planned is not None and self.finished_rounds < planned

    def accuracy_by_round(self) -> tuple[list[int], list[float]]:
        points = [
            (int(r["round"]), r.get("accuracy"))
            for r in self.rounds
            if r.get("accuracy") is not None
        ]
        return [p[0] for p in points], [float(p[1]) for p in points]

    def accuracy_after(self) -> dict[int, float]:
        """Round → test accuracy of the global model after it (round 0: the start)."""
        return {
            int(r["round"]): float(r["accuracy"])
            for r in self.rounds
            if r.get("accuracy") is not None
        }

    def epsilon_by_round(self) -> dict[str, dict[int, float]]:
        """Each ε the rounds record → round → value, labelled with its threat model
        (`privacy` claims; one that does not hold in the run says so in its label).
        Records of an older fedsim carry a bare `epsilon`, labelled as such."""
        table: dict[str, dict[int, float]] = defaultdict(dict)
        for record in self.rounds:
            server_round = int(record["round"])
            for claim in record.get("privacy") or []:
                if isinstance(claim.get("epsilon"), int | float):
                    model = str(claim.get("threat_model"))
                    label = f"ε, {TITLES.get(model, model)}"
                    if claim.get("holds", False) is None:
                        label += " (unverified)"
                    elif not claim.get("holds", False):
                        label += " (does not hold here)"
                    table[label][server_round] = float(claim["epsilon"])
            if "privacy" not in record and isinstance(record.get("epsilon"), int | float):
                table["ε (no threat model recorded)"][server_round] = float(record["epsilon"])
        return dict(table)

    def facts(self) -> list[SeriesFacts]:
        """Its leakage per series and audited round (`fedsim.judgement`)."""
        return leakage_facts(self.leakage, self.accuracy_after())

    def verdicts(self) -> list[Verdict]:
        """The verdict on every series (`fedsim.judgement.verdicts`)."""
        return verdicts(self.leakage, self.accuracy_after())

    def audit_line(self) -> str:
        """What was audited, as `fedsim.judgement` reads it: '2 rounds audited: 6 client
        updates (none scored: no ground truth), 10 proxy clients (10 scored)'."""
        clients: dict[tuple[Any, ...], bool] = {}
        proxies: dict[tuple[Any, ...], bool] = {}
        for record in self.leakage:
            readings = read_record(record)
            if not readings:
                continue
            series = readings[0].series
            key = (readings[0].round, record.get("client"), record.get("node"), series.batch_size)
            table = proxies if series.proxy else clients
            table[key] = table.get(key, False) or any(r.kind == "scored" for r in readings)
        rounds = len({key[0] for key in [*clients, *proxies]})
        parts = []
        for table, noun in ((clients, "client update"), (proxies, "proxy client")):
            if table:
                scored = sum(table.values())
                why = "" if scored else ": no ground truth"
                parts.append(f"{_count(len(table), noun)} ({scored or 'none'} scored{why})")
        return f"{_count(rounds, 'round')} audited" + (": " + ", ".join(parts) if parts else "")

    def budget(self) -> dict[str, Any]:
        """The scenario's audit budget (iterations, restarts, seconds), as recorded."""
        return dict(self.scenario.get("audit", {}).get("budget", {}))

    def grids(self) -> list[Path]:
        """The reconstruction pictures: one strip per audited round (older runs: per
        client). Only regular PNG files inside the run directory (see `pictures`)."""
        return [path for path, problem in self.pictures() if problem is None]

    def pictures(self) -> list[tuple[Path, str | None]]:
        """Every file in `reconstructions/` with why it is not shown, or None.

        A run directory may come from someone else: a link could point at any file the
        reader may read, which the self-contained page would then embed. So a picture
        must be a regular file, not a link, inside its run directory, that starts with
        the PNG signature.
        """
        folders = self.parts or [self.path]
        found = [
            (folder, path)
            for folder in folders
            for path in (folder / RECONSTRUCTIONS_DIR).glob("*.png")
        ]
        checked = [(path, _picture_problem(folder, path)) for folder, path in found]
        return sorted(checked, key=lambda item: item[0].name)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _picture_problem(run: Path, path: Path) -> str | None:
    """Why `path` is not a picture the report may embed, or None."""
    if path.is_symlink():
        return "a link"
    if not path.resolve().is_relative_to(run.resolve()):
        return "outside the run directory"
    if not path.is_file():
        return "not a regular file"
    with open(path, "rb") as file:
        if file.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            return "not a PNG file"
    return None


def load_run(path: str | Path) -> RunRecords:
    """Read a run directory written by `fedsim run` (a partial one too), or a folder of
    runs that each audit one state of a training run (`load_states`)."""
    run = Path(path)
    if not (run / ROUNDS_FILE).is_file() and not (run / LEAKAGE_FILE).is_file():
        if _state_runs(run):
            return load_states(run)
        raise ConfigError(
            f"report: {run} is not a run directory (no {ROUNDS_FILE} or {LEAKAGE_FILE})"
        )
    scenario: dict[str, Any] = {}
    if (run / SCENARIO_FILE).is_file():
        try:
            scenario = tomllib.loads((run / SCENARIO_FILE).read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(
                f"report: {run / SCENARIO_FILE} is not valid TOML ({error})"
            ) from None
    rounds = read_jsonl(run / ROUNDS_FILE) if (run / ROUNDS_FILE).is_file() else []
    leakage = read_jsonl(run / LEAKAGE_FILE) if (run / LEAKAGE_FILE).is_file() else []
    name = str(scenario.get("name") or run.name)
    return RunRecords(run, name, scenario, rounds, leakage)


def _state_runs(folder: Path) -> list[Path]:
    return sorted(p.parent for p in folder.glob(f"*/{ROUNDS_FILE}"))


def load_states(folder: str | Path) -> RunRecords:
    """A folder of runs started from checkpoints of one training run (as
    `scripts/audit_checkpoints.py` writes them), read as one run over training.

    Each state run starts from the training run's model after round R (its first
    rounds.jsonl line, which evaluates that model) and audits round R + 1; its later
    lines are of its own round, not the training run's, and are left out. So the merged
    run holds the training trajectory at the audited states and every audit.
    """
    base = Path(folder)
    runs = [load_run(path) for path in _state_runs(base)]
    if not runs:
        raise ConfigError(f"report: {base} holds no runs")
    rounds: dict[int, dict[str, Any]] = {}
    for run in runs:
        if run.rounds:
            first = min(run.rounds, key=lambda r: int(r["round"]))
            rounds.setdefault(int(first["round"]), first)
    leakage = [record for run in runs for record in run.leakage]
    scenario = dict(runs[-1].scenario)
    scenario["federation"] = {**scenario.get("federation", {}), "rounds": None}
    merged = RunRecords(base, base.name, scenario, [rounds[r] for r in sorted(rounds)], leakage)
    merged.parts = [run.path for run in runs]
    return merged
