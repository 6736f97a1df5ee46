"""The server strategies a scenario names (`federation.strategy`), and the state each
carries from round to round.

FedAvg keeps nothing between rounds. Flower's adaptive optimisers do: FedAdagrad,
FedAdam and FedYogi hold the moments `m_t` and `v_t` (one array per model entry),
updated in every `aggregate_train`; the model they step from is set again in each
`configure_train`. A resumed run must start from the moments of its last complete
round, so `strategy_state` reads them for the round's checkpoint and
`restore_strategy_state` puts them back (a checkpoint without them is refused, not
resumed from zero moments). A strategy whose state fedsim does not know is refused
before it runs (`StrategyStateUnknown` names it): its runs could not be resumed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.serverapp.strategy import FedAdagrad, FedAdam, FedAvg, FedYogi, Strategy

from fedsim.errors import ConfigError
from fedsim.scenario.federation import StrategyConfig

STRATEGIES: dict[str, type[FedAvg]] = {
    "fedavg": FedAvg,
    "fedadagrad": FedAdagrad,
    "fedadam": FedAdam,
    "fedyogi": FedYogi,
}

STATE_ATTRIBUTES: dict[type[Strategy], tuple[str, ...]] = {
    FedAvg: (),
    FedAdagrad: ("m_t", "v_t"),
    FedAdam: ("m_t", "v_t"),
    FedYogi: ("m_t", "v_t"),
}
"""The attributes (dicts of arrays, or None before the first aggregate) that make up
each strategy's state between rounds; matched by exact class, as a subclass may add more."""


class StrategyStateUnknown(ConfigError):
    """A strategy whose state between rounds fedsim cannot save or restore."""


def build_inner_strategy(config: StrategyConfig, **sampling: Any) -> FedAvg:
    """The Flower strategy `config` names, with fedsim's sampling settings."""
    return STRATEGIES[config.name](**sampling, **config.options())


def _attributes(strategy: Strategy) -> tuple[str, ...]:
    try:
        return STATE_ATTRIBUTES[type(strategy)]
    except KeyError:
        raise StrategyStateUnknown(
            f"strategy {type(strategy).__name__}: fedsim cannot save its state between rounds,"
            " so a run with it cannot be resumed"
        ) from None


def has_state(strategy: Strategy) -> bool:
    """Whether `strategy` carries state from round to round (raises if unknown)."""
    return bool(_attributes(strategy))


def strategy_state(strategy: Strategy) -> dict[str, torch.Tensor]:
    """`attribute/key` → tensor for every array of the strategy's state (exact copies)."""
    state: dict[str, torch.Tensor] = {}
    for attribute in _attributes(strategy):
        arrays: Mapping[str, np.ndarray] | None = getattr(strategy, attribute)
        for key, array in (arrays or {}).items():
            state[f"{attribute}/{key}"] = torch.from_numpy(np.array(array, copy=True))
    return state


def restore_strategy_state(strategy: Strategy, state: Mapping[str, torch.Tensor]) -> None:
    """Put a state read by `strategy_state` back (attributes absent from it stay None)."""
    attributes = _attributes(strategy)
    restored: dict[str, dict[str, np.ndarray]] = {}
    for name, tensor in state.items():
        attribute, _, key = name.partition("/")
        if attribute not in attributes or not key:
            raise ConfigError(
                f"--resume: the checkpointed state has {name!r}, which"
                f" {type(strategy).__name__} does not keep"
            )
        restored.setdefault(attribute, {})[key] = tensor.numpy().copy()
    for attribute in attributes:
        setattr(strategy, attribute, restored.get(attribute))
