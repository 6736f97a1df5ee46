"""Candidate updates clipped per sample, as DP-SGD's client forms its clean update.

DP-SGD clips the gradient of every sample to norm C (over all parameters together)
and averages: (1/B) Σ_i clip_C(∇θ ℓ(x_i, y_i)). Clipping the batch's mean gradient
instead is exact only for B = 1; the adversary knows its candidate batch, so it forms
each candidate's update exactly as the client did. `torch.func` gives the per-sample
gradients (`vmap` over the samples of `grad` of a `functional_call`), vmapped again
over the candidates; the result is differentiable with respect to the candidate
inputs, as the attack needs. Under FedAvg with the local hyper-parameters known, every
local step's gradient is formed so.

This is the generic route of clipped candidates (`build_updates` with `per_sample_clip`);
the fast route scales each sample's backpropagated signals instead (`attacks.clipping`),
and a probe checks that the two agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from attacks.clipping import clip_factors
from attacks.errors import AttackError
from attacks.target import Protocol
from attacks.updates.candidates import CandidateUpdates
from attacks.updates.layers import BN_TYPES, private_copy


class PerSampleClippedUpdates:
    """Each candidate's update from its per-sample gradients clipped to `clip` and averaged.

    Models with batch norm are refused: it mixes the samples of a batch, so a per-sample
    gradient is undefined (DP-SGD's client refuses them too).
    """

    def __init__(
        self,
        model: nn.Module,
        batch_size: int,
        clip: float,
        protocol: Protocol | None = None,
        unroll: bool = False,
    ) -> None:
        for name, module in model.named_modules():
            if isinstance(module, BN_TYPES):
                raise AttackError(
                    f"per-sample clipping: layer {name!r} is batch norm, which mixes the "
                    "samples of a batch, so per-sample gradients are undefined"
                )
        self.model = private_copy(model, bn_train_mode=True)
        self.params = {k: v.detach() for k, v in self.model.named_parameters()}
        self.buffers = {k: v.detach() for k, v in self.model.named_buffers()}
        self.batch_size = batch_size
        self.clip = float(clip)
        self.protocol = protocol or Protocol()
        self.unroll = unroll and self.protocol.kind == "fedavg"

    def _sample_loss(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        logits = functional_call(self.model, (params, self.buffers), (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    def _clipped_mean(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """(1/b) Σ_i clip_C(∇ℓ(x_i, y_i)) over the b samples of (x, y)."""
        per_sample = vmap(grad(self._sample_loss), in_dims=(None, 0, 0))(params, x, y)
        b = x.shape[0]
        sq_norms = sum(g.reshape(b, -1).square().sum(1) for g in per_sample.values())
        factor = clip_factors(sq_norms, self.clip)
        return {k: torch.tensordot(factor, g, dims=([0], [0])) / b for k, g in per_sample.items()}

    def _one(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        if not self.unroll:
            g = self._clipped_mean(self.params, x, y)
            return [g[k] for k in self.params]
        p = self.params
        chunk = self.protocol.local_batch_size or x.shape[0]
        for step in range(self.protocol.local_steps):
            start = (step * chunk) % x.shape[0]
            idx = [(start + i) % x.shape[0] for i in range(min(chunk, x.shape[0]))]
            g = self._clipped_mean(p, x[idx], y[idx])
            p = {k: p[k] - self.protocol.local_lr * g[k] for k in p}
        return [p[k] - self.params[k] for k in self.params]

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> CandidateUpdates:
        updates = vmap(self._one, randomness="different")(x, labels)
        return CandidateUpdates(list(updates), [], [])
