"""Update-stage defenses as Flower client-side mods (flwr 1.42 Message API).

    from flwr.clientapp import ClientApp
    from defenses.flower import mod
    app = ClientApp(mods=[mod("gaussian", sigma=0.1)])   # noise from OS entropy

The mod calls the app, and on a reply to a TRAIN message changes the arrays: by
default the reply carries new weights (FedAvg), so the defense applies to the
update — delta = reply − sent — and the reply becomes sent + defended delta. With
``update="reply"`` the reply's arrays are the update itself (e.g. a gradient) and
are defended directly. Other message types pass through untouched.

Randomness: every draw (noise, mask) comes from a generator the server cannot know.
By default it is seeded afresh for every reply from the operating system's entropy
(`secrets`), so a curious server that knows the scenario, the node ids, the rounds
and this mod's defaults still cannot regenerate the noise or the mask and subtract it.
A fixed ``seed`` is for tests only: the generator is then derived from (seed,
destination node, group id — the server round in Flower's strategies), values the
server chooses itself, so **a known seed voids the defense**; the mod warns when one
is given (`KnownSeedWarning`).

Flower is imported here only, lazily: `defenses` itself needs torch alone.
"""

from __future__ import annotations

import hashlib
import secrets
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from defenses.base import Defense
from defenses.errors import DefenseError

if TYPE_CHECKING:
    from flwr.app import ArrayRecord, Context, Message

Mod = Callable[["Message", "Context", Callable[["Message", "Context"], "Message"]], "Message"]


def _update_defense(spec: str | Defense, params: dict[str, Any]) -> Defense:
    from defenses.registry import build_defense, parse_defense, update_stage_defenses

    if isinstance(spec, Defense):
        defense = spec
    elif params:
        defense = build_defense(spec, **params)
    else:
        defense = parse_defense(spec)
    if not defense.stages <= {"update"}:
        raise DefenseError(
            f"flower mod: {defense.spec!r} acts at the {', '.join(sorted(defense.stages))} stage; "
            f"a mod sees only the update — accepted: {', '.join(update_stage_defenses())}"
        )
    return defense


def _array_record(content: Any) -> tuple[str, ArrayRecord]:
    records = list(content.array_records.items())
    if len(records) != 1:
        names = ", ".join(k for k, _ in records) or "none"
        raise DefenseError(f"flower mod: expected one ArrayRecord in the message, found: {names}")
    return records[0]


class KnownSeedWarning(UserWarning):
    """A defense mod was given a fixed seed: whoever knows it can undo the defense."""


def _generator(seed: int | None, message: Message) -> torch.Generator:
    """OS entropy when `seed` is None; else derived from (seed, node, group) — tests only."""
    generator = torch.Generator()
    if seed is None:
        return generator.manual_seed(secrets.randbits(63))
    meta = message.metadata
    key = f"{seed}:{meta.dst_node_id}:{meta.group_id}".encode()
    generator.manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & (2**63 - 1))
    return generator


def mod(
    defense: str | Defense,
    seed: int | None = None,
    update: Literal["delta", "reply"] = "delta",
    **params: Any,
) -> Mod:
    """A Flower client mod applying the update-stage `defense` to every train reply.

    `defense` is a name with `params` (``mod("gaussian", sigma=0.1)``), a spec string
    (``mod("prune+gaussian:p=0.5,sigma=0.1")``) or a Defense object. `seed` None (the
    default, and the only setting to deploy) draws every reply's randomness from the
    operating system's entropy. An integer seed makes the draws reproducible for tests,
    and voids the defense against anyone who knows it: the server knows the node id and
    the round it is derived with, so it can regenerate the noise and subtract it.
    """
    if seed is not None:
        warnings.warn(
            f"defense mod seeded with {seed}: a server that knows the seed regenerates the "
            "noise and masks and undoes the defense; use a fixed seed for tests only",
            KnownSeedWarning,
            stacklevel=2,
        )
    chosen = _update_defense(defense, params)
    if update not in ("delta", "reply"):
        raise DefenseError(
            f"flower mod: parameter 'update' must be one of delta, reply, got {update!r}"
        )

    def defense_mod(
        message: Message, context: Context, call_next: Callable[[Message, Context], Message]
    ) -> Message:
        from flwr.app import Array, ArrayRecord, MessageType

        if message.metadata.message_type != MessageType.TRAIN:
            return call_next(message, context)
        sent = None
        if update == "delta":
            _, sent_record = _array_record(message.content)
            sent = [np.asarray(a.numpy()) for a in sent_record.values()]
        reply = call_next(message, context)
        if reply.has_error():
            return reply
        key, record = _array_record(reply.content)
        names = list(record.keys())
        arrays = [np.asarray(a.numpy()) for a in record.values()]
        if sent is not None and [a.shape for a in sent] != [a.shape for a in arrays]:
            raise DefenseError(
                "flower mod: reply arrays do not match the sent arrays in number or shape"
            )
        base = sent if sent is not None else [np.zeros_like(a) for a in arrays]
        # Only floating arrays are an update (integer buffers such as batch counters pass as sent).
        floating = [i for i, a in enumerate(arrays) if np.issubdtype(a.dtype, np.floating)]
        delta = [torch.from_numpy(np.asarray(arrays[i] - base[i])) for i in floating]
        defended = chosen.transform_update(delta, _generator(seed, message))
        out = list(arrays)
        for i, d in zip(floating, defended, strict=True):
            out[i] = (base[i] + d.numpy()).astype(arrays[i].dtype, copy=False)
        new = {name: Array(np.ascontiguousarray(a)) for name, a in zip(names, out, strict=True)}
        reply.content[key] = ArrayRecord(array_dict=new)
        return reply

    defense_mod.__name__ = f"{chosen.name}_mod"
    defense_mod.__doc__ = f"Flower client mod: {chosen.spec} on the update of every train reply."
    return defense_mod
