"""The generic route: `torch.func.vmap` over candidates of `grad` of a `functional_call`.

Works for any model, batch norm included (`GroupBatchNorm`), and unrolls FedAvg local
steps (parameters become per-candidate after the first step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from attacks.local_training import protocol_batches, unroll
from attacks.target import Protocol
from attacks.updates.batch_norm import GroupBatchNorm, replace_batch_norm
from attacks.updates.candidates import CandidateUpdates
from attacks.updates.layers import BN_TYPES, batch_moments, private_copy, running_stats


class VmapUpdates:
    """Per-candidate updates with torch.func (generic route); also unrolls FedAvg local steps.

    With `protocol.kind == 'fedavg'` and `unroll=True`, each candidate's update is the
    weight delta after `local_steps` differentiable steps of the client's optimiser on
    the mini-batches of `local_batch_size` samples of its batch that the protocol names
    (`attacks.local_training`: the optimiser's update rules re-implemented as a pure
    function, the learning rate of each step, which samples each step takes).
    """

    def __init__(
        self,
        model: nn.Module,
        batch_size: int,
        bn_train_mode: bool,
        protocol: Protocol | None = None,
        unroll: bool = False,
    ) -> None:
        self.model = private_copy(model, bn_train_mode)
        self.bn_running = running_stats(self.model)
        if bn_train_mode:
            # Batch statistics from each vmapped call's own batch; no running-stat updates.
            replace_batch_norm(self.model, None)
        self.params = {k: v.detach() for k, v in self.model.named_parameters()}
        self.buffers = {k: v.detach() for k, v in self.model.named_buffers()}
        self.batch_size = batch_size
        self.protocol = protocol or Protocol()
        self.unroll = unroll and self.protocol.kind == "fedavg"
        self._bn_inputs: list[torch.Tensor] = []
        for m in self.model.modules():
            if isinstance(m, (*BN_TYPES, GroupBatchNorm)):
                m.register_forward_hook(lambda _m, inp, _out: self._bn_inputs.append(inp[0]))

    def _loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        self._bn_inputs.clear()
        logits = functional_call(self.model, (params, self.buffers), (x,))
        stats = [batch_moments(a, (0, *range(2, a.dim()))) for a in self._bn_inputs]
        return F.cross_entropy(logits, y), stats

    def _one(self, x: torch.Tensor, y: torch.Tensor):
        if not self.unroll:
            g, stats = grad(self._loss, has_aux=True)(self.params, x, y)
            return [g[k] for k in self.params], stats

        def loss_gradient(params: dict[str, torch.Tensor], idx: list[int]):
            return grad(self._loss, has_aux=True)(params, x[idx], y[idx])

        batches = protocol_batches(self.protocol, x.shape[0])
        p, stats = unroll(self.protocol, self.params, batches, loss_gradient)
        return [p[k] - self.params[k] for k in self.params], stats[0]

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> CandidateUpdates:
        # Models that sample in train mode (PRECODE's bottleneck) draw fresh noise per
        # candidate: the adversary does not know the client's draw.
        updates, stats = vmap(self._one, randomness="different")(x, labels)
        return CandidateUpdates(list(updates), [tuple(s) for s in stats], self.bn_running)
