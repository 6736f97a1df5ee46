"""What the auditor tells a person at the console, through Python logging.

One line per audited round: how many attacks ended in each status, what was recovered
as `fedsim.judgement` counts it (per series: images or rows recovered of those scored),
the best leakage (images: highest PSNR; feature rows: lowest MSE; without ground truth
only the objectives exist, so the line says where the reconstructions are) and the
seconds the round's audit took. A round in which
every attack failed or was rejected is a warning that names the reason (secure
aggregation's `impossible` rounds are by design and logged as information). `AuditLog.close`
returns the run's summary and logs it.

The logger is `fedsim.auditor`. In a Flower app that configured no logging, the first
auditor built for it (`LeakageAuditor.for_model`) gives that logger a console handler
of its own, as Flower does for `flwr`, so the lines show up beside Flower's.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fedsim.judgement import round_counts

logger = logging.getLogger("fedsim.auditor")

NOT_ATTACKED = ("failed", "rejected", "oom", "refused", "impossible", "out_of_reach")
"""Statuses of records that hold no reconstruction."""

BROKEN = ("failed", "rejected", "oom", "refused")
"""Statuses of records that should have held one (`impossible` is secure aggregation's)."""


def show_on_console() -> None:
    """Give `fedsim.auditor` a console handler unless logging already reaches one."""
    if logger.hasHandlers():
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def best_leakage(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The scored record that leaked most: highest PSNR (images), else lowest MSE (rows)."""
    images = [r for r in records if r.get("psnr") is not None]
    if images:
        return max(images, key=lambda r: r["psnr"])
    rows = [r for r in records if r.get("mse") is not None]
    return min(rows, key=lambda r: r["mse"]) if rows else None


def describe_leakage(record: dict[str, Any]) -> str:
    """'bayes on client 3: PSNR 21.4 dB' or '... MSE 0.012, categorical 0.93'; a proxy
    client's: 'bayes on proxy client 0 of batch 4: …'."""
    where = f"{record['attack']} on client {record['client']}"
    if record.get("proxy"):
        batch = record.get("batch_size")
        where = f"{record['attack']} on proxy client {record['client']} of batch {batch}"
    if record.get("psnr") is not None:
        return f"{where}: PSNR {record['psnr']:.1f} dB, SSIM {record['ssim']:.2f}"
    text = f"{where}: MSE {record['mse']:.3g}"
    if record.get("categorical_accuracy") is not None:
        text += f", categorical columns right {record['categorical_accuracy']:.2f}"
    return text


def count_statuses(records: Sequence[dict[str, Any]]) -> str:
    counts = Counter(r["status"] for r in records)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing"


@dataclass
class AuditSummary:
    """What a run's audit came to: rounds, statuses, the best leakage and the problems."""

    rounds: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    best: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    """Distinct reasons of records without a reconstruction, first seen first."""
    reconstructions: str | None = None
    """Where the reconstructions are stored, without ground truth."""
    round_seconds: dict[int, float] = field(default_factory=dict)
    """Audited round → seconds its audit took (attacks, proxy clients, pictures)."""

    @property
    def ok(self) -> int:
        return self.statuses.get("ok", 0)

    def lines(self) -> list[str]:
        """The summary as lines for the console."""
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "nothing"
        lines = [f"audit summary: {self.rounds} rounds audited; attacks: {counts}"]
        if self.best is not None:
            lines.append(f"most leakage: round {self.best['round']}, {describe_leakage(self.best)}")
        elif self.ok and self.reconstructions:
            lines.append(
                f"no ground truth: reconstructions and objectives are in {self.reconstructions}"
            )
        lines += [f"not attacked: {problem}" for problem in self.problems[:5]]
        if len(self.problems) > 5:
            lines.append(f"... and {len(self.problems) - 5} other reasons")
        return lines


class AuditLog:
    """Counts every record of a run and logs each audited round as it is recorded."""

    def __init__(self, reconstructions: str | None = None) -> None:
        self._summary = AuditSummary(reconstructions=reconstructions)
        self._lock = threading.Lock()

    def round(
        self, server_round: int, records: Sequence[dict[str, Any]], seconds: float | None = None
    ) -> None:
        """Log one audited round; warn when none of its records holds a reconstruction."""
        with self._lock:
            summary = self._summary
            summary.rounds += 1
            if seconds is not None:
                summary.round_seconds[server_round] = seconds
            summary.statuses.update(r["status"] for r in records)
            for record in records:
                problem = record.get("message") or record["status"]
                if record["status"] in NOT_ATTACKED and problem not in summary.problems:
                    summary.problems.append(problem)
            best = best_leakage(records)
            if best is not None and best_leakage([b for b in (summary.best, best) if b]) is best:
                summary.best = best
        line = f"audit round {server_round}: {count_statuses(records)}"
        recovered = round_counts(records)
        if recovered:
            line += "; recovered: " + ", ".join(
                f"{label} {hits} of {items}" for label, (hits, items) in recovered.items()
            )
        if best is not None:
            line += f"; most leakage: {describe_leakage(best)}"
        took = "" if seconds is None else f" ({seconds:.1f} s)"
        if records and all(r["status"] in BROKEN for r in records):
            reasons = sorted({r.get("message") or r["status"] for r in records})
            logger.warning("%s; nothing was attacked: %s%s", line, "; ".join(reasons[:3]), took)
        elif not records:
            logger.warning("%s; no reply to audit%s", line, took)
        else:
            logger.info("%s%s", line, took)

    def close(self) -> AuditSummary:
        """The summary, logged line by line."""
        with self._lock:
            summary = self._summary
        for line in summary.lines():
            (logger.warning if line.startswith("not attacked") else logger.info)(line)
        return summary
