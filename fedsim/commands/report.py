"""Turn the records of one or more runs into a report: a verdict per defense and attack,
leakage curves, strips of reconstructions, a self-contained HTML page and
`verdicts.json`.

Several runs overlay in one figure for comparison (runs of several defenses: the
privacy–utility picture over training). A run that stopped early is reported as partial.
`--fail-on-leak` exits with status 1 when any verdict says leaked, so a CI job can fail
on leakage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from fedsim.report import load_run, verdict_line, write_report
from fedsim.report.privacy import privacy_lines

NAME = "report"
HELP = "verdict, leakage curves, reconstructions and a page from run directories"
READS_DATA = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN", help="run directories written by `fedsim run`"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to write the report (default: FIRST_RUN/report); must not hold other files",
    )
    parser.add_argument(
        "--fail-on-leak",
        action="store_true",
        help="exit with status 1 when any verdict says an attack recovered private data",
    )


def main(args: argparse.Namespace) -> int:
    runs = [load_run(path) for path in args.runs]
    out: Path = args.out or runs[0].path / "report"
    written = write_report(runs, out)
    leaked = False
    console = Console()
    for run in runs:
        state = (
            f"partial: {run.finished_rounds} of {run.planned_rounds} rounds"
            if run.partial
            else "complete"
        )
        trained = f"{len(run.rounds)} rounds recorded" if run.rounds else "no training recorded"
        console.print(
            f"{run.name}: {trained}, {run.audit_line()}; {len(run.leakage)} leakage records"
            f" ({state})",
            highlight=False,
        )
        for verdict in run.verdicts():
            leaked = leaked or verdict.leaked is True
            console.print(f"  {verdict_line(verdict)}", highlight=False, markup=False)
        for line in privacy_lines(run.rounds):
            console.print(f"  {line}", markup=False, soft_wrap=True)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    if args.fail_on_leak and leaked:
        console.print("--fail-on-leak: an attack recovered private data", highlight=False)
        return 1
    return 0
