"""Live progress of a run: bars for rounds and attacks, one line per finished round.

A round's line is printed once its evaluation and (if audited) its attacks are done,
in round order: `round 3  acc 71.2%  loss 0.931  bayes 18.3 dB 3/4 recovered  l2
12.1 dB 0/4 recovered`: per attack the best PSNR over the round's audited clients and
how many of their images were recovered (on feature rows the lowest MSE and the rows
recovered, `bayes MSE 0.021 2/4 recovered`), under the defense named in the header line
(one defense per run). The counts are `fedsim.judgement`'s, as the report's are: a
timed-out attack's best candidate counts, and the line says `(3 timeout)` beside it.
"""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fedsim.auditor.console import best_leakage
from fedsim.judgement import round_counts
from fedsim.scenario.config import Scenario


def expected_attack_runs(scenario: Scenario) -> int:
    """Attack runs (round × client × attack) the schedule will produce, if no client fails."""
    rounds = len(scenario.audit.rounds.through(scenario.federation.rounds, scenario.first_round))
    clients = scenario.federation.per_round()
    if scenario.federation.secure_aggregation:
        clients = 1  # one 'impossible' record per round and attack
    elif scenario.audit.clients.sample is not None:
        clients = min(clients, scenario.audit.clients.sample)
    return rounds * clients * len(scenario.attacks)


def round_line(record: dict[str, Any], leakage: list[dict[str, Any]]) -> str:
    """The live line of one round."""
    parts = [
        f"round {record['round']:>3}",
        f"acc {100 * record['accuracy']:5.1f}%",
        f"loss {record['loss']:.3f}",
    ]
    counts = round_counts(leakage)
    for attack in dict.fromkeys(item["attack"] for item in leakage):
        records = [item for item in leakage if item["attack"] == attack]
        best = best_leakage(records)
        if best is None:
            parts.append(f"{attack} {_unscored(records)}")
            continue
        score = (
            f"{best['psnr']:.1f} dB" if best.get("psnr") is not None else f"MSE {best['mse']:.3g}"
        )
        hits, items = counts.get(attack, (0, 0))
        recovered = f" {hits}/{items} recovered" if items else ""
        timeouts = sum(item.get("status") == "timeout" for item in records)
        parts.append(
            f"{attack} {score}{recovered}" + (f" ({timeouts} timeout)" if timeouts else "")
        )
    return "  ".join(parts)


def _unscored(records: list[dict[str, Any]]) -> str:
    """What became of an attack with no scored record in the round: `failed`, `2 ok, no
    ground truth`, `impossible`."""
    statuses = sorted({str(item.get("status")) for item in records})
    if set(statuses) <= {"ok", "timeout"}:
        return f"{len(records)} attacked, no ground truth"
    return "/".join(statuses)


class RunProgress:
    """A `RunObserver` that drives rich progress bars and prints the per-round lines."""

    def __init__(
        self, scenario: Scenario, console: Console | None = None, resume_after: int = -1
    ) -> None:
        """`resume_after` = R ≥ 0: rounds up to R were recorded before (`--resume`)."""
        self.scenario = scenario
        self._first = max(resume_after + 1, scenario.first_round - 1)
        """The first round whose line this run prints (its evaluation of the start state, or
        the first round after a resume point)."""
        self.progress = Progress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._rounds = self.progress.add_task(
            "rounds",
            total=scenario.federation.rounds - scenario.first_round + 1,
            completed=max(0, resume_after - scenario.first_round + 1),
        )
        attacks = expected_attack_runs(scenario)
        self._attacks = self.progress.add_task("attacks", total=attacks, visible=attacks > 0)
        self._lock = threading.Lock()
        self._finished: dict[int, dict[str, Any]] = {}
        self._audited: dict[int, list[dict[str, Any]]] = {}
        self._next = self._first

    def __enter__(self) -> RunProgress:
        self.progress.start()
        header = (
            f"defense {self.scenario.defense_label}; best PSNR (images) or lowest MSE "
            "(feature rows) per attack over audited clients"
        )
        self.progress.console.print(header, highlight=False, markup=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def round_finished(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._finished[record["round"]] = record
            if record["round"] >= self.scenario.first_round:
                self.progress.advance(self._rounds)
            self._flush()

    def round_audited(self, server_round: int, records: list[dict[str, Any]]) -> None:
        with self._lock:
            self._audited[server_round] = records
            self.progress.advance(self._attacks, len(records))
            self._flush()

    def _flush(self) -> None:
        while self._next in self._finished:
            record = self._finished[self._next]
            if record.get("audited") and self._next not in self._audited:
                return
            line = round_line(record, self._audited.pop(self._next, []))
            self.progress.console.print(line, highlight=False, markup=False)
            del self._finished[self._next]
            self._next += 1
