"""One leakage record read the way every judgement reads it.

A record *carries scores* when it holds per-image SSIMs, per-row errors or their means,
whatever its status: an attack that stopped at its time budget returned its best
candidate so far, and what that candidate shows is leakage found. A record without
scores is one of three things:

- a **hole** (`failed`, `oom`, `rejected`, `refused`, or any status not known to hold
  a reconstruction): the update should have been attacked and was not, so nothing can
  be said about it;
- **hidden** (`impossible`): secure aggregation kept the client's update from the server;
- **unscored** (`ok` or `timeout` without ground truth): the attack ran, but nothing
  says what the private data was (a user's own Flower app without proxy data).

Where a defense transforms the batch before training (ATS), a record is also scored
against what the client trained on; that is a series of its own (`trained_on`).
Records of proxy audits (`"proxy": true`, clients the server simulated on data it
holds; one series per simulated batch size) and of the aggregate of a secure-aggregation
round (`aggregate_of`: the clients summed) are series of their own too. Every reading
also carries what the record says of the update's class histogram (`label_counts`,
`fedsim.judgement.labels`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fedsim.judgement.criteria import image_recovered, row_recovered
from fedsim.judgement.labels import LabelReading, read_label_counts

ATTACKED = ("ok", "timeout")
"""Statuses of records whose attack returned a reconstruction."""

HIDDEN = "impossible"

Kind = Literal["scored", "hole", "hidden", "unscored"]
Domain = Literal["images", "rows"]


@dataclass(frozen=True)
class Series:
    """Which reconstructions of which attack under which defense, scored against what."""

    attack: str
    defense: str
    trained_on: bool = False
    """Scored against the transformed batch the client trained on (ATS)."""
    proxy: bool = False
    """A proxy audit: a client the server simulated on data it holds."""
    aggregate: bool = False
    """The aggregate of a secure-aggregation round, attacked as one update."""
    batch_size: int | None = None
    """Proxy series only: the simulated clients' batch size (a proxy audit may run at
    several, to show where leakage stops as the batch grows)."""

    @property
    def label(self) -> str:
        """`bayes`, `bayes vs trained-on`, `bayes (proxy, batch 16)`, `bayes on the aggregate`."""
        proxy = "" if not self.proxy else " (proxy)"
        if self.proxy and self.batch_size is not None:
            proxy = f" (proxy, batch {self.batch_size})"
        return (
            self.attack
            + (" on the aggregate" if self.aggregate else "")
            + (" vs trained-on" if self.trained_on else "")
            + proxy
        )


@dataclass(frozen=True)
class Reading:
    """What one record shows in one series."""

    series: Series
    round: int
    status: str
    kind: Kind
    domain: Domain | None = None
    recovered: tuple[bool, ...] = ()
    """Per scored item (image or row): recovered by `fedsim.judgement.criteria`."""
    psnr: tuple[float, ...] = ()
    ssim: tuple[float, ...] = ()
    mse: tuple[float, ...] = ()
    categorical: tuple[float, ...] = ()
    iterations: int | None = None
    planned: int | None = None
    """The attack's iteration budget, where the record says it."""
    seconds_budget: float | None = None
    message: str = ""
    approximations: tuple[str, ...] = ()
    """What the attack modelled only approximately (the record's `approximations`)."""
    labels: LabelReading | None = None
    """The class histogram the update gives away, where the record carries one."""

    @property
    def short(self) -> bool:
        """Stopped by its time budget before its iteration budget was spent."""
        if self.status != "timeout":
            return False
        return self.planned is None or self.iterations is None or self.iterations < self.planned


def _floats(values: Any) -> tuple[float, ...]:
    if not isinstance(values, Sequence) or isinstance(values, str):
        return ()
    return tuple(float(v) for v in values if isinstance(v, int | float))


def _one(value: Any) -> tuple[float, ...]:
    return (float(value),) if isinstance(value, int | float) else ()


