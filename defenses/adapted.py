"""The attack adapted to a defense, as the defense declares it: data, never an attack.

Reference: Balunović et al., "Bayesian Framework for Gradient Leakage", ICLR 2022
(Section 6: Soteria, ATS and PRECODE fall to attacks adapted to them, especially
early in training).

A heuristic defense names the adaptive adversary it falls to (`Defense.adapted_attack`):
an attack by its registered name, the options it runs with, and the parameters whose
update it leaves out of its data term. Those of this package:

- ``soteria``: gradient matching with the defended layer's weight gradient left out
  of the matching loss (it is the only gradient Soteria changes, so the rest is the
  honest gradient): the attack's `exclude` hyper-parameter names it, so every data
  term (l2, l1, cos, likelihood) and both update routes ignore it.
- ``ats``: a strong Inverting Gradients attack (cosine distance + total variation,
  signed Adam, long schedule), most effective in the first rounds.
- ``precode``: analytic inversion of the first fully connected layer, which sits
  before the variational bottleneck (``analytic-fc``).

`defenses` never imports `attacks`: `attacks.adapted.build_adapted_attack` builds the
attack from this declaration, and `AdaptedAttack.spec()` writes it as an attack spec
(``cos:exclude=["body.fc2.weight"]``) for `fedsim attack --attack`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class AdaptedAttack:
    """Which attack to run against a defense, with what options and which gradients to ignore.

    `options` are hyper-parameters of the attack (fields of its class in `attacks`);
    `exclude_parameters` names parameters (as in `model.named_parameters()`) whose
    update the attack leaves out of its data term.
    """

    attack: str
    options: Mapping[str, Any] = field(default_factory=dict)
    exclude_parameters: tuple[str, ...] = ()
    note: str = ""

    def parameter_weights(self, model: nn.Module) -> list[float]:
        """Weight of each parameter's gradient in the matching loss, in `model.parameters()` order."""
        excluded = set(self.exclude_parameters)
        return [0.0 if name in excluded else 1.0 for name, _ in model.named_parameters()]

    def overrides(self) -> dict[str, Any]:
        """The attack's hyper-parameter overrides, `exclude` included."""
        out = dict(self.options)
        if self.exclude_parameters:
            out["exclude"] = tuple(self.exclude_parameters)
        return out

    def spec(self) -> str:
        """The same attack as a spec string (``name:key=value,...``, TOML values)."""
        items = [f"{k}={_toml(v)}" for k, v in self.overrides().items()]
        return self.attack + (":" + ",".join(items) if items else "")


def _toml(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
