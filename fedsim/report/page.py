"""A self-contained HTML page of one or more runs, in the order a reader acts on it:
the verdict per defense and attack, the curves (leakage per round, leakage against
accuracy, ε per round), then per run a table of its audited rounds and one strip of
reconstructions per audited round.

Images are embedded as data URIs so the page opens from the file system, can be
mailed or archived alone; every string taken from records is HTML-escaped.
"""

from __future__ import annotations

import base64
import math
import statistics
from collections.abc import Sequence
from html import escape
from pathlib import Path

from fedsim.metrics.recognisable import RECOGNISABLE_SSIM
from fedsim.report.privacy import privacy_lines
from fedsim.report.runs import RunRecords
from fedsim.report.verdict import Verdict, verdicts

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222;
       padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:nth-child(-n+3), td:nth-child(-n+3) { text-align: left; }
.verdict { padding: 0.7em 1em; margin: 0.6em 0; border-left: 6px solid; font-size: 1.05em; }
.verdict.leaks { background: #fbe3e1; border-color: #c0392b; }
.verdict.nothing { background: #fdf3d7; border-color: #c99a06; }
.verdict.unscored { background: #eceff1; border-color: #78909c; }
.partial { background: #fff3cd; padding: 0.5em 1em; border-left: 4px solid #e0a800; }
img { max-width: 100%; }
figure { margin: 1em 0; }
figure.strip { overflow-x: auto; }
figure.strip img { max-width: none; }
figcaption { font-size: 0.85em; color: #555; }
"""

EPSILON_NOTE = (
    "ε at the δ recorded beside it, as the run recorded it: record-level, for a client that"
    " trains in every round, amplified by subsampling — which assumes the server does not"
    " know which records a client sampled. The simulated auditor does know (it recomputes"
    " each client's batch), so against it these values are not a guarantee; the leakage"
    " above is what it recovered."
)


def _data_uri(path: Path) -> str:
    kind = "image/svg+xml" if path.suffix == ".svg" else "image/png"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _number(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _verdict_block(verdict: Verdict) -> str:
    kind = {True: "leaks", False: "nothing", None: "unscored"}[verdict.leaks]
    return (
        f'<p class="verdict {kind}"><strong>{escape(verdict.heading)}:</strong>'
        f" {escape(verdict.text)}</p>"
    )


def _verdict_section(runs: Sequence[RunRecords]) -> str:
    parts = ["<h2>Verdict</h2>"]
    for run in runs:
        if len(runs) > 1:
            parts.append(f"<h3>{escape(run.name)}</h3>")
        found = verdicts(run)
        parts += [_verdict_block(v) for v in found] or ["<p>No audited round was recorded.</p>"]
    return "\n".join(parts)


def _audit_table(run: RunRecords) -> str:
    entries = [
        (r.round, attack, defense, r)
        for (attack, defense), rounds in run.audited_rounds().items()
        for r in rounds
    ]
    rows = []
    for _, attack, defense, r in sorted(entries, key=lambda e: e[:3]):
        other = ", ".join(f"{s} {n}" for s, n in sorted(r.statuses.items()) if s != "ok")
        accuracy = "–" if r.accuracy is None else f"{100 * r.accuracy:.1f} %"
        share = "–" if r.share is None else f"{r.recognisable} of {r.images}"
        psnr = statistics.fmean(r.psnr) if r.psnr else None
        ssim = statistics.fmean(r.ssim) if r.ssim else None
        rows.append(
            f"<tr><td>{r.round}</td><td>{escape(attack)}</td><td>{escape(defense)}</td>"
            f"<td>{accuracy}</td><td>{r.updates}</td><td>{share}</td>"
            f"<td>{_number(psnr)}</td><td>{_number(ssim, 3)}</td>"
            f"<td>{escape(other) or '–'}</td></tr>"
        )
    return (
        "<table><tr><th>round</th><th>attack</th><th>defense</th><th>accuracy attacked</th>"
        f"<th>updates</th><th>images recognisable (SSIM ≥ {RECOGNISABLE_SSIM})</th>"
        "<th>mean PSNR (dB)</th><th>mean SSIM</th><th>not scored</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _run_section(run: RunRecords) -> str:
    parts = [
        f"<h2>{escape(run.name)}</h2>",
        f"<p>run directory: <code>{escape(str(run.path))}</code></p>",
    ]
    if run.partial:
        parts.append(
            f'<p class="partial">Partial run: {run.finished_rounds} of {run.planned_rounds}'
            " rounds finished.</p>"
        )
    parts.append(
        "<p>Per audited round: the test accuracy of the model the clients started from, the"
        " updates scored, and how many of their images were recovered recognisably.</p>"
    )
    parts.extend(f"<p>{escape(line)}</p>" for line in privacy_lines(run.rounds))
    parts.append(_audit_table(run))
    grids = run.grids()
    if grids:
        parts.append(
            "<h3>Reconstructions</h3><p>Per audited round, every audited client's private"
            " images (top row) over each attack's reconstruction, matched image to image;"
            " a green frame marks a recognisable one.</p>"
        )
    for grid in grids:
        parts.append(
            f'<figure class="strip"><img alt="{escape(grid.stem)}" src="{_data_uri(grid)}">'
            f"<figcaption>{escape(grid.stem)}</figcaption></figure>"
        )
    accuracy = "".join(
        f"<tr><td>{r.get('round')}</td><td>{_number(r.get('accuracy'), 4)}</td>"
        f"<td>{_number(r.get('loss'), 4)}</td></tr>"
        for r in run.rounds
    )
    parts.append(
        "<details><summary>test accuracy and loss after every round</summary>"
        f"<table><tr><th>round</th><th>accuracy</th><th>test loss</th></tr>{accuracy}</table>"
        "</details>"
    )
    return "\n".join(parts)


def write_page(runs: Sequence[RunRecords], figures: Sequence[tuple[str, Path]], path: Path) -> Path:
    """Write the page to `path`: verdict, then `figures` ((heading, PNG) in order), then runs."""
    title = "fedsim report: " + ", ".join(run.name for run in runs)
    body = [f"<h1>{escape(title)}</h1>", _verdict_section(runs)]
    for heading, figure in figures:
        body.append(f"<h2>{escape(heading)}</h2>")
        caption = f"<figcaption>{escape(EPSILON_NOTE)}</figcaption>" if "ε" in heading else ""
        body.append(
            f'<figure><img alt="{escape(heading)}" src="{_data_uri(figure)}">{caption}</figure>'
        )
    body += [_run_section(run) for run in runs]
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
