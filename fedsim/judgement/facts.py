"""Leakage records condensed into facts per series (attack, defense, scored against what)
and audited round: what was audited, scored, recovered, and where the audit has holes.

Every reader — the live console line, the verdict, the curves, the round table, the
tables of EXPERIMENTS.md — takes its numbers from here, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedsim.judgement.labels import LabelFacts
from fedsim.judgement.reading import Domain, Reading, Series, read_record


@dataclass
class RoundFacts:
    """One series in one audited round, over the round's audited clients."""

    round: int
    accuracy: float | None = None
    """Test accuracy of the model the clients started from (after the round before)."""
    records: int = 0
    """Leakage lines: one per audited update (per client, or per round under secure
    aggregation)."""
    scored: int = 0
    """Updates whose records carry scores, whatever their status."""
    leaking: int = 0
    """Of those, updates with at least one item recovered."""
    items: int = 0
    """Images or feature rows judged."""
    recovered: int = 0
    domain: Domain | None = None
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    mse: list[float] = field(default_factory=list)
    categorical: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    holes: Counter[str] = field(default_factory=Counter)
    """Status → updates that should have been attacked and were not."""
    reasons: list[str] = field(default_factory=list)
    """Distinct messages of the holes, first seen first."""
    hidden: int = 0
    unscored: int = 0
    short: list[tuple[int | None, int | None]] = field(default_factory=list)
    """(iterations spent, iterations budgeted) of scored attacks stopped by their time
    budget before their iteration budget."""
    seconds_budget: float | None = None
    spent: list[int] = field(default_factory=list)
    """Iterations each scored attack ran."""
    planned: int | None = None
    """The iteration budget, where records say it."""
    approximations: list[str] = field(default_factory=list)
    """What scored attacks modelled only approximately, distinct, first seen first."""
    labels: LabelFacts = field(default_factory=LabelFacts)
    """The class histograms the updates gave away (`fedsim.judgement.labels`)."""

    @property
    def share(self) -> float | None:
        """The fraction of judged items recovered."""
        return self.recovered / self.items if self.items else None

    @property
    def complete(self) -> bool:
        """Every audited update was attacked, with an exact model of how it was made, and
        its attack spent its iteration budget."""
        return not self.holes and not self.short and not self.approximations

    def add(self, reading: Reading) -> None:
        self.records += 1
        self.statuses[reading.status] += 1
        self.labels.add(reading.labels)
        if reading.seconds_budget is not None:
            self.seconds_budget = float(reading.seconds_budget)
        if reading.kind == "hole":
            self.holes[reading.status] += 1
            if reading.message and reading.message not in self.reasons:
                self.reasons.append(reading.message)
        elif reading.kind == "hidden":
            self.hidden += 1
        elif reading.kind == "unscored":
            self.unscored += 1
        else:
            self._add_scored(reading)

    def _add_scored(self, reading: Reading) -> None:
        self.scored += 1
        self.domain = self.domain or reading.domain
        hits = sum(reading.recovered)
        self.items += len(reading.recovered)
        self.recovered += hits
        self.leaking += hits > 0
        self.psnr += reading.psnr
        self.ssim += reading.ssim
        self.mse += reading.mse
        self.categorical += reading.categorical
        if reading.iterations is not None:
            self.spent.append(reading.iterations)
        if reading.planned is not None:
            self.planned = max(self.planned or 0, reading.planned)
        for text in reading.approximations:
            if text not in self.approximations:
                self.approximations.append(text)
        if reading.short:
            self.short.append((reading.iterations, reading.planned))


@dataclass
class SeriesFacts:
    """One series over all its audited rounds, in round order."""

    series: Series
    rounds: list[RoundFacts]

    def total(self, name: str) -> int:
        return sum(getattr(r, name) for r in self.rounds)

    def counter(self, name: str) -> Counter[str]:
        counts: Counter[str] = Counter()
        for r in self.rounds:
            counts.update(getattr(r, name))
        return counts

    @property
    def domain(self) -> Domain | None:
        return next((r.domain for r in self.rounds if r.domain), None)

    @property
    def short(self) -> list[tuple[int | None, int | None]]:
        return [s for r in self.rounds for s in r.short]

    @property
    def approximations(self) -> list[str]:
        return list(dict.fromkeys(a for r in self.rounds for a in r.approximations))

    @property
    def reasons(self) -> list[str]:
        return list(dict.fromkeys(m for r in self.rounds for m in r.reasons))

    @property
    def labels(self) -> LabelFacts:
        merged = LabelFacts()
        for r in self.rounds:
            merged.merge(r.labels)
        return merged


def leakage_facts(
    leakage: Iterable[Mapping[str, Any]], accuracy_after: Mapping[int, float] | None = None
) -> list[SeriesFacts]:
    """Every series of `leakage`, in (defense, attack, trained-on, proxy, batch size) order.

    A record without scores (a hole, a hidden or unscored update) belongs to every
    series of its attack and defense: an update that was not attacked was attacked in
    none of them. `accuracy_after`: round → test accuracy after it (round 0: the start).
    """
    accuracy = dict(accuracy_after or {})
    readings = [reading for record in leakage for reading in read_record(record)]
    scored_series = {r.series for r in readings if r.kind == "scored"}
    table: dict[Series, dict[int, RoundFacts]] = defaultdict(dict)
    for reading in readings:
        targets = [reading.series]
        if reading.kind != "scored":
            targets += [s for s in scored_series if _same_attack(s, reading.series)]
        for series in dict.fromkeys(targets):
            rounds = table[series]
            if reading.round not in rounds:
                rounds[reading.round] = RoundFacts(reading.round, accuracy.get(reading.round - 1))
            rounds[reading.round].add(reading)
    ordered = sorted(
        table,
        key=lambda s: (s.defense, s.attack, s.aggregate, s.trained_on, s.proxy, s.batch_size or 0),
    )
    return [SeriesFacts(s, [table[s][r] for r in sorted(table[s])]) for s in ordered]


def _same_attack(a: Series, b: Series) -> bool:
    """`a` is another series of `b`'s attack on the same updates (scored against the
    trained-on batch instead of the private one)."""
    return (
        dataclasses.replace(a, trained_on=False) == dataclasses.replace(b, trained_on=False)
        and a != b
    )


def round_counts(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """Attack label → (items recovered, items judged) over `records` (one round's, for
    the live console line), in first-seen order."""
    counts: dict[str, tuple[int, int]] = {}
    for record in records:
        for reading in read_record(record):
            if reading.kind != "scored" or reading.series.trained_on:
                continue
            hits, items = counts.get(reading.series.label, (0, 0))
            counts[reading.series.label] = (
                hits + sum(reading.recovered),
                items + len(reading.recovered),
            )
    return counts
