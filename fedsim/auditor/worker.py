"""Runs audit jobs in order, in the calling thread or in one background thread.

Under `audit.worker = "ray"` the attacks themselves run as Ray tasks; the jobs here
wait for their results and record them, in order.

With a thread the federation's next round need not wait for this round's attacks;
`drain()` waits for every job, so all results are recorded before a run ends. At most
`max_pending` jobs wait or run at once: a federation faster than its attacks is held
back at `submit` rather than queueing rounds of updates without bound.

The thread runs at a lower scheduling priority (nice +`NICENESS`, where the system
allows it): attacks then take the CPU the federation leaves idle instead of sharing it
evenly with the clients' training, and the worker threads torch starts for the attacks
inherit that priority.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

logger = logging.getLogger(__name__)

NICENESS = 10
"""How much lower the audit thread's priority is than the federation's (Unix nice)."""


def _lower_priority() -> None:
    """Make the calling thread nicer by `NICENESS` (Linux: per thread); ignored elsewhere."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + NICENESS)
    except (AttributeError, OSError):  # no per-thread priority on this system
        pass


class AuditWorker:
    """FIFO executor of zero-argument jobs; a job's exception is logged, never raised."""

    def __init__(self, threaded: bool = True, max_pending: int = 2) -> None:
        self.max_pending = max(1, max_pending)
        self._pool = (
            ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="fedsim-audit", initializer=_lower_priority
            )
            if threaded
            else None
        )
        self._pending: list[Future[None]] = []

    def submit(self, job: Callable[[], None]) -> None:
        if self._pool is None:
            self._guarded(job)
            return
        self.wait_for_room()
        self._pending.append(self._pool.submit(self._guarded, job))

    def wait_for_room(self) -> None:
        """Block until fewer than `max_pending` jobs wait or run."""
        self._pending = [f for f in self._pending if not f.done()]
        while len(self._pending) >= self.max_pending:
            self._pending.pop(0).result()

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet finished."""
        return sum(not f.done() for f in self._pending)

    @staticmethod
    def _guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:  # noqa: BLE001 - recorded by the job itself where it can be
            logger.exception("audit job failed")

    def drain(self) -> None:
        """Block until every submitted job has finished."""
        for future in self._pending:
            future.result()
        self._pending.clear()

    def close(self) -> None:
        self.drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
