"""The report's figures: leakage per round, leakage against the global model's accuracy
(overlaid runs of several defenses give the privacy–utility picture over training),
and ε per round where a run records one.

Leakage is shown two ways: the mean score of the reconstructions (images: PSNR; feature
rows: the MSE of their continuous columns and the share of categorical columns right;
min–max band over the audited clients) and the share of images or rows recovered
(`fedsim.judgement.criteria`). Every record that carries scores is drawn, timed-out
attacks included (`fedsim.judgement`). Rounds go on a log axis when the audited rounds span
more than a decade and a half, as a log-spaced schedule does.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedsim.judgement import RoundFacts
from fedsim.report.runs import RunRecords

_DASHES = ["--", ":", "-.", (0, (5, 1, 1, 1))]
"""Line styles that tell overlaid runs' accuracy lines apart."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(
    runs: Sequence[RunRecords],
) -> list[tuple[str, RunRecords, list[RoundFacts]]]:
    """(legend label, run, audited rounds) per run and series with judged items."""
    several = len(runs) > 1
    lines = []
    for run in runs:
        prefix = f"{run.name}: " if several else ""
        for facts in run.facts():
            scored = [r for r in facts.rounds if r.items]
            if scored:
                label = f"{prefix}{facts.series.label} | {facts.series.defense}"
                lines.append((label, run, scored))
    return lines


SCORE_PANELS = {
    "psnr": "PSNR of reconstructions (dB)",
    "mse": "row MSE, continuous columns\n(lower: closer)",
    "categorical": "categorical columns right",
}
"""The per-item scores a leakage figure can draw, by `RoundFacts` field."""


def _panels(lines: Sequence[tuple[str, RunRecords, list[RoundFacts]]]) -> list[str]:
    """The score panels the series have values for (PSNR when nothing has any)."""
    found = [name for name in SCORE_PANELS if any(getattr(r, name) for *_, rs in lines for r in rs)]
    return found or ["psnr"]


def _round_axis(axis: Any, rounds: Sequence[int], marked: Sequence[int] = ()) -> None:
    """Integer rounds; a log axis ticked at the `marked` (audited) rounds when they span
    more than a decade and a half."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    if rounds and min(rounds) >= 1 and max(rounds) / min(rounds) > 30:
        axis.set_xscale("log")
        ticks = sorted(set(marked)) if 2 <= len(set(marked)) <= 12 else None
        if ticks:
            axis.set_xticks(ticks)
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(NullFormatter())
    else:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("round")


def _save(figure: Any, stem: Path, svg: bool = False) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png")] + ([stem.with_suffix(".svg")] if svg else [])
    for path in paths:
        figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return paths


def plot_leakage(runs: Sequence[RunRecords], stem: Path) -> list[Path]:
    """`stem`.png and .svg: per round the reconstructions' scores (PSNR for images; MSE
    and categorical columns right for feature rows) with the accuracy beside them, and
    the share of images or rows recovered."""
    plt = _pyplot()
    lines = _series(runs)
    panels = _panels(lines)
    figure, axes = plt.subplots(
        len(panels) + 1, 1, figsize=(8, 3.2 + 2.2 * len(panels)), sharex=True,
        gridspec_kw={"height_ratios": [3] * len(panels) + [2]},
    )  # fmt: skip
    score_axes, share_axis = dict(zip(panels, axes[:-1], strict=True)), axes[-1]
    accuracy_axis = axes[0].twinx()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    audited: list[int] = []
    for index, (label, _, rounds) in enumerate(lines):
        colour = colours[index % len(colours)]
        for name, axis in score_axes.items():
            drawn = [r for r in rounds if getattr(r, name)]
            if not drawn:
                continue
            x = [r.round for r in drawn]
            values = [getattr(r, name) for r in drawn]
            axis.plot(x, [statistics.fmean(v) for v in values], marker="o", color=colour,
                      label=label if axis is axes[0] else None)  # fmt: skip
            axis.fill_between(x, [min(v) for v in values], [max(v) for v in values],
                              color=colour, alpha=0.15)  # fmt: skip
        x = [r.round for r in rounds]
        audited += x
        share_axis.plot(x, [100 * (r.share or 0.0) for r in rounds], marker="o", color=colour)
    every_round = audited + _plot_accuracy(runs, accuracy_axis)
    _round_axis(share_axis, every_round, audited)
    for name, axis in score_axes.items():
        axis.set_ylabel(SCORE_PANELS[name])
        if name == "mse":
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
    accuracy_axis.set_ylabel("global test accuracy")
    accuracy_axis.set_ylim(0, 1)
    unit = "rows" if "mse" in score_axes and "psnr" not in score_axes else "images"
    share_axis.set_ylabel(f"{unit} recovered (%)")
    share_axis.set_ylim(-3, 103)
    share_axis.grid(alpha=0.3)
    title = "gradient leakage over training"
    if any(run.partial for run in runs):
        title += " (partial run)"
    axes[0].set_title(title)
    handles, labels = [], []
    for axis in (axes[0], accuracy_axis):
        h, lab = axis.get_legend_handles_labels()
        handles += h
        labels += lab
    if handles:
        axes[0].legend(handles, labels, fontsize=8, loc="best")
    figure.tight_layout()
    return _save(figure, stem, svg=True)


def _plot_accuracy(runs: Sequence[RunRecords], axis: Any) -> list[int]:
    """Each run's test accuracy per round on `axis`; the rounds drawn."""
    several = len(runs) > 1
    drawn: list[int] = []
    for index, run in enumerate(runs):
        accuracy = run.accuracy_after()
        if accuracy:
            x = sorted(r for r in accuracy if r >= 1) or sorted(accuracy)
            drawn += x
            axis.plot(
                x,
                [accuracy[r] for r in x],
                linestyle=_DASHES[index % len(_DASHES)],
                color="0.4",
                label=f"{run.name + ': ' if several else ''}test accuracy",
            )
    return drawn


