"""Measured reconstruction against its bound: a share above the bound is a bug.

Under DP-SGD the informed claim of each round bounds how often any attack can make a
private image recognisable (`defenses.reconstruction`). Every round the auditor scores,
each attack's recognisable images (pooled over the round's audited clients) are set
beside that bound. fedsim's attacks are never given the clients' noise, so they are
adversaries the bound covers; a count the bound makes improbable (one-sided binomial
tail below `P_VALUE`) means the bound, the accounting or the scoring is wrong: it is
logged as a warning and recorded (`reconstruction_check` on each of those records).

With B images per update the attack returns B reconstructions and scoring matches them
to the originals with the ground truth, i.e. it keeps the best of B guesses for each
image. The baseline of B blind guesses is at most B·κ, so the bound checked is the
bound at min(B·κ, 1); for B = 1 it is the claim's own.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from defenses.reconstruction import ReconstructionBound, gdp_bound
from fedsim.metrics.recognisable import is_recognisable

logger = logging.getLogger("fedsim.auditor")

P_VALUE = 1e-3
"""A count whose chance under the bound is below this is reported as exceeding it."""


def batch_bound(bound: ReconstructionBound, batch_size: int) -> float | None:
    """The bound on the best of `batch_size` matched guesses (module note); None if unknown."""
    if bound.bound is None or bound.kappa is None:
        return None
    if batch_size == 1:
        return bound.bound
    if bound.mu is None:
        return None
    return gdp_bound(min(batch_size * bound.kappa, 1 - 1e-12), bound.mu)


def binomial_tail(successes: int, trials: int, p: float) -> float:
    """P[X ≥ successes] for X ~ Binomial(trials, p)."""
    if successes <= 0:
        return 1.0
    return min(
        1.0,
        sum(
            math.comb(trials, k) * p**k * (1 - p) ** (trials - k)
            for k in range(successes, trials + 1)
        ),
    )


def check_round(
    server_round: int,
    records: Sequence[dict[str, Any]],
    bound: ReconstructionBound | None,
    batch_size: int,
) -> None:
    """Add `reconstruction_check` to every scored record of the round and log a warning for
    each attack whose recognisable count the bound makes improbable."""
    if bound is None:
        return
    limit = batch_bound(bound, batch_size)
    if limit is None:
        return
    by_attack: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("ssim_images") is not None:
            by_attack[record["attack"]].append(record)
    for attack, scored in by_attack.items():
        flags = [is_recognisable(v) for r in scored for v in r["ssim_images"]]
        hits, images = sum(flags), len(flags)
        p_value = binomial_tail(hits, images, limit)
        check = {
            "bound": limit,
            "recognisable": hits,
            "images": images,
            "p_value": p_value,
            "exceeded": p_value < P_VALUE,
        }
        for record in scored:
            record["reconstruction_check"] = check
        if check["exceeded"]:
            logger.warning(
                "round %d: %s made %d of %d images recognisable, above the reconstruction "
                "bound %.3g of the informed DP claim (chance %.1e): this is a bug in the "
                "bound, the accounting or the scoring",
                server_round,
                attack,
                hits,
                images,
                limit,
                p_value,
            )
