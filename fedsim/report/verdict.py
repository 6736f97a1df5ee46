"""A run's verdict in plain words: per defense and attack, did the private images leak?

An image leaks when its reconstruction is recognisable (`fedsim.metrics.recognisable`:
SSIM at least `RECOGNISABLE_SSIM` after matching). The verdict counts audited updates
with at least one such image and the images themselves, then says when in training they
stopped leaking, if they did. A run in which nothing was recognisable is never called
protected: the sentence names the attack's budget, because a weak attack proves nothing
about a defense until it has been tuned and given more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from fedsim.metrics.recognisable import RECOGNISABLE_SSIM
from fedsim.report.runs import TRAINED_ON, AuditedRound, RunRecords


@dataclass(frozen=True)
class Verdict:
    """One sentence group for one (attack, defense); `leaks` None when nothing was scored."""

    attack: str
    defense: str
    text: str
    leaks: bool | None

    @property
    def heading(self) -> str:
        """`bayes against gaussian:sigma=0.01`, or `bayes, no defense`."""
        if self.defense == "none":
            return f"{self.attack}, no defense"
        return f"{self.attack} against {self.defense}"


def _percent(value: float | None) -> str:
    return "accuracy unknown" if value is None else f"test accuracy {100 * value:.0f} %"


def _unfinished(statuses: Counter[str]) -> str:
    other = {s: n for s, n in statuses.items() if s != "ok"}
    if not other:
        return ""
    listed = ", ".join(f"{n} {s}" for s, n in sorted(other.items()))
    return f" ({listed}: not scored.)"


def _trend(rounds: Sequence[AuditedRound]) -> str:
    """When in training the images stopped (or did not stop) being recognisable."""
    scored = [r for r in rounds if r.images]
    leaking = [r for r in scored if r.recognisable]
    if len(scored) < 2 or not leaking:
        return ""
    last, final = leaking[-1], scored[-1]
    if last.round == final.round:
        return (
            f" Images still leak at the last audited round, {final.round}"
            f" ({_percent(final.accuracy)} when attacked)."
        )
    after = [r for r in scored if r.round > last.round]
    images = sum(r.images for r in after)
    return (
        f" Nothing was recognisable after round {last.round} ({_percent(last.accuracy)});"
        f" none of the {images} images of rounds {after[0].round}–{final.round}"
        f" ({_percent(final.accuracy)} at the end) was."
    )


def judge(
    attack: str, defense: str, rounds: Sequence[AuditedRound], iterations: int | None
) -> Verdict:
    """The verdict on one (attack, defense) from its audited rounds."""
    statuses: Counter[str] = Counter()
    for r in rounds:
        statuses.update(r.statuses)
    updates = sum(r.updates for r in rounds)
    images = sum(r.images for r in rounds)
    if statuses and set(statuses) == {"impossible"}:
        text = (
            f"Secure aggregation hid every client's update in the {len(rounds)} audited"
            " rounds: the server saw only their sum, and nothing was attacked."
        )
        return Verdict(attack, defense, text, None)
    if not images:
        text = f"No update could be scored.{_unfinished(statuses)}"
        return Verdict(attack, defense, text, None)
    leaking = sum(r.leaking_updates for r in rounds)
    recognised = sum(r.recognisable for r in rounds)
    subject = (
        "the transformed images the clients trained on"
        if attack.endswith(TRAINED_ON)
        else "the private images"
    )
    if recognised:
        who = "Without a defense, in" if defense == "none" else "In"
        text = (
            f"{who} {leaking} of {updates} audited updates {subject} were recovered"
            f" recognisably ({recognised} of {images} images with SSIM ≥ {RECOGNISABLE_SSIM})."
        )
        text += (
            f" The updates are unprotected against {attack}."
            if defense == "none"
            else f" {defense} does not protect against {attack}."
        )
        text += _trend(rounds) + _unfinished(statuses)
        return Verdict(attack, defense, text, True)
    best = max((v for r in rounds for v in r.ssim), default=float("nan"))
    budget = f"{iterations} iterations" if iterations else "its budget"
    text = (
        f"None of {subject} was recovered recognisably in the {updates} audited updates"
        f" ({images} images; best SSIM {best:.2f}). That is what {attack} does within"
        f" {budget}; a tuned or stronger attack may recover more, so this does not show"
        f" that {'the updates are safe' if defense == 'none' else defense + ' protects'}."
    )
    return Verdict(attack, defense, text + _unfinished(statuses), False)


def verdicts(run: RunRecords) -> list[Verdict]:
    """Every (defense, attack) of a run, defenses in record order."""
    iterations: dict[str, int] = {}
    for record in run.leakage:
        if record.get("status") == "ok" and isinstance(record.get("iterations"), int):
            name = str(record.get("attack"))
            iterations[name] = max(iterations.get(name, 0), record["iterations"])
    found = run.audited_rounds()
    ordered = sorted(found, key=lambda key: (key[1], key[0]))
    return [
        judge(
            attack,
            defense,
            found[(attack, defense)],
            iterations.get(attack.removesuffix(TRAINED_ON)),
        )
        for attack, defense in ordered
    ]
