"""A run directory read back: its scenario, rounds and leakage records, and whether it finished.

`audited_rounds` condenses the leakage records per (attack, defense) and round into
what a reader acts on: how many updates and images were scored, how many images were
recovered recognisably (`fedsim.metrics.recognisable`), the mean PSNR and SSIM, and the
test accuracy of the global model that was attacked (the one after the round before).
"""

from __future__ import annotations

import statistics
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.errors import ConfigError
from fedsim.metrics.recognisable import is_recognisable
from fedsim.records import LEAKAGE_FILE, RECONSTRUCTIONS_DIR, ROUNDS_FILE, SCENARIO_FILE, read_jsonl
from fedsim.report.privacy import TITLES

TRAINED_ON = " vs trained-on"
"""Suffix of the series scored against the batch after a batch-stage defense (ATS)."""


@dataclass
class AuditedRound:
    """One (attack, defense) in one audited round, over its audited clients."""

    round: int
    accuracy: float | None
    """Test accuracy of the model the clients started from (after the round before)."""
    updates: int
    """Updates scored against ground truth (status ok)."""
    leaking_updates: int
    """Of those, updates with at least one image recovered recognisably."""
    images: int
    recognisable: int
    psnr: list[float]
    ssim: list[float]
    """Per scored image (PSNR capped at 100 dB); per update where records lack images."""
    statuses: Counter[str]

    @property
    def share(self) -> float | None:
        """The fraction of scored images recovered recognisably."""
        return self.recognisable / self.images if self.images else None


def _image_scores(record: dict[str, Any], suffix: str) -> tuple[list[float], list[float]]:
    """(PSNR, SSIM) per image of a scored record; one mean pair where it has no list."""
    if not suffix and record.get("ssim_images") is not None:
        return list(record.get("psnr_images") or []), list(record["ssim_images"])
    psnr, ssim = record.get(f"psnr{suffix}"), record.get(f"ssim{suffix}")
    return ([] if psnr is None else [float(psnr)]), ([] if ssim is None else [float(ssim)])


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
            for name, suffix in (("psnr", ""), ("psnr_trained_on", " vs trained-on")):
                if record.get(name) is not None:
                    key = (f"{record['attack']}{suffix}", defense)
                    table[key][int(record["round"])].append(float(record[name]))
        return table

    def summary_rows(self) -> list[tuple[str, str, int, float, float, int, str]]:
        """Per audited round: (attack, defense, round, mean PSNR, best PSNR, ok count,
        other statuses)."""
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
                    if not claim.get("holds", False):
                        label += " (does not hold here)"
                    table[label][server_round] = float(claim["epsilon"])
            if "privacy" not in record and isinstance(record.get("epsilon"), int | float):
                table["ε (no threat model recorded)"][server_round] = float(record["epsilon"])
        return dict(table)

    def audited_rounds(self) -> dict[tuple[str, str], list[AuditedRound]]:
        """(attack, defense) → its audited rounds in order (see `AuditedRound`).

        A defense that transforms the batch (ATS) adds the series `<attack> vs trained-on`,
        scored against the images the client's gradient was computed on.
        """
        accuracy = self.accuracy_after()
        grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
        for record in self.leakage:
            if not isinstance(record.get("round"), int):
                continue
            key = (str(record.get("attack")), str(record.get("defense", "none")), record["round"])
            grouped[key].append(record)
        table: dict[tuple[str, str], list[AuditedRound]] = defaultdict(list)
        for (attack, defense, rnd), records in sorted(grouped.items()):
            for suffix in ("", "_trained_on"):
                if suffix and not any(r.get(f"psnr{suffix}") is not None for r in records):
                    continue
                name = attack + (TRAINED_ON if suffix else "")
                table[(name, defense)].append(self._audited(rnd, records, suffix, accuracy))
        return dict(table)

    def _audited(
        self, rnd: int, records: list[dict[str, Any]], suffix: str, accuracy: dict[int, float]
    ) -> AuditedRound:
        updates = leaking = images = recognised = 0
        psnrs: list[float] = []
        ssims: list[float] = []
        for record in records:
            if record.get("status") != "ok":
                continue
            psnr, ssim = _image_scores(record, suffix)
            if not ssim and not psnr:
                continue
            updates += 1
            psnrs += psnr
            ssims += ssim
            hits = sum(is_recognisable(v) for v in ssim)
            images += len(ssim)
            recognised += hits
            leaking += hits > 0
        return AuditedRound(
            round=rnd,
            accuracy=accuracy.get(rnd - 1),
            updates=updates,
            leaking_updates=leaking,
            images=images,
            recognisable=recognised,
            psnr=psnrs,
            ssim=ssims,
            statuses=Counter(str(r.get("status")) for r in records),
        )

    def budget(self) -> dict[str, Any]:
        """The scenario's audit budget (iterations, restarts, seconds), as recorded."""
        return dict(self.scenario.get("audit", {}).get("budget", {}))

    def grids(self) -> list[Path]:
        """The reconstruction pictures: one strip per audited round (older runs: per client)."""
        folders = self.parts or [self.path]
        return sorted(
            (path for folder in folders for path in (folder / RECONSTRUCTIONS_DIR).glob("*.png")),
            key=lambda path: path.name,
        )


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
