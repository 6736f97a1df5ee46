"""What auditing costs a federation: round wall time with the audit (worker thread) and without.

Runs one scenario twice per repeat, alternating: as written (attacks in the worker
thread beside the federation) and with no round audited (`audit.rounds={ rounds = [] }`), and
prints JSON: per run the mean seconds per round (between consecutive round ends, the
first evaluation left out), the seconds spent after the last round waiting for the
attacks (`drain`), the total, and the attack seconds per audited round from the
records; then the overhead of auditing on the round time and on the total.

The audit "fits inside a round" when the worker's pace (median seconds between two
audited rounds: the attacks plus targets, scoring, grids and records) is below the
seconds of an unaudited round: then the worker keeps up and only the competition for
the CPU remains; otherwise the federation waits for the worker (at most two rounds
queue) and the rounds take the worker's pace. Both the attack seconds and the job's
pace are reported against the unaudited round, and `job_parts` says where a job's time
goes (the optimisation, label inference, scoring, the image strip, the records; first
call and median of the later ones). Where only every k-th round is
audited (`audit.rounds = { every = k }`, a log schedule), the worker has k rounds for
a job: `attacks_fit_between_audits` compares the attacks with that. `--set` applies
scenario overrides to both runs (`audit.budget.seconds` sizes the budget).

    python benchmarks/audit_overhead.py [--scenario scenarios/quickstart.toml]
        [--set KEY=VALUE ...] [--repeats 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


JOB_PARTS = {
    "job": ("fedsim.auditor.strategy", "LeakageAuditor", "_run"),
    "optimisation": ("attacks.base", None, "optimise"),
    "label_inference": ("attacks.labels", None, "infer_labels"),
    "scoring": ("fedsim.auditor.attack_runner", None, "score_reconstruction"),
    "image_strip": ("fedsim.auditor.round_output", "AuditOutput", "save_grids"),
    "records": ("fedsim.auditor.round_output", "AuditOutput", "mark_audited"),
}
"""The parts of an audit job that are timed: (module, class or None, function)."""


@contextlib.contextmanager
def _timed_parts() -> Iterator[dict[str, list[float]]]:
    """Time every call of the `JOB_PARTS` functions while the block runs (wrappers that
    add two clock reads a call), then restore them."""
    seconds: dict[str, list[float]] = {part: [] for part in JOB_PARTS}
    restore = []
    for part, (module_name, class_name, name) in JOB_PARTS.items():
        module = importlib.import_module(module_name)
        owner = getattr(module, class_name) if class_name else module
        original = getattr(owner, name)

        def timed(*args, _f=original, _out=seconds[part], **kwargs):
            start = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                _out.append(time.perf_counter() - start)

        setattr(owner, name, timed)
        restore.append((owner, name, original))
    try:
        yield seconds
    finally:
        for owner, name, original in restore:
            setattr(owner, name, original)


def _parts_ms(seconds: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per part: the first call's milliseconds (it pays one-time costs) and the median of
    the later calls'."""
    return {
        part: {
            "first_ms": round(values[0] * 1000, 1),
            "median_later_ms": round(statistics.median(values[1:] or values) * 1000, 1),
            "calls": len(values),
        }
        for part, values in seconds.items()
        if values
    }


def _run(scenario_path: Path, overrides: list[str], audited: bool) -> dict:
    from fedsim.flower.simulation import simulate
    from fedsim.records import LEAKAGE_FILE, RunRecorder, read_jsonl
    from fedsim.scenario import load_scenario

    extra = [] if audited else ["audit.rounds={ rounds = [] }"]
    scenario = load_scenario(scenario_path, [*overrides, *extra])
    ends: list[float] = []
    audited_at: list[float] = []
    audited_rounds: list[int] = []

    class Observer:
        def round_finished(self, record: dict) -> None:
            ends.append(time.perf_counter())

        def round_audited(self, server_round: int, records: list[dict]) -> None:
            audited_at.append(time.perf_counter())
            audited_rounds.append(server_round)

    with tempfile.TemporaryDirectory(prefix="fedsim-overhead-") as tmp, _timed_parts() as parts:
        recorder = RunRecorder(Path(tmp) / "run")
        started = time.perf_counter()
        simulate(scenario, recorder, Observer())
        total = time.perf_counter() - started
        path = Path(tmp) / "run" / LEAKAGE_FILE
        leakage = read_jsonl(path) if path.exists() else []
    rounds = [b - a for a, b in zip(ends[:-1], ends[1:], strict=True)]  # ends[0]: round 0
    per_round: dict[int, float] = {}
    for record in leakage:
        per_round[record["round"]] = per_round.get(record["round"], 0.0) + record["seconds"]
    return {
        "audited": audited,
        "rounds": len(rounds),
        "round_seconds_mean": statistics.fmean(rounds),
        "round_seconds_median": statistics.median(rounds),
        "drain_seconds": total - ends[-1] + started if ends else None,
        "total_seconds": total,
        "attack_seconds_per_audited_round": (
            statistics.fmean(per_round.values()) if per_round else 0.0
        ),
        # the worker's pace: attacks plus scoring, grids and records, round after round
        "audit_job_seconds_median": (
            statistics.median(b - a for a, b in zip(audited_at[:-1], audited_at[1:], strict=True))
            if len(audited_at) > 1
            else None
        ),
        # rounds the worker has for one job: the median spacing of the audited rounds
        "rounds_between_audits": (
            statistics.median(
                b - a for a, b in zip(audited_rounds[:-1], audited_rounds[1:], strict=True)
            )
            if len(audited_rounds) > 1
            else None
        ),
        "statuses": sorted({r["status"] for r in leakage}),
        # where a job's time goes (in-process workers; a Ray task's parts are not seen)
        "job_parts": _parts_ms(parts),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(REPO / "scenarios" / "quickstart.toml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeats):
        for audited in (True, False):
            runs.append(_run(Path(args.scenario), args.overrides, audited))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    best = {
        flag: min((r for r in runs if r["audited"] is flag), key=lambda r: r["total_seconds"])
        for flag in (True, False)
    }
    on, off = best[True], best[False]
    report = {
        "benchmark": "audit_overhead",
        "scenario": args.scenario,
        "overrides": args.overrides,
        "runs": runs,
        "round_overhead": on["round_seconds_median"] / off["round_seconds_median"] - 1,
        "total_overhead": on["total_seconds"] / off["total_seconds"] - 1,
        "attacks_fit_inside_a_round": on["attack_seconds_per_audited_round"]
        <= off["round_seconds_median"],
        "audit_job_fits_inside_a_round": (on["audit_job_seconds_median"] or 0.0)
        <= off["round_seconds_median"],
        # with audits every k rounds the worker has k unaudited rounds' time for one job
        "attacks_fit_between_audits": on["attack_seconds_per_audited_round"]
        <= (on["rounds_between_audits"] or 1) * off["round_seconds_median"],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
