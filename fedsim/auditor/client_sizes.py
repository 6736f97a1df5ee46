"""A client like the declared one, holding fewer examples: what proxy audits and the cost
probe simulate at batch sizes below the declared one.

A client that trains `local_steps` steps in mini-batches of b over its B examples makes
E = local_steps / (passes of B) epochs. The same client with p examples makes the same
E epochs in mini-batches of min(b, p), with the same optimiser and the first of the
declared per-step learning rates (exact for a scheduler stepped per step; for one stepped
per epoch the rates of the first steps stand in). FedSGD clients send one gradient of
their batch at any size. The clients' defense states its mechanism at p as at B.
"""

from __future__ import annotations

import dataclasses
import math

from attacks.target import Protocol
from defenses.base import stated_mechanism
from fedsim.auditor.setup import AuditSetup


def passes(size: int, chunk: int | None, last_batch: str) -> int:
    """Mini-batches in one pass over `size` examples (at least one)."""
    chunk = min(chunk or size, size)
    if last_batch == "drop":
        return max(1, size // chunk)
    return math.ceil(size / chunk)


def scaled_protocol(protocol: Protocol, declared: int, size: int) -> Protocol:
    """The protocol of a client like the declared one (batch `declared`) holding `size`."""
    if protocol.kind != "fedavg" or size == declared or protocol.local_batch_size is None:
        return protocol
    chunk = protocol.local_batch_size
    epochs = protocol.local_steps / passes(declared, chunk, protocol.last_batch)
    small = min(chunk, size)
    steps = max(1, round(epochs * passes(size, small, protocol.last_batch)))
    schedule = None if protocol.lr_schedule is None else protocol.lr_schedule[:steps]
    if schedule is not None and len(schedule) < steps:
        schedule = schedule + (schedule[-1],) * (steps - len(schedule))
    return dataclasses.replace(
        protocol, local_steps=steps, local_batch_size=small, lr_schedule=schedule
    )


def smaller_client(setup: AuditSetup, size: int) -> AuditSetup:
    """`setup` for a client like the declared one holding `size` examples."""
    if size == setup.batch_size:
        return setup
    protocol = scaled_protocol(setup.protocol, setup.batch_size, size)
    mechanism, refusal = setup.mechanism, setup.mechanism_refusal
    if setup.defense is not None and setup.mechanism_refusal is None:
        stated, refusal = stated_mechanism(setup.defense, size, protocol)
        mechanism = stated if stated is not None else mechanism
    return dataclasses.replace(
        setup,
        batch_size=size,
        protocol=protocol,
        mechanism=mechanism,
        mechanism_refusal=refusal,
    )


def samples_processed(protocol: Protocol, size: int) -> tuple[int, int]:
    """(local steps, examples those steps go through, counting a short last mini-batch as
    full) of a client holding `size`: what an attack's model of its update costs."""
    if protocol.kind != "fedavg":
        return 1, size
    chunk = min(protocol.local_batch_size or size, size)
    return protocol.local_steps, protocol.local_steps * chunk
