"""Fault injection for tests: make chosen clients fail in chosen rounds.

Off unless the environment variable `FEDSIM_FAULTS` is set (it is not a scenario
setting, so a shared scenario file cannot switch it on). Its value is a list of
`ROUND:CLIENT:KIND` entries separated by ';', where ROUND and CLIENT are numbers or
`*`, and KIND is one of

    raise          the client raises (an error reply)
    exit           the process running the client exits at once (os._exit): under Ray
                   its worker dies, a failure of the runtime that ends the run; on the
                   in-process engine that process is fedsim itself (like SIGKILL)
    sleep=SECONDS  the client waits before training (a timeout, given round_timeout)
    nan | inf      the client sends its update with one NaN / +inf value
    shape          the client sends a first array of the wrong shape
    weight         the client reports num-examples = 0

e.g. `FEDSIM_FAULTS="2:1:raise;3:*:sleep=5"`. The fedsim ClientApp applies the plan
as a train mod (`inject_faults`), in whichever process runs the client (Ray workers
and in-process clients inherit the environment). Under SecAgg+ the faults apply to
the training message (the collect stage: a `raise` is a client dropping out after the
key exchange); `nan`, `inf`, `shape` and `weight` do nothing there, since the
weights leave the client masked.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, Context, Message, MetricRecord

from fedsim.errors import ConfigError
from fedsim.message_keys import LEGACY_FIT_CONFIG, PARTITION_KEY

FAULTS_ENV = "FEDSIM_FAULTS"
KINDS = ("raise", "exit", "sleep", "nan", "inf", "shape", "weight")
EXIT_STATUS = 70
"""Exit status of a process the `exit` fault ends."""


class InjectedFault(RuntimeError):
    """Raised by a client the fault plan tells to fail."""


@dataclass(frozen=True)
class Fault:
    server_round: int | None
    client: int | None
    kind: str
    seconds: float = 0.0

    def applies(self, server_round: int, client: int) -> bool:
        return self.server_round in (None, server_round) and self.client in (None, client)


def parse_faults(text: str) -> tuple[Fault, ...]:
    """The plan in `text`; ConfigError naming the bad entry otherwise."""
    faults = []
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        try:
            round_text, client_text, kind_text = entry.split(":")
            kind, _, argument = kind_text.partition("=")
            if kind not in KINDS or (kind == "sleep") != bool(argument):
                raise ValueError
            faults.append(
                Fault(
                    None if round_text == "*" else int(round_text),
                    None if client_text == "*" else int(client_text),
                    kind,
                    float(argument) if argument else 0.0,
                )
            )
        except ValueError:
            raise ConfigError(
                f"{FAULTS_ENV}: bad entry {entry!r}; expected ROUND:CLIENT:KIND with KIND one of"
                f" {', '.join(KINDS)} (sleep=SECONDS)"
            ) from None
    return tuple(faults)


@functools.lru_cache(maxsize=4)
def _cached(text: str) -> tuple[Fault, ...]:
    return parse_faults(text)


def active_faults() -> tuple[Fault, ...]:
    """The plan in the environment (empty when `FEDSIM_FAULTS` is unset)."""
    return _cached(os.environ.get(FAULTS_ENV, ""))


def inject_faults(message: Message, context: Context, call_next) -> Message:  # noqa: ANN001
    """Train mod: applies the faults of this (round, client) around the real ClientApp."""
    plan = active_faults()
    if not plan:
        return call_next(message, context)
    config = message.content.config_records.get("config") or message.content.config_records.get(
        LEGACY_FIT_CONFIG
    )
    if config is None:  # SecAgg+ key-exchange and unmask messages: no training to fault
        return call_next(message, context)
    server_round = int(config["server-round"])
    client = int(context.node_config[PARTITION_KEY])
    faults = [f for f in plan if f.applies(server_round, client)]
    for fault in faults:
        if fault.kind == "raise":
            raise InjectedFault(f"injected fault in round {server_round}, client {client}")
        if fault.kind == "exit":
            os._exit(EXIT_STATUS)
        if fault.kind == "sleep":
            time.sleep(fault.seconds)
    reply = call_next(message, context)
    for fault in faults:
        _corrupt(reply, fault.kind)
    return reply


def _corrupt(reply: Message, kind: str) -> None:
    if kind not in ("nan", "inf", "shape", "weight") or reply.has_error():
        return
    if kind == "weight":
        metrics = next(iter(reply.content.metric_records.values()))
        reply.content.metric_records["metrics"] = MetricRecord({**dict(metrics), "num-examples": 0})
        return
    arrays = next(iter(reply.content.array_records.values()), None)
    if not arrays:
        return  # SecAgg+ sent the weights masked; nothing in the clear to corrupt
    key = next(iter(arrays))
    values = arrays[key].numpy().copy()
    if kind == "shape":
        values = np.zeros((values.size + 1,), dtype=values.dtype)
    else:
        values.flat[0] = np.nan if kind == "nan" else np.inf
    arrays[key] = Array(values)
