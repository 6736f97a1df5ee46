"""A self-contained HTML page of one or more runs: curves, per-round table, reconstruction grids.

Images are embedded as data URIs so the page can be mailed or archived alone; every
string taken from records is HTML-escaped.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

from fedsim.report.privacy import privacy_lines
from fedsim.report.runs import RunRecords

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
.partial { background: #fff3cd; padding: 0.5em 1em; border-left: 4px solid #e0a800; }
img { max-width: 100%; }
figure { margin: 1em 0; }
"""


def _data_uri(path: Path) -> str:
    kind = "image/svg+xml" if path.suffix == ".svg" else "image/png"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _number(value: float, digits: int = 2) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def _run_section(run: RunRecords) -> str:
    parts = [
        f"<h2>{escape(run.name)}</h2>",
        f"<p>run directory: <code>{escape(str(run.path))}</code></p>",
    ]
    if run.partial:
        parts.append(
            f'<p class="partial">Partial run: {run.finished_rounds} of {run.planned_rounds} rounds finished.</p>'
        )
    rows = "".join(
        f"<tr><td>{escape(a)}</td><td>{escape(d)}</td><td>{r}</td><td>{_number(mean)}</td>"
        f"<td>{_number(best)}</td><td>{ok}</td><td>{escape(other) or '–'}</td></tr>"
        for a, d, r, mean, best, ok, other in run.summary_rows()
    )
    parts.append(
        "<table><tr><th>attack</th><th>defense</th><th>round</th><th>mean PSNR (dB)</th>"
        f"<th>best PSNR (dB)</th><th>ok</th><th>other statuses</th></tr>{rows}</table>"
    )
    parts.extend(f"<p>{escape(line)}</p>" for line in privacy_lines(run.rounds))
    accuracy = "".join(
        f"<tr><td>{r.get('round')}</td><td>{_number(r.get('accuracy'), 4)}</td><td>{_number(r.get('loss'), 4)}</td></tr>"
        for r in run.rounds
    )
    parts.append(
        f"<table><tr><th>round</th><th>accuracy</th><th>test loss</th></tr>{accuracy}</table>"
    )
    for grid in run.grids():
        parts.append(
            f'<figure><img alt="{escape(grid.stem)}" src="{_data_uri(grid)}">'
            f"<figcaption>{escape(grid.stem)}</figcaption></figure>"
        )
    return "\n".join(parts)


def write_page(runs: Sequence[RunRecords], curves: Path, path: Path) -> Path:
    """Write the page to `path`, embedding the PNG `curves` and every run's grids."""
    title = "fedsim report: " + ", ".join(run.name for run in runs)
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<figure><img alt="leakage curves" src="{_data_uri(curves)}"></figure>',
        *(_run_section(run) for run in runs),
    ]
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
