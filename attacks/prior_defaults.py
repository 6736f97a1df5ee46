"""Default prior weights, per attack, model and input shape, each with where it came from.

A prior's weight balances −log p(x) against the data term, and how the two trade off
depends on the network and the images: the cosine attack's total-variation weight that
is best for the paper CNN on MNIST (0.01) gave 11.5 dB on a CIFAR-10 image attacked
through ConvNet-64 over 1,000 iterations, where Inverting Gradients' own (0.8 in pixels,
0.2 on normalised images) gave 16.3 dB (at 250 iterations the two are within 0.1 dB).
A single number per attack would silently carry one network's tuning to another, and
neither gradient nor image scale predicts the weight (at the start point the cosine
term's input gradient is smaller, not larger, on ConvNet-64). Under signed steps a
weight acts as a threshold: once the prior's gradient outweighs the data term's at
every pixel where it is non-zero, the step's sign follows the prior there and a larger
weight changes nothing (ConvNet-64: every TV weight from 0.05 to 1.6 gives the same
images). So defaults are looked up by the target's model class and input shape, among
settings tuned on held-out images; where none was tuned, the attack falls back on its
reference setting and says so (`PriorChoice.tuned` False, a message the auditor prints
and records), never silently. An attack without rows of its own (a subclass of `cos`
under a new name) takes those of its nearest base class that has some, and its
`priors_source` says so (``…; defaults of cos (inherited)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class TunedPriors:
    """Prior weights for `attack` on models of class `model` with inputs `input_shape`."""

    attack: str
    model: str
    input_shape: tuple[int, int, int]
    weights: Mapping[str, float]
    source: str


@dataclass(frozen=True)
class PriorChoice:
    """The prior weights an attack uses on a target, and why."""

    weights: dict[str, float] = field(default_factory=dict)
    source: str = "given"
    tuned: bool = True


_CNN_MNIST = "benchmarks/attack_quality.py --tune: MNIST training images 0-9, scored by PSNR"
_CONVNET_CIFAR = (
    "Inverting Gradients' 0.2 on images normalised by CIFAR-10's std (≈ 0.25), in pixel "
    "units; with its signed steps every weight from 0.05 to 1.6 gives the same "
    "reconstructions of the held-out CIFAR-10 training images 5, 10, 13, 17, 30 and 40 "
    "(breaching's case, 250 iterations; mean 20.35 dB), because TV's gradient outweighs "
    "the cosine term's wherever it is non-zero"
)

TUNED: tuple[TunedPriors, ...] = (
    TunedPriors("bayes", "PaperCNN", (1, 28, 28), {"tv": 300.0}, _CNN_MNIST),
    TunedPriors("l2", "PaperCNN", (1, 28, 28), {"tv": 1.0}, _CNN_MNIST),
    TunedPriors("l1", "PaperCNN", (1, 28, 28), {"tv": 1.0}, _CNN_MNIST),
    TunedPriors("cos", "PaperCNN", (1, 28, 28), {"tv": 0.01}, _CNN_MNIST),
    TunedPriors("cos", "ConvNet64", (3, 32, 32), {"tv": 0.8}, _CONVNET_CIFAR),
    TunedPriors("cos-paper", "PaperCNN", (1, 28, 28), {"tv": 0.01}, _CNN_MNIST),
    TunedPriors(
        "gradinversion",
        "ResNet50",
        (3, 224, 224),
        {"tv": 1e-3, "bn": 1e-2, "l2": 1e-4},
        "the GradInversion paper (Yin et al., CVPR 2021): ResNet-50 on ImageNet",
    ),
)
"""Every tuned default. An attack's first row is its reference setting, used (and marked
untuned) where no row matches the target."""


def tuned_priors(attack: str, model: str, input_shape: tuple[int, ...]) -> TunedPriors | None:
    """The tuned row for (attack, model class name, input shape), or None."""
    for row in TUNED:
        if (row.attack, row.model, tuple(row.input_shape)) == (attack, model, tuple(input_shape)):
            return row
    return None


def lineage(cls: type) -> tuple[str, ...]:
    """The attack class's `name`, then the names of its base classes, nearest first."""
    names: list[str] = []
    for klass in cls.__mro__:
        name = klass.__dict__.get("name")
        if isinstance(name, str) and name not in names:
            names.append(name)
    return tuple(names)


def choose_priors(
    attack: str | Sequence[str], model: str, input_shape: tuple[int, ...]
) -> PriorChoice:
    """The defaults of the first name in `attack` (an attack's name, or its `lineage`)
    that has rows, marked inherited where it is not the first; no weights where none has
    a row (the attack uses no prior)."""
    names = (attack,) if isinstance(attack, str) else tuple(attack)
    for name in names:
        choice = _own_defaults(name, model, input_shape)
        if choice is not None and name != names[0]:
            return replace(choice, source=f"{choice.source}; defaults of {name} (inherited)")
        if choice is not None:
            return choice
    return PriorChoice({}, "none: this attack uses no prior by default")


def _own_defaults(attack: str, model: str, input_shape: tuple[int, ...]) -> PriorChoice | None:
    """The tuned weights for this model and shape, else the attack's reference row,
    marked untuned; None where the attack has no row."""
    row = tuned_priors(attack, model, input_shape)
    if row is not None:
        return PriorChoice(
            dict(row.weights), f"tuned for {row.model} {_shape(row.input_shape)}: {row.source}"
        )
    reference = next((r for r in TUNED if r.attack == attack), None)
    if reference is None:
        return None
    return PriorChoice(
        dict(reference.weights),
        f"untuned: {attack}'s prior weights {dict(reference.weights)} were chosen for "
        f"{reference.model} {_shape(reference.input_shape)}, not for {model} "
        f"{_shape(input_shape)}; tune them (a [tuning] space) or set `priors`",
        tuned=False,
    )


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)
