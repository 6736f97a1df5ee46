"""What one cell of a scenario run holds: the scores, and what tuning chose."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedsim.attack_matrix.cells import CellResult
from fedsim.attack_matrix.trained_states import TrainedState


@dataclass
class ScenarioCell:
    """One attack × defense (× trained state) of a scenario run, with what tuning chose."""

    column: str
    """The attack as written in the scenario (the table's column)."""
    result: CellResult | None
    """None until the scored run of the cell has finished."""
    iterations: int
    restarts: int
    tuned: dict[str, Any] | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    tuning_seconds: float = 0.0
    state: TrainedState | None = None
    """The trained state attacked (`[model.training]`); None: the untrained model."""

    @property
    def row(self) -> str:
        """The table row: the defense, after the state's step where states are attacked."""
        defense = self.result.defense
        return defense if self.state is None else f"step {self.state.step}: {defense}"

    def to_json(self) -> dict[str, Any]:
        return {
            **self.result.to_json(),
            "state": None if self.state is None else self.state.to_json(),
            "requested": self.column,
            "budget": {"iterations": self.iterations, "restarts": self.restarts},
            "tuned": self.tuned,
            "trials": self.trials,
            "tuning_seconds": self.tuning_seconds,
        }
