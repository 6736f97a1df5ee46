"""The federation of a scenario: its clients and rounds, the server's strategy, SecAgg+."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from fedsim.scenario.fields import PositiveFloat, PositiveInt, Section
from fedsim.scenario.rounds import RoundSelection
from fedsim.scenario.secagg import SecAggConfig

STRATEGY_OPTIONS: dict[str, tuple[str, ...]] = {
    "fedavg": (),
    "fedadagrad": ("eta", "tau"),
    "fedadam": ("eta", "beta_1", "beta_2", "tau"),
    "fedyogi": ("eta", "beta_1", "beta_2", "tau"),
}
"""Each server strategy a scenario can name, and the options it takes."""

Decay = Annotated[float, Field(ge=0, lt=1)]


class StrategyConfig(Section):
    """How the server turns a round's replies into the next global model.

    `fedavg`: Flower's FedAvg, the mean of the clients' weights by their sample counts.
    `fedadagrad`, `fedadam`, `fedyogi`: Flower's adaptive server optimisers (Reddi et
    al., "Adaptive Federated Optimization", ICLR 2021), which treat FedAvg's mean minus
    the current model as a pseudo-gradient and step with server learning rate `eta`,
    moments decaying by `beta_1` and `beta_2`, and adaptivity `tau`; they keep those
    moments from round to round (saved with each checkpoint, so `--resume` restores
    them). Options left unset take Flower's defaults; a strategy refuses the options it
    does not have.
    """

    name: Literal["fedavg", "fedadagrad", "fedadam", "fedyogi"] = "fedavg"
    eta: PositiveFloat | None = None
    beta_1: Decay | None = None
    beta_2: Decay | None = None
    tau: PositiveFloat | None = None

    @model_validator(mode="after")
    def _options_taken(self) -> StrategyConfig:
        taken = STRATEGY_OPTIONS[self.name]
        for option in ("eta", "beta_1", "beta_2", "tau"):
            if getattr(self, option) is not None and option not in taken:
                accepted = ", ".join(taken) if taken else "no options"
                raise ValueError(f"{option}: {self.name} takes {accepted}")
        return self

    def options(self) -> dict[str, float]:
        """The options given, as keyword arguments of the Flower strategy."""
        return {k: v for k in STRATEGY_OPTIONS[self.name] if (v := getattr(self, k)) is not None}


class FederationConfig(Section):
    """How many clients exist and how many train each round.

    `clients_per_round` is a count (integer) or a fraction of `clients` (a float in (0, 1]).
    """

    clients: PositiveInt = 4
    clients_per_round: int | float = 1.0
    rounds: PositiveInt = 3
    round_timeout: PositiveFloat | None = None
    """Seconds the server waits for a round's replies (None: Flower's default, an hour);
    a client that has not answered by then counts as failed for that round."""
    secure_aggregation: bool = False
    """Aggregate with Flower's SecAgg+ (`fedsim.flower.apps.secagg`): the server sees only the
    sum of each round's masked, quantised updates, and the auditor records per-client
    attacks as impossible instead of attacking."""
    secagg: SecAggConfig = Field(default_factory=SecAggConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    keep_checkpoints: RoundSelection | None = None
    """Rounds whose global model stays in `checkpoints/` (e.g. `{ log = 3 }`), to start
    later runs from with `model.checkpoint`; None keeps only what `--resume` needs."""

    @model_validator(mode="after")
    def _count_fits(self) -> FederationConfig:
        value = self.clients_per_round
        if isinstance(value, int) and not 1 <= value <= self.clients:
            raise ValueError(
                f"clients_per_round: a count must lie in [1, clients = {self.clients}], got {value}"
            )
        if isinstance(value, float) and not 0 < value <= 1:
            raise ValueError(f"clients_per_round: a fraction must lie in (0, 1], got {value}")
        if self.secure_aggregation and self.per_round() < 2:
            raise ValueError(
                "secure_aggregation: needs at least 2 clients per round (federation.clients"
                " × federation.clients_per_round; the sum of one update is that update)"
            )
        if self.secure_aggregation:
            self.secagg.check_fits(self.per_round())
        if self.secure_aggregation and self.strategy.name != "fedavg":
            raise ValueError(
                f"strategy.name: federation.secure_aggregation runs Flower's SecAgg+ with"
                f" FedAvg only, not {self.strategy.name}"
            )
        return self

    def per_round(self) -> int:
        """Number of clients that train in each round."""
        if isinstance(self.clients_per_round, int):
            return self.clients_per_round
        return max(1, int(self.clients * self.clients_per_round))
