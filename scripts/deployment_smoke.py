"""Smoke test of Flower's deployment engine on loopback: SuperLink + two SuperNodes + `flwr run`.

Usage: python scripts/deployment_smoke.py [--rounds 3] [--supernodes 2] [--timeout 90] [--out DIR]

Runs the quickstart scenario (tiny attack budget) with the auditor, the ServerApp in
a process of its own, and prints JSON: the run directory, the seconds in all and per
round, and the numbers of round and leakage records. Exit status 1 (with the
processes' logs) if the run does not complete in time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from fedsim.flower.runtimes.deployment import DeploymentError, run_on_loopback
from fedsim.records import LEAKAGE_FILE, read_jsonl

PROJECT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--supernodes", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--iterations", type=int, default=5, help="attack iterations")
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args()
    out = Path(args.out or Path(tempfile.mkdtemp(prefix="fedsim-deploy-run-")) / "run")
    try:
        run = run_on_loopback(
            PROJECT,
            out,
            overrides=[
                f"federation.rounds={args.rounds}",
                f"audit.budget.iterations={args.iterations}",
                "data.eval_samples=100",
                "audit.clients={}",  # every supernode's update is audited
            ],
            supernodes=args.supernodes,
            timeout=args.timeout,
        )
    except DeploymentError as error:
        print(f"deployment smoke test failed: {error}", file=sys.stderr)
        return 1
    leakage = read_jsonl(run.run_dir / LEAKAGE_FILE)
    report = {
        "run_dir": str(run.run_dir),
        "seconds": round(run.seconds, 2),
        "round_seconds": [round(s, 2) for s in run.round_seconds],
        "leakage_records": len(leakage),
        "statuses": sorted({r["status"] for r in leakage}),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
