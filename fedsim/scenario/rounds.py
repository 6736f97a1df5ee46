"""Which rounds a setting selects (`audit.rounds`, `federation.keep_checkpoints`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from fedsim.scenario.fields import PositiveInt, Section


def log_mantissas(per_decade: int) -> frozenset[int]:
    """The one-digit leading numbers of `per_decade` log-spaced rounds in each decade:
    10^(i / per_decade) rounded, so 3 gives {1, 2, 5} (1, 2, 5, 10, 20, 50, …)."""
    return frozenset(round(10 ** (i / per_decade)) for i in range(per_decade))


class RoundSelection(Section):
    """Which rounds are selected: at most one of `every`, `first`, `rounds`, `log`
    (none: every round).

    `log = k` picks about k rounds per decade, at round numbers with one significant
    digit: 3 gives 1, 2, 5, 10, 20, 50, 100, 200, …; 1 gives 1, 10, 100, …; 2 gives
    1, 3, 10, 30, …. A whole run from its first rounds to a converged model is then
    covered by a few rounds per decade. (Not `defenses.accounting`'s round schedule,
    which says how a DP-SGD round samples its steps.)
    """

    every: PositiveInt | None = None
    first: PositiveInt | None = None
    rounds: list[PositiveInt] | None = None
    log: Annotated[int, Field(ge=1, le=9)] | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> RoundSelection:
        given = [k for k in ("every", "first", "rounds", "log") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(
                f"give at most one of every, first, rounds, log (got {', '.join(given)})"
            )
        return self

    def selects(self, server_round: int) -> bool:
        if self.every is not None:
            return (server_round - 1) % self.every == 0
        if self.first is not None:
            return server_round <= self.first
        if self.rounds is not None:
            return server_round in self.rounds
        if self.log is not None:
            if server_round < 1:
                return False
            leading = server_round
            while leading % 10 == 0:
                leading //= 10
            return leading in log_mantissas(self.log)
        return True

    def through(self, last: int, first: int = 1) -> list[int]:
        """The selected rounds from `first` to `last`."""
        return [r for r in range(first, last + 1) if self.selects(r)]
