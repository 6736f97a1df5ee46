"""The verdict on each series in plain words, and as data (`report/verdicts.json`).

A verdict says what an attack recovered, never what a defense guarantees:

- `leaked = True`: at least one image or row was recovered (`fedsim.judgement.criteria`),
  whatever else happened — leakage found is never outweighed by holes or time-outs;
- `leaked = None`, *inconclusive*: nothing was recovered, but the audit has holes
  (updates that could not be attacked), attacks stopped by their time budget before
  their iteration budget, attacks modelled the update only approximately, nothing
  could be scored (no ground truth), or secure aggregation hid the updates — the count
  and the reason are in the sentence;
- `leaked = False`: every audited update was attacked within its full budget and
  nothing was recovered. That is what this attack did with this budget; the sentence
  says a tuned or stronger attack may recover more.

`leaked` is about reconstructions. What the updates give away of their class histograms
(`fedsim.judgement.labels`) closes every sentence and is the `label_counts` entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.judgement.criteria import IMAGE_RULE, ROW_RULE
from fedsim.judgement.facts import RoundFacts, SeriesFacts, leakage_facts
from fedsim.judgement.reading import Series


@dataclass(frozen=True)
class Verdict:
    """The judgement of one series: `leaked` True, False, or None (inconclusive)."""

    series: Series
    leaked: bool | None
    text: str
    domain: str | None
    items: int
    recovered: int
    audited: int
    scored: int
    leaking: int
    statuses: dict[str, int] = field(default_factory=dict)
    holes: dict[str, int] = field(default_factory=dict)
    rounds: list[int] = field(default_factory=list)
    label_counts: dict[str, Any] | None = None
    """What the updates gave away of their class histograms (`LabelFacts.as_json`)."""

    @property
    def attack(self) -> str:
        return self.series.label

    @property
    def defense(self) -> str:
        return self.series.defense

    @property
    def heading(self) -> str:
        """`bayes against gaussian:sigma=0.01`, or `bayes, no defense`."""
        if self.defense == "none":
            return f"{self.attack}, no defense"
        return f"{self.attack} against {self.defense}"

    def as_json(self, run: str | None = None) -> dict[str, Any]:
        """The machine-readable verdict (one entry of `report/verdicts.json`)."""
        unit = "rows" if self.domain == "rows" else "images"
        entry: dict[str, Any] = {} if run is None else {"run": run}
        entry.update(
            attack=self.series.attack,
            defense=self.defense,
            scored_against="trained-on" if self.series.trained_on else "private",
            proxy=self.series.proxy,
            batch_size=self.series.batch_size,
            aggregate=self.series.aggregate,
            leaked=self.leaked,
            domain=self.domain,
            recognisable_images=self.recovered,
            images=self.items,
            unit=unit,
            criterion=ROW_RULE if self.domain == "rows" else IMAGE_RULE,
            updates_audited=self.audited,
            updates_scored=self.scored,
            updates_leaking=self.leaking,
            statuses=self.statuses,
            not_attacked=self.holes,
            rounds=self.rounds,
            label_counts=self.label_counts,
            text=self.text,
        )
        return entry


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _percent(value: float | None) -> str:
    return "accuracy unknown" if value is None else f"test accuracy {100 * value:.0f} %"


def _nouns(facts: SeriesFacts) -> tuple[str, str]:
    """(what was attacked, its unit): 'the private images', 'images'."""
    unit = "feature rows" if facts.domain == "rows" else "images"
    if facts.series.trained_on:
        return f"the transformed {unit} the clients trained on", unit
    if facts.series.proxy:
        return f"the proxy clients' {unit}", unit
    if facts.series.aggregate:
        return f"the private {unit} from the aggregate of the round's clients", unit
    return f"the private {unit}", unit


def _n(count: int, noun: str) -> str:
    """'1 update', '3 updates'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _holes(facts: SeriesFacts) -> str:
    """' 2 audited updates could not be attacked (1 failed, 1 rejected: reason) and say
    nothing.' — also updates attacked without ground truth or hidden by secure aggregation
    beside scored ones."""
    holes = facts.counter("holes")
    text = ""
    if holes:
        reason = facts.reasons[0] if facts.reasons else ""
        text += (
            f" {_n(sum(holes.values()), 'audited update')} could not be attacked"
            f" ({_counts(holes)}{': ' + reason if reason else ''}) and say nothing."
        )
    if facts.approximations:
        text += f" Modelled approximately: {'; '.join(facts.approximations)}."
    unscored, hidden = facts.total("unscored"), facts.total("hidden")
    if unscored and facts.total("scored"):
        text += f" {_n(unscored, 'attacked update')} could not be scored (no ground truth)."
    if hidden and facts.total("scored"):
        text += f" In {_n(hidden, 'record')} secure aggregation hid the updates."
    return text


