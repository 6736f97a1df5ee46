"""Write the golden records that `tests/test_golden_records.py` compares every change against.

A refactor must not change what a run records. These tiny runs — the quickstart in
process and on Ray, and the tabular scenario — are recorded once, on one torch thread
(float sums in one order whatever the machine), and the test reruns them and compares
every field but wall-clock time. Rewrite them only for a change that
is meant to change the records, and say which in the commit:

    python scripts/golden_records.py            # rewrites tests/golden/*.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"

TINY = ["federation.rounds=2", "audit.budget.iterations=8", "data.eval_samples=100"]
RUNS: dict[str, tuple[str, list[str]]] = {
    "quickstart-inprocess": ("scenarios/quickstart.toml", TINY),
    "quickstart-ray": ("scenarios/quickstart.toml", [*TINY, "simulation.engine='ray'"]),
    "tabular-inprocess": ("scenarios/tabular-adult.toml", TINY),
}
"""Name → (scenario, overrides) of each golden run."""

VOLATILE = frozenset({"seconds", "seconds_shared_by", "started", "ray_nodes"})
"""Fields that depend on the machine or the clock, not on the code."""


def record_run(name: str, out: Path) -> list[dict]:
    """Run `name` into `out` (a fresh directory) and return its records without volatile
    fields: rounds.jsonl's lines, then leakage.jsonl's, each tagged with its file."""
    import torch

    from fedsim.cli import main
    from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, read_jsonl

    scenario, overrides = RUNS[name]
    args = ["run", str(REPO / scenario), "--out", str(out)]
    for override in overrides:
        args += ["--set", override]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float sums in one order, whatever the machine's cores
    try:
        code = main(args)
    finally:
        torch.set_num_threads(threads)
    if code != 0:
        raise SystemExit(f"golden run {name} failed")
    lines = []
    for file in (ROUNDS_FILE, LEAKAGE_FILE):
        for record in read_jsonl(out / file):
            kept = {k: v for k, v in record.items() if k not in VOLATILE}
            lines.append({"file": file, **kept})
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"some of {', '.join(RUNS)}")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(RUNS):
        with tempfile.TemporaryDirectory() as folder:
            lines = record_run(name, Path(folder) / name)
        path = GOLDEN / f"{name}.jsonl"
        path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
        print(f"wrote {path.relative_to(REPO)} ({len(lines)} records)", file=sys.stderr)


if __name__ == "__main__":
    main()
