"""Reports of runs: a verdict per defense and attack, leakage curves, strips of
reconstructions per audited round, and a self-contained HTML page."""

from __future__ import annotations

from fedsim.report.curves import plot_epsilon, plot_leakage, plot_privacy_utility
from fedsim.report.page import write_page
from fedsim.report.runs import AuditedRound, RunRecords, load_run
from fedsim.report.verdict import Verdict, verdicts
from fedsim.report.writing import write_report

__all__ = [
    "AuditedRound",
    "RunRecords",
    "Verdict",
    "load_run",
    "plot_epsilon",
    "plot_leakage",
    "plot_privacy_utility",
    "verdicts",
    "write_page",
    "write_report",
]
