"""Flower's SecAgg+ settings of a scenario, with the rules its workflow enforces.

`fedsim.flower.apps.secagg` runs them; the checks here are those `SecAggPlusWorkflow`
makes, so a setting it would refuse is a scenario error before any round.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from fedsim.scenario.fields import PositiveFloat, Section


class SecAggConfig(Section):
    """Flower's SecAgg+ settings, used when `federation.secure_aggregation` is on.

    `num_shares`: into how many shares each client's secrets are split, an integer
    (1 or at least 3, at most the clients per round) or a fraction of the clients per
    round; the default 1.0 shares with all of them. `reconstruction_threshold`: how
    many shares rebuild a secret, an integer below `num_shares` or a fraction of the
    shares (at least 2 either way). Each client's weights are clipped to
    [-clipping_range, clipping_range] and stochastically rounded to one of
    `quantization_range` levels, so the aggregate is FedAvg's up to 2·clipping_range /
    quantization_range per coordinate; masks live modulo `modulus_range` (a power of 2).
    """

    num_shares: int | float = 1.0
    reconstruction_threshold: int | float = 0.5
    clipping_range: PositiveFloat = 8.0
    quantization_range: Annotated[int, Field(ge=2)] = 2**22
    modulus_range: Annotated[int, Field(ge=4, le=2**32)] = 2**32

    @model_validator(mode="after")
    def _flower_rules(self) -> SecAggConfig:
        """The checks `SecAggPlusWorkflow.__init__` makes, as scenario errors."""
        shares, threshold = self.num_shares, self.reconstruction_threshold
        if isinstance(shares, int) and shares != 1 and shares < 3:
            raise ValueError("num_shares: an integer must be 1 (all) or at least 3")
        if isinstance(shares, float) and not 0 < shares <= 1:
            raise ValueError(f"num_shares: a fraction must lie in (0, 1], got {shares}")
        if isinstance(threshold, int) and threshold != 1:
            if threshold < 2:
                raise ValueError("reconstruction_threshold: an integer must be 1 (all) or ≥ 2")
            if isinstance(shares, int) and shares != 1 and threshold >= shares:
                raise ValueError(
                    f"reconstruction_threshold: must be below num_shares = {shares},"
                    f" got {threshold}"
                )
        if isinstance(threshold, float) and not 0 < threshold <= 1:
            raise ValueError(
                f"reconstruction_threshold: a fraction must lie in (0, 1], got {threshold}"
            )
        if self.modulus_range & (self.modulus_range - 1):
            raise ValueError(f"modulus_range: must be a power of 2, got {self.modulus_range}")
        if self.modulus_range <= self.quantization_range:
            raise ValueError(
                f"modulus_range: must exceed quantization_range = {self.quantization_range}"
            )
        return self

    def shares_and_threshold(self, clients: int) -> tuple[int, int, int]:
        """(shares, threshold, neighbourhood) SecAgg+ uses for `clients` per round.

        Follows `SecAggPlusWorkflow.setup_stage`: each client shares its secrets with
        the `neighbourhood` clients around it on a ring (itself included), and every
        client needs `threshold` of them alive, or the round's aggregation halts.
        """
        value = self.num_shares
        if isinstance(value, int) and value != 1:
            shares = value
        else:
            shares = round(float(value) * clients)
            if shares < clients and shares % 2 == 0:
                shares += 1
            if shares <= 2:
                shares = clients
        value = self.reconstruction_threshold
        if isinstance(value, int) and value != 1:
            threshold = value
        else:
            threshold = max(round(float(value) * shares), 2)
        if shares != clients and shares % 2 == 0:
            shares += 1  # SecAgg+ wants an odd number of shares
        return shares, threshold, min(shares, clients)

    def check_fits(self, clients: int) -> None:
        """ValueError when SecAgg+ cannot aggregate `clients` updates with these settings."""
        if isinstance(self.num_shares, int) and self.num_shares > clients:
            raise ValueError(
                f"secagg.num_shares: {self.num_shares} exceeds the clients per round ({clients})"
            )
        _, threshold, neighbourhood = self.shares_and_threshold(clients)
        if threshold > neighbourhood:
            raise ValueError(
                f"secagg.reconstruction_threshold: {threshold} shares needed but each client"
                f" has only {neighbourhood} neighbours with {clients} clients per round"
            )
        if clients * self.quantization_range >= self.modulus_range:
            raise ValueError(
                f"secagg.modulus_range: the sum of {clients} quantised updates can reach"
                f" {clients} × quantization_range = {clients * self.quantization_range},"
                f" not below modulus_range = {self.modulus_range} (it would wrap around)"
            )
