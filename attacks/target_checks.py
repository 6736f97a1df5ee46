"""What an attack checks of its targets: the capabilities the threat model grants, and
which targets may be batched into one optimisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from attacks.errors import AttackError
from attacks.target import AttackTarget, ThreatModel

Capability = Literal["labels", "bn_stats", "mechanism", "local_hparams"]

GRANTS: dict[str, str] = {
    "labels": "labels_known",
    "bn_stats": "bn_stats_known",
    "mechanism": "mechanism_known",
    "local_hparams": "local_hparams_known",
}
"""Capability an attack `needs` → the `ThreatModel` flag that grants it."""


def missing_capabilities(needs: frozenset[str], threat: ThreatModel) -> list[str]:
    """The capabilities in `needs` that `threat` does not grant, sorted."""
    return sorted(c for c in needs if not getattr(threat, GRANTS[c]))


def check_shared(targets: Sequence[AttackTarget]) -> None:
    """Refuse targets that do not share model, start parameters, shapes, protocol and threat."""
    first = targets[0]
    ref = list(first.model.parameters())
    for t in targets[1:]:
        same = (
            type(t.model) is type(first.model)
            and t.batch_size == first.batch_size
            and tuple(t.input_shape) == tuple(first.input_shape)
            and t.num_classes == first.num_classes
            and t.protocol == first.protocol
            and t.threat == first.threat
            and t.bn_train_mode == first.bn_train_mode
            and t.domain == first.domain
        )
        params = list(t.model.parameters())
        if (
            not same
            or len(params) != len(ref)
            or any(not torch.equal(a, b) for a, b in zip(params, ref, strict=True))
        ):
            raise AttackError(
                "targets batched in one call must share model, start parameters, batch size, "
                "input shape and domain, protocol and threat model"
            )
