"""The adaptive adversary for each heuristic defense, as an attack configuration.

Reference: Balunović et al., "Bayesian Framework for Gradient Leakage", ICLR 2022
(Section 6: Soteria, ATS and PRECODE fall to attacks adapted to them, especially
early in training).

- ``soteria``: gradient matching with the defended layer's weight gradient left out
  of the matching loss (it is the only gradient Soteria changes, so the rest is the
  honest gradient): the attack's `exclude` hyper-parameter names it, so every data
  term (l2, l1, cos, likelihood) and both update routes ignore it.
- ``ats``: a strong Inverting Gradients attack (cosine distance + total variation,
  signed Adam, long schedule), most effective in the first rounds.
- ``precode``: analytic inversion of the first fully connected layer, which sits
  before the variational bottleneck (``analytic-fc``).

`build_adapted_attack(defense, model)` returns a ready attack; `AdaptedAttack.spec()`
writes the same as an attack spec (``cos:exclude=["body.fc2.weight"]``) for
`fedsim attack --attack`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from defenses.base import Defense
from defenses.composite import Composite
from defenses.errors import DefenseError
from defenses.soteria import Soteria, find_defended_layer


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

    def build(self, **overrides: Any) -> Any:
        """The attack, with `overrides` (a budget, a seed) on top of the adapted settings."""
        from attacks.registry import build_attack

        return build_attack(self.attack, **{**self.overrides(), **overrides})

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


STRONG_INVERTING_GRADIENTS: Mapping[str, Any] = {
    "iterations": 2000,
    "restarts": 1,
    "lr": 0.1,
}
"""The Inverting Gradients setting the paper ran against ATS (its `defense_attacks/ats`
code, config 'inversed': signed Adam lr 0.1, boxed, 2000 iterations, learning-rate
drops); the rest are the `cos` attack's defaults. The paper's TV weight (1e-5 on
normalised images, ≈ 5e-5 on CIFAR-10 pixels) is not copied: on ConvNet-64 it leaves
the attack at noise even without a defense, so the weight tuned for the target's model
applies (`attacks.prior_defaults`: 0.8 on ConvNet-64, 0.01 on the paper CNN)."""


def adapted_attack(defense: Defense, model: nn.Module | None = None) -> AdaptedAttack | None:
    """The adapted attack for a heuristic defense (or the first heuristic part of a stack); None if none."""
    parts = defense.parts if isinstance(defense, Composite) else (defense,)
    for part in parts:
        if isinstance(part, Soteria):
            layer = part.layer
            if model is not None:
                layer, _ = find_defended_layer(model, part.layer)
            elif layer == "auto":
                layer = "<defended layer>"  # resolved once the model is known
            return AdaptedAttack(
                "cos",
                {},
                (f"{layer}.weight",),
                "drop the defended layer's weight gradient from the matching loss",
            )
        if part.name == "ats":
            return AdaptedAttack(
                "cos",
                dict(STRONG_INVERTING_GRADIENTS),
                (),
                "strong Inverting Gradients, early rounds",
            )
        if part.name == "precode":
            return AdaptedAttack(
                "analytic-fc", {}, (), "invert the first linear layer, before the bottleneck"
            )
    return None


def build_adapted_attack(
    defense: Defense | str, model: nn.Module, fallback: str | None = "bayes", **overrides: Any
) -> Any:
    """The attack adapted to `defense` (a Defense or a spec such as ``soteria:rate=80``)
    for `model`, with `overrides`; for a defense without an adapted attack, `fallback`
    (by default the Bayes adversary, which uses the defense's own mechanism), or a
    DefenseError when `fallback` is None."""
    from attacks.registry import build_attack
    from defenses.registry import parse_defense

    adapted = adapted_attack(parse_defense(defense), model)
    if adapted is not None:
        return adapted.build(**overrides)
    if fallback is None:
        raise DefenseError(f"defense {defense!r} has no adapted attack")
    return build_attack(fallback, **overrides)