def _short(facts: SeriesFacts) -> str:
    """' 6 attacks stopped at their 6 s time budget after 74–105 of 200 iterations.'"""
    short = facts.short
    if not short:
        return ""
    spent = sorted(s for s, _ in short if s is not None)
    planned = {p for _, p in short if p is not None}
    span = (
        "" if not spent else f"{spent[0]}–{spent[-1]}" if spent[0] != spent[-1] else f"{spent[0]}"
    )
    of = f" of {max(planned)}" if planned else ""
    seconds = next((r.seconds_budget for r in facts.rounds if r.seconds_budget), None)
    budget = f"their {seconds:g} s time budget" if seconds else "their time budget"
    after = f" after {span}{of} iterations" if span else ""
    return (
        f" {_n(len(short), 'attack')} stopped at {budget}{after}, short of their iteration"
        " budget (the best candidate so far is counted)."
    )


def _trend(rounds: Sequence[RoundFacts], unit: str) -> str:
    """When in training the items stopped (or did not stop) being recovered."""
    judged = [r for r in rounds if r.items]
    leaking = [r for r in judged if r.recovered]
    if len(judged) < 2 or not leaking:
        return ""
    last, final = leaking[-1], judged[-1]
    if last.round == final.round:
        return (
            f" They still leak at the last audited round, {final.round}"
            f" ({_percent(final.accuracy)} when attacked)."
        )
    after = [r for r in rounds if r.round > last.round]
    items = sum(r.items for r in after)
    incomplete = [r.round for r in after if not r.complete or not r.items]
    text = (
        f" Nothing was recovered after round {last.round} ({_percent(last.accuracy)}):"
        f" none of the {items} {unit} judged in rounds {after[0].round}–{after[-1].round}"
        f" ({_percent(final.accuracy)} at the end)"
    )
    if incomplete:
        listed = ", ".join(str(r) for r in incomplete)
        return text + f", but rounds {listed} were not fully audited, so it may leak there."
    return text + "."


def _leaked(facts: SeriesFacts, subject: str, unit: str) -> str:
    defense = facts.series.defense
    through = "from the undefended updates" if defense == "none" else f"through {defense}"
    rule = ROW_RULE if facts.domain == "rows" else IMAGE_RULE
    scored = _n(facts.total("scored"), "scored update")
    return (
        f"{facts.series.label} recovered {subject} {through}: in {facts.total('leaking')} of"
        f" {scored}, {facts.total('recovered')} of {facts.total('items')} {unit} ({rule})."
        + _trend(facts.rounds, unit)
        + _short(facts)
        + _holes(facts)
    )


def _incomplete(facts: SeriesFacts, unit: str) -> str:
    return (
        f"Inconclusive: {facts.series.label} recovered none of the {facts.total('items')}"
        f" {unit} it scored in {_n(facts.total('scored'), 'update')}, but the audit is"
        " incomplete."
        + _short(facts)
        + _holes(facts)
        + " Give the attacks their whole budget before reading anything into this."
    )


def _nothing(facts: SeriesFacts, subject: str, unit: str) -> str:
    attack, defense = facts.series.label, facts.series.defense
    claim = "the updates are safe" if defense == "none" else f"{defense} protects"
    return (
        f"{attack} recovered none of {subject} in the {_n(facts.total('scored'), 'audited update')}"
        f" ({facts.total('items')} {unit}; {_best(facts)}). That is what {attack} does within"
        f" {_budget(facts)}; a tuned or stronger attack may recover more, so this does not"
        f" show that {claim}."
    )


