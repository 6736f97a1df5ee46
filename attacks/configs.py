"""The named attacks: each a configuration of the engine with its paper's defaults.

Pixel-space learning rates: the Bayesian framework paper optimises normalised MNIST
images with Adam lr 0.5; its MNIST std of 0.3081 makes that ≈ 0.15 in pixel space.
Prior weights are in pixel units too. They depend on the network, so each attack takes
the weights tuned for the target's model and input shape (`attacks.prior_defaults`),
chosen on training images, never on the scored test images; the paper CNN's were chosen
on MNIST (`benchmarks/attack_quality.py --tune`) before it took the paper's Flax
initialisation (`fedsim.models.cnn`), so that search is due again for every attack alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

from attacks.base import GradientAttack
from attacks.engine import OptimizerConfig
from attacks.likelihood import Likelihood, check_likelihood
from attacks.prior_defaults import PriorChoice, choose_priors
from attacks.registry import register_attack
from attacks.target import AttackTarget


def noise_scale(mechanism: Likelihood | None) -> float:
    """The noise scale the mechanism states (σ for Gaussian, b for Laplacian noise, in the
    observed update's units); 1 where it states no additive noise, or there is no mechanism
    (the unit Gaussian the likelihood then is)."""
    if mechanism is None:
        return 1.0
    scale = check_likelihood(mechanism).noise_scale
    return 1.0 if scale is None else float(scale)


L2_SURROGATE = "l2-surrogate"
"""What `bayes` runs, and is called (``bayes~l2-surrogate``), where a defense perturbs
the update but states no likelihood."""


@register_attack
@dataclass(frozen=True)
class BayesAttack(GradientAttack):
    """Approximate Bayes optimal adversary: min −log p(g_obs | ∇θ ℓ(x, y)) − log p(x).

    The likelihood is the defense's mechanism; the prior is total variation (`priors`),
    plus batch-norm statistics (`bn_weight`) when the threat model grants them. Without a
    mechanism the update is either exact (no defense perturbs it: the likelihood is the
    point mass, approached by ½‖g − c‖², and `exact_priors` apply) or perturbed by a
    defense that states no likelihood: then no Bayes adversary can be derived, and the
    L2 distance with the `l2` attack's priors runs in its place under its own name,
    ``bayes~l2-surrogate`` (`surrogate_for`). Paper schedule:
    Adam with exponential lr decay, 200 steps, the likelihood weight rising geometrically
    from 0.1·σ² to 1 over the first half (`weight_start` None derives that start from the
    mechanism's noise scale). The paper's decay of 0.94 per step stops the optimisation
    after ~50 steps in pixel space; 0.98 with lr 0.2 reaches lower objectives here.
    """

    name: ClassVar[str] = "bayes"
    reference: ClassVar[str] = (
        "Balunović, Dimitrov, Staab, Vechev, Bayesian Framework for Gradient Leakage, ICLR 2022"
    )
    needs: ClassVar[frozenset[str]] = frozenset({"mechanism"})

    objective: str = "likelihood"
    exact_priors: dict[str, float] = field(default_factory=dict)
    lr: float = 0.2
    schedule: Literal["constant", "exponential", "step"] = "exponential"
    decay: float = 0.98
    weight_start: float | None = None  # type: ignore[assignment]
    weight_ramp: float = 0.5
    bn_weight: float = 0.01

    def optimizer_config(self, target: AttackTarget) -> OptimizerConfig:
        config = super().optimizer_config(target)
        start = self.weight_start
        if start is None:
            start = 0.1 * noise_scale(target.mechanism) ** 2
        # The likelihood weight rises to its end and never falls (the paper's min(·, 1)).
        start = min(start, config.weight_end)
        return replace(config, weight_start=start)

    def reads(self) -> frozenset[str]:
        """Also `bn_statistics`: with `bn_stats_known`, the batch-norm prior."""
        extra = {"bn_statistics"} if self.bn_weight else set()
        return super().reads() | extra

    def surrogate_for(self, target: AttackTarget) -> str | None:
        # Refused instead (`check`): a mechanism the threat model withholds (a missing
        # capability), or one the defense refuses to state.
        refused = not target.threat.mechanism_known or target.mechanism_refusal
        if not refused and target.mechanism is None and target.mechanism_missing:
            return L2_SURROGATE
        return None

    def objective_for(self, target: AttackTarget) -> str:
        return "l2" if self.surrogate_for(target) else self.objective

    def prior_choice(self, target: AttackTarget) -> PriorChoice:
        if self.surrogate_for(target) and self.priors is None:
            l2 = choose_priors(L2Attack.name, type(target.model).__name__, target.input_shape)
            source = f"{l2.source} ({L2_SURROGATE}: l2's priors)"  # says untuned first
            choice = PriorChoice(l2.weights, source, l2.tuned)
        elif target.mechanism is None and not target.mechanism_missing:
            # An exact update: the posterior is the likelihood's point mass and a prior
            # only biases it, so `exact_priors` (none by default) apply.
            choice = PriorChoice(dict(self.exact_priors), "exact update: exact_priors")
        else:
            choice = super().prior_choice(target)
        if target.threat.bn_stats_known and self.bn_weight:
            choice.weights.setdefault("bn", self.bn_weight)
        return choice


@register_attack
@dataclass(frozen=True)
class L2Attack(GradientAttack):
    """Deep Leakage from Gradients' L2 distance, run with the Bayes paper's Adam schedule and TV."""

    name: ClassVar[str] = "l2"
    reference: ClassVar[str] = "Zhu, Liu, Han, Deep Leakage from Gradients, NeurIPS 2019"

    objective: str = "l2"
    lr: float = 0.2
    schedule: Literal["constant", "exponential", "step"] = "exponential"
    decay: float = 0.98


@register_attack
@dataclass(frozen=True)
class DLGAttack(GradientAttack):
    """Deep Leakage from Gradients as published: L2 distance, L-BFGS, no prior, no box."""

    name: ClassVar[str] = "dlg"
    reference: ClassVar[str] = "Zhu, Liu, Han, Deep Leakage from Gradients, NeurIPS 2019"

    objective: str = "l2"
    optimizer: Literal["adam", "lbfgs"] = "lbfgs"
    lr: float = 1.0
    box: bool = False
    iterations: int = 50


@register_attack
@dataclass(frozen=True)
class L1Attack(GradientAttack):
    """L1 gradient distance (the Laplacian-noise counterpart of L2), Bayes paper schedule and TV."""

    name: ClassVar[str] = "l1"
    reference: ClassVar[str] = (
        "Balunović et al., Bayesian Framework for Gradient Leakage, ICLR 2022 (L1 baseline)"
    )

    objective: str = "l1"
    lr: float = 0.2
    schedule: Literal["constant", "exponential", "step"] = "exponential"
    decay: float = 0.98


@register_attack
@dataclass(frozen=True)
class CosineAttack(GradientAttack):
    """Inverting Gradients: 1 − cosine over all layers, TV, signed Adam lr 0.1, boxed,
    learning rate ×0.1 at 3/8, 5/8 and 7/8 of the budget.

    250 iterations by default: signed steps of 0.1 in pixel space go as far in 250
    iterations as Inverting Gradients' steps of 0.1 on images normalised by CIFAR-10's
    std (≈ 0.025 in pixels) go in 1,000, and on breaching's own case they reach its
    1,000-iteration PSNR in a third of its time (`benchmarks/versus_breaching.py`).
    """

    name: ClassVar[str] = "cos"
    reference: ClassVar[str] = (
        "Geiping, Bauermeister, Dröge, Moeller, Inverting Gradients – How easy is it to break "
        "privacy in federated learning?, NeurIPS 2020"
    )

    objective: str = "cos"
    lr: float = 0.1
    schedule: Literal["constant", "exponential", "step"] = "step"
    decay: float = 0.1
    signed: bool = True
    iterations: int = 250


@register_attack
@dataclass(frozen=True)
class PaperCosineAttack(GradientAttack):
    """The Bayesian framework paper's cosine baseline: one cosine distance over all
    parameters (objective `cos-paper`) + TV, run with the same Adam and exponential lr
    decay as `l2` and `l1`, 200 steps, so only the data term differs between the three.

    Not Inverting Gradients (`cos`: signed steps, lr ×0.1 at milestones): the paper's
    Table 2 "cos" column is this attack (its code's `cos_sim_global`).
    """

    name: ClassVar[str] = "cos-paper"
    reference: ClassVar[str] = (
        "Balunović et al., Bayesian Framework for Gradient Leakage, ICLR 2022 (cos baseline)"
    )

    objective: str = "cos-paper"
    lr: float = 0.2
    schedule: Literal["constant", "exponential", "step"] = "exponential"
    decay: float = 0.98


@register_attack
@dataclass(frozen=True)
class GradInversionAttack(GradientAttack):
    """GradInversion: L2 gradient distance + TV + batch-norm statistics + image-norm priors."""

    name: ClassVar[str] = "gradinversion"
    reference: ClassVar[str] = (
        "Yin, Mallya, Vahdat, Alvarez, Kautz, Molchanov, See through Gradients: Image Batch "
        "Recovery via GradInversion, CVPR 2021"
    )
    needs: ClassVar[frozenset[str]] = frozenset({"bn_stats"})

    objective: str = "l2"
    lr: float = 0.1
    schedule: Literal["constant", "exponential", "step"] = "step"
    decay: float = 0.1
    iterations: int = 1000
