"""Write a whole report of one or more runs into a folder: figures, the page and the
verdicts as data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fedsim.judgement import Verdict, write_verdicts
from fedsim.private_files import make_private, output_dir
from fedsim.report.curves import plot_epsilon, plot_leakage, plot_privacy_utility
from fedsim.report.page import LABELS, write_page
from fedsim.report.runs import RunRecords

PAGE = "index.html"
VERDICTS = "verdicts.json"
REPORT_FILES = frozenset(
    {PAGE, VERDICTS, "leakage.png", "leakage.svg", "privacy-utility.png", "epsilon.png"}
)
"""What a report writes: a folder holding only these may be written again."""


def verdict_line(verdict: Verdict) -> str:
    """The verdict as one console line: `bayes against gaussian [leaked]: …`."""
    return f"{verdict.heading} [{LABELS[verdict.leaked]}]: {verdict.text}"


def write_report(runs: Sequence[RunRecords], out: Path) -> list[Path]:
    """`out`/leakage.png and .svg, privacy-utility.png, epsilon.png (when a run records ε),
    verdicts.json and index.html (last); owner-only, since the page embeds
    reconstructions of private data."""
    output_dir(out, rewritable=REPORT_FILES)
    leakage = plot_leakage(runs, out / "leakage")
    utility = plot_privacy_utility(runs, out / "privacy-utility")
    epsilon = plot_epsilon(runs, out / "epsilon")
    figures = [("Leakage per round", leakage[0]), ("Leakage against accuracy", utility[0])]
    if epsilon:
        figures.append(("ε per round", epsilon[0]))
    several = len(runs) > 1
    entries = [v.as_json(run.name if several else None) for run in runs for v in run.verdicts()]
    verdicts = write_verdicts(entries, out / VERDICTS)
    page = write_page(runs, figures, out / PAGE)
    written = [*leakage, *utility, *epsilon, verdicts, page]
    for path in written:
        make_private(path)
    return written
