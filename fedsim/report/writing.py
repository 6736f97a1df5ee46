"""Write a whole report of one or more runs into a folder: figures and the page."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fedsim.private_files import make_private, private_dir
from fedsim.report.curves import plot_epsilon, plot_leakage, plot_privacy_utility
from fedsim.report.page import write_page
from fedsim.report.runs import RunRecords

PAGE = "index.html"


def write_report(runs: Sequence[RunRecords], out: Path) -> list[Path]:
    """`out`/leakage.png and .svg, privacy-utility.png, epsilon.png (when a run records ε)
    and index.html; owner-only, since the page embeds reconstructions of private data."""
    private_dir(out)
    leakage = plot_leakage(runs, out / "leakage")
    utility = plot_privacy_utility(runs, out / "privacy-utility")
    epsilon = plot_epsilon(runs, out / "epsilon")
    figures = [("Leakage per round", leakage[0]), ("Leakage against accuracy", utility[0])]
    if epsilon:
        figures.append(("ε per round", epsilon[0]))
    page = write_page(runs, figures, out / PAGE)
    written = [*leakage, *utility, *epsilon, page]
    for path in written:
        make_private(path)
    return written