def _guess(record: Mapping[str, Any], name: str, count: int) -> tuple[float | None, ...]:
    values = _floats(record.get(name))
    return values if len(values) == count else (None,) * count


def _images(record: Mapping[str, Any], suffix: str) -> tuple[tuple[Any, ...], ...] | None:
    """(PSNR, SSIM, recovered) per image; one mean pair where the record has no lists."""
    ssim = _floats(record.get(f"ssim{suffix}_images")) or _floats(
        record.get("ssim_images") if not suffix else None
    )
    psnr = _floats(record.get(f"psnr{suffix}_images")) or _floats(
        record.get("psnr_images") if not suffix else None
    )
    if not ssim:
        ssim, psnr = _one(record.get(f"ssim{suffix}")), _one(record.get(f"psnr{suffix}"))
    if not ssim and not psnr:
        return None
    guesses = _guess(record, f"ssim_guess{suffix}_images", len(ssim))
    recovered = tuple(image_recovered(s, g) for s, g in zip(ssim, guesses, strict=True))
    return psnr, ssim, recovered


def _rows(record: Mapping[str, Any]) -> tuple[tuple[Any, ...], ...] | None:
    """(MSE, categorical share right, recovered) per row; one mean where no lists."""
    mse = _floats(record.get("mse_rows")) or _one(record.get("mse"))
    if not mse:
        return None
    categorical = _floats(record.get("categorical_rows")) or _one(
        record.get("categorical_accuracy")
    )
    per_row = categorical if len(categorical) == len(mse) else (None,) * len(mse)
    guess_mse = _guess(record, "mse_guess_rows", len(mse))
    guess_cat = _guess(record, "categorical_guess_rows", len(mse))
    recovered = tuple(
        row_recovered(m, c, gm, gc)
        for m, c, gm, gc in zip(mse, per_row, guess_mse, guess_cat, strict=True)
    )
    return mse, categorical, recovered


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def read_record(record: Mapping[str, Any]) -> list[Reading]:
    """The readings of one leakage record: one per series it is scored in, or one saying
    why it holds no scores. Records without an integer round are not leakage lines."""
    server_round = _int(record.get("round"))
    if server_round is None:
        return []
    status = str(record.get("status"))
    proxy = bool(record.get("proxy", False))
    base = Series(
        attack=str(record.get("attack")),
        defense=str(record.get("defense", "none")),
        proxy=proxy,
        aggregate=bool(record.get("aggregate_of")),
        batch_size=_int(record.get("batch_size")) if proxy else None,
    )
    budget = record.get("budget") if isinstance(record.get("budget"), Mapping) else {}
    common = {
        "round": server_round,
        "status": status,
        "iterations": _int(record.get("iterations")),
        "planned": _int(budget.get("iterations")),
        "seconds_budget": budget.get("seconds"),
        "message": str(record.get("message") or ""),
        "approximations": tuple(str(a) for a in record.get("approximations") or ()),
        "labels": read_label_counts(record.get("label_counts")),
    }
    readings = []
    for trained_on, suffix in ((False, ""), (True, "_trained_on")):
        series = dataclasses.replace(base, trained_on=trained_on)
        images = _images(record, suffix)
        rows = None if trained_on or images else _rows(record)
        if images is not None:
            psnr, ssim, recovered = images
            readings.append(
                Reading(series, kind="scored", domain="images", psnr=psnr, ssim=ssim,
                        recovered=recovered, **common)
            )  # fmt: skip
        elif rows is not None:
            mse, categorical, recovered = rows
            readings.append(
                Reading(series, kind="scored", domain="rows", mse=mse, categorical=categorical,
                        recovered=recovered, **common)
            )  # fmt: skip
    if readings:
        return readings
    kind: Kind = "hidden" if status == HIDDEN else "unscored" if status in ATTACKED else "hole"
    return [Reading(base, kind=kind, **common)]
