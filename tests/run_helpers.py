"""Helpers for tests that interrupt a federation in process."""

from __future__ import annotations


class StopAfter:
    """A run observer that interrupts the run, as Ctrl-C would, once round `last` is recorded."""

    def __init__(self, last: int) -> None:
        self.last = last

    def round_finished(self, record: dict) -> None:
        if record["round"] == self.last:
            raise KeyboardInterrupt

    def round_audited(self, server_round: int, records: list[dict]) -> None:
        pass
