"""Reports of runs: a verdict per defense and attack, leakage curves, strips of
reconstructions per audited round, a self-contained HTML page and `verdicts.json`.

What the records come to is `fedsim.judgement`'s to say; this package draws and writes it.
"""

from __future__ import annotations

from fedsim.judgement import Verdict
from fedsim.report.curves import plot_epsilon, plot_leakage, plot_privacy_utility
from fedsim.report.page import write_page
from fedsim.report.runs import RunRecords, load_run
from fedsim.report.writing import VERDICTS, verdict_line, write_report

__all__ = [
    "VERDICTS",
    "RunRecords",
    "Verdict",
    "load_run",
    "plot_epsilon",
    "plot_leakage",
    "plot_privacy_utility",
    "verdict_line",
    "write_page",
    "write_report",
]
