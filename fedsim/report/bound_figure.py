"""The bound on reconstruction beside what the attacks achieved, per round.

Under DP-SGD each round's informed claim carries `reconstruction_bound`: no attack, however
strong, makes an image recognisable (SSIM ≥ 0.4) with probability above it
(`defenses.reconstruction`). With B images per update the attack's B reconstructions
are matched to the originals, the best of B guesses for each image, so the bound drawn
is the one at min(B·κ, 1) (`fedsim.auditor.bound_check.batch_bound`), as the auditor
checks it. Beside it, per attack and audited round, the share of images the attack made
recognisable — the bound's own event, so a point above the line is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from defenses.reconstruction import ReconstructionBound
from fedsim.auditor.bound_check import batch_bound
from fedsim.metrics.recognisable import is_recognisable
from fedsim.report.curves import _pyplot, _round_axis, _save
from fedsim.report.runs import RunRecords


def bound_by_round(run: RunRecords) -> dict[int, float]:
    """Round → the bound of the informed claim recorded after it, for the run's batch size
    (the attacks of round r face the bound after round r)."""
    batch = int(run.scenario.get("protocol", {}).get("batch_size", 1) or 1)
    found: dict[int, float] = {}
    for record in run.rounds:
        for claim in record.get("privacy") or []:
            raw = claim.get("reconstruction_bound")
            if claim.get("threat_model") != "informed" or not isinstance(raw, dict):
                continue
            bound = ReconstructionBound(**_known(raw))
            value = batch_bound(bound, batch)
            if value is not None:
                found[int(record["round"])] = value
    return found


def _known(raw: dict[str, Any]) -> dict[str, Any]:
    names = ReconstructionBound.__dataclass_fields__
    return {k: v for k, v in raw.items() if k in names}


def plot_bound(runs: Sequence[RunRecords], stem: Path) -> list[Path]:
    """`stem`.png: the bound per round and the recognisable share per attack; nothing
    when no run records a bound."""
    bounds = [(run, bound_by_round(run)) for run in runs]
    if not any(b for _, b in bounds):
        return []
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 3.6))
    several = len(runs) > 1
    every_round: list[int] = []
    for run, bound in bounds:
        prefix = f"{run.name}: " if several else ""
        if bound:
            x = sorted(bound)
            every_round += x
            axis.step(x, [100 * bound[r] for r in x], where="post", color="0.3",
                      label=f"{prefix}bound (any attack)")  # fmt: skip
        for facts in run.facts():
            if facts.series.trained_on or facts.series.aggregate:
                continue
            points = [
                (r.round, 100 * sum(map(is_recognisable, r.ssim)) / len(r.ssim))
                for r in facts.rounds
                if r.ssim
            ]
            if points:
                every_round += [p[0] for p in points]
                axis.plot(*zip(*points, strict=True), marker="o", linestyle="none",
                          label=f"{prefix}{facts.series.label}: recognisable")  # fmt: skip
    _round_axis(axis, every_round)
    axis.set_ylabel("images recognisable (%)\nSSIM ≥ 0.4")
    axis.set_ylim(-3, 103)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    axis.set_title("reconstruction: measured against the bound of the informed claim", fontsize=10)
    figure.tight_layout()
    return _save(figure, stem)
