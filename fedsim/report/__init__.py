"""Reports of runs: leakage-vs-round curves, reconstruction grids and an HTML page."""

from __future__ import annotations

from fedsim.report.curves import plot_leakage
from fedsim.report.page import write_page
from fedsim.report.runs import RunRecords, load_run

__all__ = ["RunRecords", "load_run", "plot_leakage", "write_page"]
