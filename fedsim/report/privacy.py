"""The privacy a run's records claim, as sentences that name their threat model.

An ε is never shown alone: each line carries the threat model it holds under, and one
whose assumption the run itself violates says so (`defenses.accounting`). Records of an
older fedsim carry a bare `epsilon` with no threat model; that too is said.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

TITLES = {
    "subsampled": "record-level, amplified by subsampling",
    "informed": "record-level, informed adversary (q = 1)",
    "user": "user-level",
}


def privacy_lines(rounds: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per threat model, from the last round that records privacy; [] if none."""
    last = next((r for r in reversed(rounds) if "privacy" in r or "epsilon" in r), None)
    if last is None:
        return []
    where = f"after round {last.get('round')}"
    if "privacy" not in last:
        return [
            f"{where}: ε = {_number(last['epsilon'])} at δ = {last.get('delta')}, recorded "
            "without its threat model (an older fedsim: amplification by subsampling was "
            "assumed, which a server that recomputes the batches does not give)"
        ]
    return [claim_line(claim, where) for claim in last["privacy"]]


def claim_line(claim: Mapping[str, Any], where: str = "") -> str:
    """`ε = … at δ = … — threat model: statement`, and why it does not hold where it does not."""
    title = TITLES.get(str(claim.get("threat_model")), str(claim.get("threat_model")))
    epsilon = claim.get("epsilon")
    value = "no finite ε (no noise)" if epsilon is None else f"ε = {_number(epsilon)}"
    line = f"{where + ': ' if where else ''}{value} at δ = {claim.get('delta')} — {title}: "
    line += str(claim.get("statement", ""))
    if claim.get("holds", False) is None:
        line += f". Unverified: {claim.get('why_not') or 'its assumption cannot be checked'}"
    elif not claim.get("holds", False):
        line += (
            f". Does not hold in this run: {claim.get('why_not') or 'its assumption is not met'}"
        )
    return line


def _number(value: float) -> str:
    return f"{value:.3g}" if value < 1e4 else f"{value:.2e}"
