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

from fedsim.judgement import IMAGE_RULE, ROW_RULE, RoundFacts, Verdict
from fedsim.report.privacy import privacy_lines
from fedsim.report.runs import RunRecords

LABELS = {True: "leaked", False: "nothing recovered", None: "inconclusive"}
"""What a verdict's `leaked` value is called on the console and the page."""

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
.verdict .tag { font-size: 0.8em; text-transform: uppercase; letter-spacing: 0.04em;
                color: #555; margin-left: 0.4em; }
.partial { background: #fff3cd; padding: 0.5em 1em; border-left: 4px solid #e0a800; }
img { max-width: 100%; }
figure { margin: 1em 0; }
figure.strip { overflow-x: auto; }
figure.strip img { max-width: none; }
figcaption { font-size: 0.85em; color: #555; }
"""

EPSILON_NOTE = (
    "Each ε at the δ recorded beside it, labelled with the threat model it holds under:"
    " record-level amplified by subsampling (only if the server cannot know which records a"
    " client sampled — the simulated auditor does know, since it recomputes each batch),"
    " record-level against an informed adversary who knows the batch (q = 1), or"
    ' user-level. A label that ends in "does not hold here" names a claim whose'
    " assumption this run violates. The leakage above is what the attacks recovered."
)


BOUND_NOTE = (
    "The line: the most any attack can make an image recognisable (SSIM ≥ 0.4), by the"
    " informed claim after each round (reconstruction robustness; κ, the best guess"
    " without the update, is in the records; with B images per update, at min(B·κ, 1))."
    " The points: the share each attack made recognisable. A point above the line is a"
    " bug in the bound, the accounting or the scoring, and the run warns about it."
)

PROXY_NOTE = (
    "Series marked (proxy) are clients the server simulated as the app declared them"
    " (batch size, local steps, optimiser, shuffling, defense), from each round's global"
    " model, on data the server holds: their numbers are for a client like yours on proxy"
    " data, not a measurement on your clients' own data. Where the declared update was out"
    " of reach of the round's time budget (audit_plan.json), proxy clients of smaller batches"
    " show where leakage stops as the batch grows."
)


def _data_uri(path: Path) -> str:
    kind = "image/svg+xml" if path.suffix == ".svg" else "image/png"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _number(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _verdict_block(verdict: Verdict) -> str:
    kind = {True: "leaks", False: "nothing", None: "unscored"}[verdict.leaked]
    label = LABELS[verdict.leaked]
    return (
        f'<p class="verdict {kind}"><strong>{escape(verdict.heading)}</strong>'
        f' <span class="tag">{label}</span><br>{escape(verdict.text)}</p>'
    )


def _verdict_section(runs: Sequence[RunRecords]) -> str:
    found = [(run, run.verdicts()) for run in runs]
    domains = {v.domain for _, verdicts in found for v in verdicts}
    rules = []
    if domains - {"rows"}:
        rules.append(f"an image counts when its reconstruction is recognisable ({IMAGE_RULE})")
    if "rows" in domains:
        rules.append(f"a feature row counts when {ROW_RULE}")
    parts = [
        "<h2>Verdict</h2>",
        f"<p>What each attack recovered, per defense: {escape('; '.join(rules))}. Every"
        " record that carries scores counts, including attacks stopped by their time budget."
        " A verdict is about what an attack did with its budget, never a guarantee about a"
        " defense.</p>",
    ]
    if any(v.series.proxy for _, verdicts in found for v in verdicts):
        parts.append(f"<p>{escape(PROXY_NOTE)}</p>")
    for run, verdicts in found:
        if len(runs) > 1:
            parts.append(f"<h3>{escape(run.name)}</h3>")
        parts += [_verdict_block(v) for v in verdicts] or ["<p>No audited round was recorded.</p>"]
    return "\n".join(parts)


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _not_attacked(r: RoundFacts) -> str:
    parts = [f"{n} {status}" for status, n in sorted(r.holes.items())]
    if r.short:
        parts.append(f"{len(r.short)} stopped by time (scored)")
    if r.hidden:
        parts.append(f"{r.hidden} hidden by secure aggregation")
    if r.unscored:
        parts.append(f"{r.unscored} without ground truth")
    return ", ".join(parts) or "–"


def _audit_table(run: RunRecords) -> str:
    entries = [(r.round, facts.series, r) for facts in run.facts() for r in facts.rounds]
    rows_domain = any(r.domain == "rows" for _, _, r in entries)
    rows = []
    for _, series, r in sorted(entries, key=lambda e: (e[0], e[1].defense, e[1].label)):
        accuracy = "–" if r.accuracy is None else f"{100 * r.accuracy:.1f} %"
        share = "–" if r.share is None else f"{r.recovered} of {r.items}"
        if r.domain == "rows":
            scores = f"<td>{_number(_mean(r.mse), 3)}</td><td>{_number(_mean(r.categorical))}</td>"
        else:
            scores = f"<td>{_number(_mean(r.psnr))}</td><td>{_number(_mean(r.ssim), 3)}</td>"
        rows.append(
            f"<tr><td>{r.round}</td><td>{escape(series.label)}</td><td>{escape(series.defense)}</td>"
            f"<td>{accuracy}</td><td>{r.records}</td><td>{r.scored}</td><td>{share}</td>"
            f"{scores}<td>{escape(_not_attacked(r))}</td></tr>"
        )
    score_heads = (
        "<th>mean row MSE</th><th>categorical right</th>"
        if rows_domain
        else "<th>mean PSNR (dB)</th><th>mean SSIM</th>"
    )
    return (
        "<table><tr><th>round</th><th>attack</th><th>defense</th><th>accuracy attacked</th>"
        "<th>updates audited</th><th>scored</th><th>recovered</th>"
        f"{score_heads}<th>not attacked / incomplete</th></tr>"
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
    trained = "" if run.rounds else " No training rounds are recorded (a Flower app's own)."
    parts.append(f"<p>{escape(run.audit_line())}.{escape(trained)}</p>")
    parts.append(
        "<p>Per audited round: the test accuracy of the model the clients started from, the"
        " updates audited and scored (timed-out attacks count with their best candidate),"
        " and how many images or rows were recovered.</p>"
    )
    parts.extend(f"<p>{escape(line)}</p>" for line in privacy_lines(run.rounds))
    parts.append(_audit_table(run))
    pictures = run.pictures()
    grids = [path for path, problem in pictures if problem is None]
    refused = [(path, problem) for path, problem in pictures if problem is not None]
    if refused:
        listed = "; ".join(f"{path.name}: {problem}" for path, problem in refused)
        parts.append(
            f'<p class="partial">Not shown from reconstructions/ ({len(refused)}): {escape(listed)}.'
            " The report embeds only regular PNG files inside the run directory.</p>"
        )
    if grids:
        parts.append(
            "<h3>Reconstructions</h3><p>Per audited round, every audited client's private"
            " images (top row) over each attack's reconstruction, matched image to image;"
            " a green frame marks a recovered one.</p>"
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
        note = EPSILON_NOTE if "ε" in heading else BOUND_NOTE if "bound" in heading else ""
        caption = f"<figcaption>{escape(note)}</figcaption>" if note else ""
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
