"""The class histogram an update gives away, as the judgement counts it.

Every audited update's record carries `label_counts` (`fedsim.auditor.label_counts`):
the histogram read from the classifier head's update, at any batch size, and where the
true labels are known (proxy audits, simulation) its score — `exact`, and `accuracy`
(the share of the batch's labels counted right) beside `guess_accuracy`, the same share
for the batch split evenly over the classes. A series' verdict says how many updates
gave their histogram away exactly and how the counts compare with that even split;
without ground truth it says how many updates' histograms are readable at all, since
a client's class histogram is private data whatever the batch size.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LabelReading:
    """One record's `label_counts`: read or not, and its score where the truth is known."""

    read: bool
    exact: bool | None = None
    accuracy: float | None = None
    guess_accuracy: float | None = None


def _number(value: Any) -> float | None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if is_number else None


def read_label_counts(field_value: Any) -> LabelReading | None:
    """The reading of a record's `label_counts` field; None where the record has none."""
    if not isinstance(field_value, Mapping):
        return None
    exact = field_value.get("exact")
    return LabelReading(
        read=field_value.get("recovered") is not None,
        exact=exact if isinstance(exact, bool) else None,
        accuracy=_number(field_value.get("accuracy")),
        guess_accuracy=_number(field_value.get("guess_accuracy")),
    )


def _percent(values: list[float]) -> str:
    return f"{100 * statistics.fmean(values):.0f} %"


@dataclass
class LabelFacts:
    """Label-count readings of one series (in a round, or over a run)."""

    updates: int = 0
    """Records that carry `label_counts`."""
    read: int = 0
    """Of those, updates whose histogram was read from the head's update."""
    scored: int = 0
    """Of those, updates whose true histogram is known."""
    exact: int = 0
    accuracy: list[float] = field(default_factory=list)
    guess_accuracy: list[float] = field(default_factory=list)

    def add(self, reading: LabelReading | None) -> None:
        if reading is None:
            return
        self.updates += 1
        self.read += reading.read
        if reading.read and reading.accuracy is not None:
            self.scored += 1
            self.exact += bool(reading.exact)
            self.accuracy.append(reading.accuracy)
            if reading.guess_accuracy is not None:
                self.guess_accuracy.append(reading.guess_accuracy)

    def merge(self, other: LabelFacts) -> None:
        self.updates += other.updates
        self.read += other.read
        self.scored += other.scored
        self.exact += other.exact
        self.accuracy += other.accuracy
        self.guess_accuracy += other.guess_accuracy

    @property
    def beats_guess(self) -> bool | None:
        """Whether the counts beat the even split on average; None without ground truth."""
        if not self.accuracy or not self.guess_accuracy:
            return None
        return statistics.fmean(self.accuracy) > statistics.fmean(self.guess_accuracy)

    def sentence(self) -> str:
        """' Label counts: …' for a verdict's text; '' where no update's histogram was read."""
        if not self.read:
            return ""
        if self.scored:
            guess = (
                f"; an even split over the classes gets {_percent(self.guess_accuracy)}"
                if self.guess_accuracy
                else ""
            )
            return (
                f" Label counts: the class histogram was recovered exactly in {self.exact} of"
                f" {self.scored} updates ({_percent(self.accuracy)} of the labels counted right"
                f" on average{guess})."
            )
        if self.read == self.updates:
            noun = "update" if self.read == 1 else "updates"
            return f" The class histogram of every update is readable: {self.read} {noun}."
        return f" The class histogram is readable in {self.read} of {self.updates} updates."

    def as_json(self) -> dict[str, Any] | None:
        """The `label_counts` entry of `report/verdicts.json`; None where no record has one."""
        if not self.updates:
            return None
        return {
            "updates": self.updates,
            "readable": self.read,
            "scored": self.scored,
            "exact": self.exact if self.scored else None,
            "mean_accuracy": statistics.fmean(self.accuracy) if self.accuracy else None,
            "mean_guess_accuracy": (
                statistics.fmean(self.guess_accuracy) if self.guess_accuracy else None
            ),
            "beats_even_split": self.beats_guess,
        }
