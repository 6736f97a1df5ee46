"""A run directory read back: its scenario, rounds and leakage records, and whether it finished."""

from __future__ import annotations

import statistics
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim.errors import ConfigError
from fedsim.records import LEAKAGE_FILE, RECONSTRUCTIONS_DIR, ROUNDS_FILE, SCENARIO_FILE, read_jsonl


@dataclass
class RunRecords:
    """Everything a report needs from one run directory."""

    path: Path
    name: str
    scenario: dict[str, Any]
    rounds: list[dict[str, Any]]
    leakage: list[dict[str, Any]]

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

    def series(self) -> dict[tuple[str, str], dict[int, list[float]]]:
        """(attack, defense) → round → PSNR of every successful reconstruction.

        Where records also score against the transformed batch (ATS), that is a series
        of its own, named `<attack> vs trained-on`.
        """
        table: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for record in self.leakage:
            if record.get("status") != "ok":
                continue
            defense = str(record.get("defense", "none"))
            for field, suffix in (("psnr", ""), ("psnr_trained_on", " vs trained-on")):
                if record.get(field) is not None:
                    key = (f"{record['attack']}{suffix}", defense)
                    table[key][int(record["round"])].append(float(record[field]))
        return table

    def summary_rows(self) -> list[tuple[str, str, int, float, float, int, str]]:
        """(attack, defense, round, mean PSNR, best PSNR, ok count, other statuses) per audited round."""
        statuses: dict[tuple[str, str, int], Counter[str]] = defaultdict(Counter)
        for record in self.leakage:
            key = (str(record["attack"]), str(record.get("defense", "none")), int(record["round"]))
            statuses[key][str(record.get("status"))] += 1
        rows = []
        series = self.series()
        for (attack, defense, rnd), counts in sorted(statuses.items()):
            values = series.get((attack, defense), {}).get(rnd, [])
            mean = statistics.fmean(values) if values else float("nan")
            best = max(values) if values else float("nan")
            other = ", ".join(
                f"{status} {n}" for status, n in sorted(counts.items()) if status != "ok"
            )
            rows.append((attack, defense, rnd, mean, best, counts["ok"], other))
        return rows

    def grids(self) -> list[Path]:
        return sorted((self.path / RECONSTRUCTIONS_DIR).glob("*.png"))


def load_run(path: str | Path) -> RunRecords:
    """Read a run directory written by `fedsim run` (a partial one too)."""
    run = Path(path)
    if not (run / ROUNDS_FILE).is_file() and not (run / LEAKAGE_FILE).is_file():
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
