"""DP-SGD: per-sample gradient clipping to C and Gaussian noise σ·C on the sum.

Reference: Abadi et al., "Deep Learning with Differential Privacy", CCS 2016.
Per-sample gradients come from torch.func (functional_call + grad + vmap). Batch
norm mixes samples in a batch, so a per-sample gradient is undefined there: models
with batch-norm layers are refused. Privacy spent, per threat model:
`defenses.accounting`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from defenses.accounting import PrivacyClaim, RoundSchedule, privacy_claims
from defenses.base import (
    Defense,
    Parameter,
    TrainingProtocol,
    added_gaussian_variance,
    draw_normal,
    gradient_step_units,
)
from defenses.errors import DefenseError
from defenses.mechanisms import Mechanism, NoiseKind
from defenses.mechanisms.clipped import CLIP_EPSILON, ClippedGaussianMechanism, clip_rows
from defenses.registry import register_defense


def refuse_batch_norm(model: nn.Module) -> None:
    """DefenseError naming the first batch-norm layer, if any."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise DefenseError(
                f"dpsgd: model layer {name!r} is batch norm, which mixes the samples of a batch, "
                "so per-sample gradients (and DP-SGD's guarantee) are undefined; use a model "
                "without batch norm (e.g. group norm)"
            )


def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Cross-entropy gradient of every sample: one (B, *shape) tensor per parameter."""
    refuse_batch_norm(model)
    names = [name for name, _ in model.named_parameters()]
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def loss_one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    grads = vmap(grad(loss_one), in_dims=(None, 0, 0), randomness="different")(params, x, y)
    return [grads[name] for name in names]


def clip_per_sample(per_sample: Sequence[torch.Tensor], clip: float) -> list[torch.Tensor]:
    """Each sample's gradient (over all parameters together) rescaled to norm at most `clip`."""
    return clip_rows(per_sample, clip, CLIP_EPSILON)


@register_defense
class DPSGD(Defense):
    """Gradient stage: (Σ_i clip_C(∇ℓ(x_i)) + N(0, σ²C² I)) / B for every local step."""

    name = "dpsgd"
    examples = ("dpsgd:clip=0.5,sigma=1.7", "dpsgd:clip=0.5,sigma=1,delta=1e-6")
    reference = "Abadi et al., Deep Learning with Differential Privacy, CCS 2016"
    effect = "clips each sample's gradient to C and adds Gaussian noise σ·C (its (ε, δ) per threat model is in the run's records)"
    parameters = (
        Parameter("clip", float, 1.0, "per-sample gradient norm bound C", low=0.0, low_open=True),
        Parameter("sigma", float, 1.0, "noise multiplier σ (noise std σ·C on the sum)", low=0.0),
        Parameter(
            "delta",
            float,
            1e-5,
            "δ at which ε is reported",
            low=0.0,
            high=1.0,
            low_open=True,
            high_open=True,
        ),
    )
    stages = frozenset({"gradient"})
    perturbs_update = True
    states_privacy = True
    clip: float
    sigma: float
    delta: float

    @property
    def randomised(self) -> bool:  # type: ignore[override]
        return self.sigma > 0

    def privacy_claims(
        self, schedule: RoundSchedule, rounds: int, **context: Any
    ) -> list[PrivacyClaim]:
        """ε at δ per threat model for noise multiplier σ (`defenses.accounting`)."""
        try:
            return privacy_claims(self.sigma, self.delta, schedule, rounds, **context)
        except DefenseError as error:
            raise DefenseError(f"{self.name} {str(error).removeprefix('accounting: ')}") from None

    @property
    def mechanism(self) -> Mechanism:
        return self.mechanism_for(1)

    def mechanism_for(self, batch_size: int, protocol: TrainingProtocol | None = None) -> Mechanism:
        """Clipped Gaussian in the units of what the client sends, clipping per sample.

        FedSGD: the mean of the per-sample gradients clipped to C, noise std σ·C/B. FedAvg
        with one local step of lr on B samples: the delta −lr·g̃, so bound lr·C and std
        lr·σ·C/B. Either way each candidate sample is clipped to C (`per_sample_clip`).
        FedAvg with k > 1 local steps is refused (`MechanismRefused`): each step's noise
        moves the parameters the next step's gradient is taken at, so p(δ | x) has no
        closed form — a delta of norm up to lr·k·C with noise lr·σ·C·√k/B is not it; so is
        any optimiser other than plain SGD (`protocol.plain_sgd`).
        """
        factor, samples = gradient_step_units(self.name, batch_size, protocol)
        return ClippedGaussianMechanism(
            factor * self.clip, max(factor * self.sigma * self.clip / samples, 1e-12), self.clip
        )

    def mechanism_with_noise(
        self,
        noise: Sequence[tuple[NoiseKind, float]],
        batch_size: int,
        protocol: TrainingProtocol | None = None,
    ) -> tuple[Mechanism, str] | None:
        """Gaussian noise after DP-SGD is added to what the client sends, in DP-SGD's
        units: clipped Gaussian, the variances added, still clipped per sample."""
        extra = added_gaussian_variance(noise)
        if extra is None:
            return None
        dp = self.mechanism_for(batch_size, protocol)
        std = math.sqrt(dp.std**2 + extra)
        mechanism = ClippedGaussianMechanism(dp.clip, std, dp.per_sample_clip)
        return mechanism, "clipped Gaussian, variances added"

    def composition_refusal(self, parts: Sequence[Defense]) -> str | None:
        """DP-SGD recomputes each sample's cross-entropy gradient from the batch, so a
        gradient-stage part before it and any part's loss term would be dropped."""
        index = next(i for i, p in enumerate(parts) if p is self)
        earlier = [p.name for p in parts[:index] if "gradient" in p.stages]
        lost = [f"{name}'s change to the gradient" for name in earlier]
        lost += [f"{p.name}'s loss term" for p in parts if p.adds_loss]
        if not lost:
            return None
        hint = "; a gradient-stage defense may follow dpsgd, not precede it" if earlier else ""
        return (
            "dpsgd recomputes each sample's cross-entropy gradient from the batch, so "
            f"{' and '.join(lost)} would be silently lost{hint}"
        )

    @property
    def mechanism_note(self) -> str:
        return (
            "each candidate sample's gradient clipped to C and averaged (FedAvg, one step: "
            "the delta, times −lr), then Gaussian with std σ·C/B (lr·σ·C/B): exact; refused "
            "under FedAvg with several local steps"
        )

    def transform_gradients(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        grads: list[torch.Tensor],
        generator: torch.Generator,
    ) -> list[torch.Tensor]:
        """Recomputes the step's gradient per sample (the incoming `grads` are not used)."""
        batch = x.shape[0]
        clipped = clip_per_sample(per_sample_gradients(model, x, y), self.clip)
        return [
            (g.sum(dim=0) + self.sigma * self.clip * draw_normal(g[0], generator)) / batch
            for g in clipped
        ]