def plot_privacy_utility(runs: Sequence[RunRecords], stem: Path) -> list[Path]:
    """`stem`.png: leakage at each audited state against that state's test accuracy."""
    plt = _pyplot()
    lines = _series(runs)
    score = _panels(lines)[0]
    figure, (share_axis, psnr_axis) = plt.subplots(1, 2, figsize=(10, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, _, rounds) in enumerate(lines):
        known = [r for r in rounds if r.accuracy is not None]
        if not known:
            continue
        colour = colours[index % len(colours)]
        x = [100 * r.accuracy for r in known]
        share_axis.plot(
            x, [100 * (r.share or 0.0) for r in known], marker="o", color=colour, label=label
        )
        scored = [
            (xi, getattr(r, score)) for xi, r in zip(x, known, strict=True) if getattr(r, score)
        ]
        psnr_axis.plot([xi for xi, _ in scored], [statistics.fmean(v) for _, v in scored],
                       marker="o", color=colour)  # fmt: skip
        for r, xi in zip(known, x, strict=True):
            share_axis.annotate(
                str(r.round), (xi, 100 * (r.share or 0.0)), fontsize=6, xytext=(2, 3),
                textcoords="offset points", color=colour,
            )  # fmt: skip
    for axis in (share_axis, psnr_axis):
        axis.set_xlabel("test accuracy of the attacked model (%)")
        axis.grid(alpha=0.3)
    share_axis.set_ylabel("images or rows recovered (%)")
    share_axis.set_ylim(-3, 103)
    psnr_axis.set_ylabel("mean " + SCORE_PANELS[score].replace("\n", " "))
    if score == "mse":
        psnr_axis.set_yscale("log")
    share_axis.set_title("leakage against utility (labels: round)", fontsize=10)
    if share_axis.get_legend_handles_labels()[0]:
        share_axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return _save(figure, stem)


def plot_epsilon(runs: Sequence[RunRecords], stem: Path) -> list[Path]:
    """`stem`.png: every ε a run records per round; nothing when no run records one
    above 0 (the log axis has no place for round 0's ε = 0, and a folder of audited
    states started from checkpoints records ε only for its initial state)."""
    lines = []
    for run in runs:
        for key, values in sorted(run.epsilon_by_round().items()):
            spent = {r: v for r, v in values.items() if v > 0}
            if spent:
                lines.append((f"{run.name + ': ' if len(runs) > 1 else ''}{key}", spent))
    if not lines:
        return []
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 3.5))
    every_round: list[int] = []
    for label, values in lines:
        x = sorted(values)
        every_round += x
        axis.plot(x, [values[r] for r in x], marker=".", label=label)
    axis.set_yscale("log")
    _round_axis(axis, every_round)
    axis.set_ylabel("ε spent so far")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, stem)
