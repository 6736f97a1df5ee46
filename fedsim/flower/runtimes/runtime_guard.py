"""What ends a run whose runtime fails, instead of leaving it hanging.

Flower's simulation engine runs the ServerApp in a thread of its own. When the engine
crashes (Ray refuses to start, the cluster goes away, Ctrl-C), that thread is left
waiting for replies that never come — up to the round's timeout, an hour by default —
and, not being a daemon, keeps the process alive. `GuardedGrid` waits for replies in
short polls and raises `RuntimeStopped` as soon as the launcher calls `stop()`, so the
ServerApp unwinds through its `finally` (submitted audits recorded, checkpoints
pruned) and the process can exit.

A ClientApp whose worker process dies (killed, out of memory, its node lost) comes
back as an error reply naming a `ray.exceptions` class, and Flower goes on sending
clients to the dead actor. That is a failure of the runtime, not of one client:
`GuardedGrid` raises `RuntimeCrashed` with Ray's reason, and the run ends with what it
has recorded (`fedsim run --resume` continues it once the cluster is healthy).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from fedsim.strategies.passthrough import PassThroughGrid

POLL_SECONDS = 0.1


class RuntimeCrashed(RuntimeError):
    """The simulation runtime failed; the message is one line naming the cause."""


class RuntimeStopped(RuntimeCrashed):
    """The launcher stopped the ServerApp because the runtime around it ended."""


def one_line(error: BaseException) -> str:
    """`Type: message` of the innermost cause of `error`, on one line (Flower and Ray
    wrap the error that matters in one or two generic ones)."""
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = error.__cause__ or error.__context__
        if inner is None or isinstance(error, RuntimeCrashed):
            break
        error = inner
    if isinstance(error, RuntimeCrashed):
        return str(error)
    text = (str(error).strip().splitlines() or [""])[0].strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


_RAY_ERROR = re.compile(r"ray\.exceptions\.(\w+)")


def lost_worker(reply: Message) -> str | None:
    """Why the runtime lost the worker that should have answered, or None.

    Flower turns an exception raised while it fetched a client's result into an error
    reply whose reason starts with the exception's class; a ClientApp's own exception
    has the code CLIENT_APP_RAISED_EXCEPTION (and is the client's failure, recorded as
    such), a dead actor, worker or node the code UNKNOWN and a `ray.exceptions` class.
    """
    if not reply.has_error() or reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION:
        return None
    reason = reply.error.reason or ""
    match = _RAY_ERROR.search(reason)
    if match is None:
        return None
    detail = reason[match.end() :].lstrip("'>:<").strip()
    first = (detail.splitlines() or [""])[0].strip().rstrip("'>")
    return f"{match.group(1)}: {first}" if first else match.group(1)


class RuntimeGuard:
    """Shared by the launcher and its ServerApp: the stop signal and the end of the app."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._finished = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def finished(self) -> None:
        """Called by the ServerApp as it returns or raises."""
        self._finished.set()

    def wait_finished(self, timeout: float) -> bool:
        return self._finished.wait(timeout)

    def check(self) -> None:
        if self._stop.is_set():
            raise RuntimeStopped("stopped: the simulation runtime ended")


class GuardedGrid(PassThroughGrid):
    """`grid`, with replies collected in short polls that end when `guard` stops and a
    lost worker's reply raised as `RuntimeCrashed`."""

    def __init__(self, grid: Grid, guard: RuntimeGuard) -> None:
        super().__init__(grid)
        self.guard = guard

    def get_node_ids(self) -> Iterable[int]:
        self.guard.check()
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        self.guard.check()
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.grid.pull_messages(message_ids))
        for reply in replies:
            reason = lost_worker(reply)
            if reason is not None:
                raise RuntimeCrashed(f"the simulation runtime lost a client's worker: {reason}")
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        waiting = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting:
            self.guard.check()
            pulled = self.pull_messages(waiting)
            replies.extend(pulled)
            waiting.difference_update(m.metadata.reply_to_message_id for m in pulled)
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(POLL_SECONDS)
        return replies
