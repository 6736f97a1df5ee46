"""ATS: train on images transformed by privacy-searched augmentation policies.

Reference: Gao, Guo, Zhang, Zhou, Liu, Zhang, "Privacy-preserving Collaborative
Learning with Automatic Transformation Search", CVPR 2021 (policies 21-13-3 and
7-4-15 searched on CIFAR-100, and their hybrid).

The search space is a list of 50 single-operation sub-policies (operation, magnitude
index); a policy such as ``21-13-3`` applies sub-policies 21, 13 and 3 in that order,
after a random crop (zero padding 4) and a random horizontal flip. As in the
reference implementation, each operation of a chosen policy is always applied (the
probabilities of the searched list are not used) with a random sign for signed
magnitudes. ``hybrid`` (``21-13-3+7-4-15``) picks one of the two policies at random
for each image, as the reference code does per sample. Any '-'-joined indices
0–49, with '+' between alternatives, are accepted too.

Heuristic defense: the update is the honest gradient of the transformed batch, so
no likelihood is stated (mechanism None); the adapted attack is a strong Inverting
Gradients (cosine) attack early in training (`defenses.adapted`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch

from defenses.adapted import AdaptedAttack
from defenses.augment import MAGNITUDES, OPERATIONS, random_crop_flip
from defenses.base import Defense, Parameter
from defenses.errors import DefenseError
from defenses.registry import register_defense

SUB_POLICIES: tuple[tuple[str, int], ...] = (
    ("invert", 7), ("contrast", 6), ("rotate", 2), ("translateX", 9), ("sharpness", 1),
    ("sharpness", 3), ("shearY", 2), ("translateY", 2), ("autocontrast", 5), ("equalize", 2),
    ("shearY", 5), ("posterize", 5), ("color", 3), ("brightness", 5), ("sharpness", 9),
    ("brightness", 9), ("equalize", 5), ("equalize", 1), ("contrast", 7), ("sharpness", 5),
    ("color", 5), ("translateX", 5), ("equalize", 7), ("autocontrast", 8), ("translateY", 3),
    ("sharpness", 6), ("brightness", 6), ("color", 8), ("solarize", 0), ("invert", 0),
    ("equalize", 0), ("autocontrast", 0), ("equalize", 8), ("equalize", 4), ("color", 5),
    ("equalize", 5), ("autocontrast", 4), ("solarize", 4), ("brightness", 3), ("color", 0),
    ("solarize", 1), ("autocontrast", 0), ("translateY", 3), ("translateY", 3), ("autocontrast", 1),
    ("solarize", 1), ("equalize", 5), ("invert", 0), ("translateY", 3), ("autocontrast", 1),
)  # fmt: skip
"""The ATS search space: sub-policy index → (operation, magnitude index 0–9)."""

NAMED_POLICIES = {"21-13-3": "21-13-3", "7-4-15": "7-4-15", "hybrid": "21-13-3+7-4-15"}
ACCEPTED = (
    "21-13-3, 7-4-15, hybrid, or sub-policy indices 0-49 joined by '-' "
    "(alternatives joined by '+', e.g. 21-13-3+7-4-15)"
)


def parse_policy(policy: str) -> tuple[tuple[int, ...], ...]:
    """A policy string → its alternatives, each a sequence of sub-policy indices."""
    text = NAMED_POLICIES.get(policy, policy)
    alternatives = []
    for part in text.split("+"):
        try:
            indices = tuple(int(i) for i in part.split("-"))
        except ValueError:
            indices = ()
        if not indices or any(not 0 <= i < len(SUB_POLICIES) for i in indices):
            raise DefenseError(
                f"ats: parameter 'policy': unknown policy {policy!r}; accepted: {ACCEPTED}"
            )
        alternatives.append(indices)
    return tuple(alternatives)


def apply_policy(
    img: torch.Tensor, indices: tuple[int, ...], generator: torch.Generator
) -> torch.Tensor:
    """One image (C, H, W) through the sub-policies `indices`, in order."""
    for i in indices:
        operation, magnitude = SUB_POLICIES[i]
        img = OPERATIONS[operation](img, MAGNITUDES[operation][magnitude], generator)
    return img


STRONG_INVERTING_GRADIENTS: Mapping[str, Any] = MappingProxyType(
    {"iterations": 2000, "restarts": 1, "lr": 0.1}
)
"""The Inverting Gradients setting the paper ran against ATS (its `defense_attacks/ats`
code, config 'inversed': signed Adam lr 0.1, boxed, 2000 iterations, learning-rate
drops); the rest are the `cos` attack's defaults. The paper's TV weight (1e-5 on
normalised images, ≈ 5e-5 on CIFAR-10 pixels) is not copied: on ConvNet-64 it leaves
the attack at noise even without a defense, so the weight tuned for the target's model
applies (`attacks.prior_defaults`: 0.8 on ConvNet-64, 0.01 on the paper CNN)."""


@register_defense
class ATS(Defense):
    """Batch stage: random crop and flip, then the searched policy, per image."""

    name = "ats"
    randomised = True
    examples = ("ats:policy=7-4-15", "ats:policy=21-13-3,padding=2")
    adapted = AdaptedAttack(
        "cos", STRONG_INVERTING_GRADIENTS, (), "strong Inverting Gradients, early rounds"
    )
    reference = (
        "Gao et al., Privacy-preserving Collaborative Learning with Automatic Transformation "
        "Search, CVPR 2021"
    )
    effect = "trains on augmented images instead of the originals (a heuristic: no likelihood; a strong Inverting Gradients attack recovers the images trained on)"
    parameters = (
        Parameter("policy", str, "hybrid", "augmentation policy", values=ACCEPTED),
        Parameter("padding", int, 4, "zero padding of the random crop, in pixels", low=0),
    )
    stages = frozenset({"batch"})
    policy: str
    padding: int

    def validate(self) -> None:
        self.alternatives = parse_policy(self.policy)

    @property
    def mechanism_note(self) -> str:
        return "heuristic defense: no likelihood; adapted attack is a strong Inverting Gradients attack"

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = []
        for img in x:
            img = random_crop_flip(img, self.padding, generator)
            choice = 0
            if len(self.alternatives) > 1:
                choice = int(
                    torch.randint(
                        0,
                        len(self.alternatives),
                        (1,),
                        generator=generator,
                        device=generator.device,
                    )
                )
            out.append(apply_policy(img, self.alternatives[choice], generator))
        return torch.stack(out), y