def _hidden(facts: SeriesFacts) -> str:
    return (
        "Secure aggregation kept every client's update from the server in the"
        f" {_n(len(facts.rounds), 'audited round')}, so no single client's update was attacked."
        " The sum the server saw is still there to attack: it is the update of all the"
        " round's clients' batches together (in simulation fedsim attacks it: the verdict"
        " 'on the aggregate'). Flower's SecAgg+ derives its pairwise masks from 32-bit"
        " seeds."
    )


def _unjudged(facts: SeriesFacts) -> str:
    """Inconclusive for want of scores: no ground truth, PSNR alone, or nothing attacked."""
    unscored, scored = facts.total("unscored"), facts.total("scored")
    if unscored:
        were = "was" if unscored == 1 else "were"
        return (
            f"Inconclusive: {_n(unscored, 'update')} {were} attacked, but without ground truth"
            " fedsim cannot say whether the reconstructions show the private data; they are"
            " stored beside the records." + _holes(facts)
        )
    if scored:
        return (
            f"Inconclusive: {_n(scored, 'update')} scored by PSNR alone, without the SSIM"
            " that says whether an image is recognisable." + _holes(facts)
        )
    return "Inconclusive: no update could be scored." + (
        _holes(facts) or f" ({_counts(facts.counter('statuses'))})"
    )


def judge(facts: SeriesFacts) -> Verdict:
    """The verdict on one series from its facts (module note)."""
    subject, unit = _nouns(facts)
    items, recovered = facts.total("items"), facts.total("recovered")
    hidden = facts.total("hidden")
    incomplete = (
        facts.counter("holes")
        or facts.short
        or facts.approximations
        or facts.total("unscored")
        or hidden
    )
    leaked: bool | None = None
    if recovered:
        leaked, text = True, _leaked(facts, subject, unit)
    elif items and incomplete:
        text = _incomplete(facts, unit)
    elif items:
        leaked, text = False, _nothing(facts, subject, unit)
    elif hidden and hidden == facts.total("records"):
        text = _hidden(facts)
    else:
        text = _unjudged(facts)
    labels = facts.labels
    text += labels.sentence()
    return Verdict(
        series=facts.series,
        leaked=leaked,
        text=text,
        domain=facts.domain,
        items=items,
        recovered=recovered,
        audited=facts.total("records"),
        scored=facts.total("scored"),
        leaking=facts.total("leaking"),
        statuses=dict(sorted(facts.counter("statuses").items())),
        holes=dict(sorted(facts.counter("holes").items())),
        rounds=[r.round for r in facts.rounds],
        label_counts=labels.as_json(),
    )


def _best(facts: SeriesFacts) -> str:
    ssim = [v for r in facts.rounds for v in r.ssim]
    if ssim:
        return f"best SSIM {max(ssim):.2f}"
    mse = [v for r in facts.rounds for v in r.mse]
    return f"lowest row MSE {min(mse):.3g}" if mse else "no per-item scores"


def _budget(facts: SeriesFacts) -> str:
    """'200 iterations': the recorded budget, else the most any scored attack ran."""
    planned = [r.planned for r in facts.rounds if r.planned]
    iterations = (
        max(planned) if planned else max((s for r in facts.rounds for s in r.spent), default=0)
    )
    return f"{iterations} iterations" if iterations else "its budget"


def verdicts(
    leakage: Iterable[Mapping[str, Any]], accuracy_after: Mapping[int, float] | None = None
) -> list[Verdict]:
    """The verdict on every series of a run's leakage records."""
    return [judge(facts) for facts in leakage_facts(leakage, accuracy_after)]


def write_verdicts(entries: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """`report/verdicts.json`: a list of `Verdict.as_json` entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(entries), indent=2, ensure_ascii=False) + "\n")
    return path
