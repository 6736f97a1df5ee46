"""The fast route: each candidate's update from layer inputs and backpropagated signals.

One forward pass of all N·B images, the loss's gradients δ with respect to every layer
output (one backward with `create_graph`), and each candidate's weight gradient formed
from layer inputs and δ (Conv2d: the weight gradient of an N-group convolution,
candidates folded into channels; Linear: kept as factors, `LinearFactors`). This is
Opacus' grad-sample idea (Yousefpour et al., "Opacus: User-Friendly Differential
Privacy Library in PyTorch", 2021) applied per candidate. Batch norm in train mode is
normalised per candidate batch (`FoldedBatchNorm`); average pooling runs as a
convolution (`ConvolutionAvgPool`); with a per-sample clip each sample's signals are
scaled by its clip factor (`attacks.clipping`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attacks.clipping import clip_factors, layer_sq_norms
from attacks.updates.avg_pool import replace_avg_pools
from attacks.updates.batch_norm import FoldedBatchNorm, leaf_gradient, replace_batch_norm
from attacks.updates.candidates import CandidateUpdates, LinearFactors
from attacks.updates.layers import BN_TYPES, batch_moments, private_copy, running_stats


def _fold(t: torch.Tensor, n: int) -> torch.Tensor:
    """(N·B, C, …) → (B, N·C, …): candidate n's channels become group n (a view when B = 1)."""
    b, rest = t.shape[0] // n, t.shape[1:]
    if b == 1:
        return t.reshape(1, n * rest[0], *rest[1:])
    return t.reshape(n, b, *rest).transpose(0, 1).reshape(b, n * rest[0], *rest[1:])


def _fast_support(model: nn.Module) -> str | None:
    """None if every parameter lives in a layer the fast route handles, else the reason."""
    supported = (nn.Linear, nn.Conv2d, *BN_TYPES)
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        if not isinstance(module, supported):
            return f"parameters in unsupported layer {name or type(module).__name__} ({type(module).__name__})"
        if isinstance(module, nn.Conv2d) and (
            module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str)
        ):
            return f"convolution {name} uses groups, string padding or a non-zero padding mode"
    return None


class ActivationUpdates:
    """Per-candidate gradients from layer inputs and backpropagated output signals (fast route)."""

    def __init__(
        self,
        model: nn.Module,
        batch_size: int,
        bn_train_mode: bool,
        per_sample_clip: float | None = None,
    ) -> None:
        reason = _fast_support(model)
        if per_sample_clip is not None and any(isinstance(m, BN_TYPES) for m in model.modules()):
            reason = "per-sample clipping: batch norm mixes the samples of a batch"
        if reason is not None:
            raise NotImplementedError(reason)
        self.batch_size = batch_size
        self.per_sample_clip = per_sample_clip
        self.model = private_copy(model, bn_train_mode)
        self.bn_running = running_stats(self.model)
        index = {id(p): i for i, p in enumerate(self.model.parameters())}
        self.num_params = len(index)
        if bn_train_mode:
            replace_batch_norm(self.model, batch_size)
        replace_avg_pools(self.model)
        self.layers: list[tuple[nn.Module, int | None, int | None]] = []
        self._records: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self._calls: dict[nn.Module, int] = {}
        for module in self.model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, FoldedBatchNorm, *BN_TYPES)):
                w = index.get(id(module.weight)) if module.weight is not None else None
                b = index.get(id(module.bias)) if module.bias is not None else None
                if w is None and b is None:
                    continue
                self.layers.append((module, w, b))
                module.register_forward_hook(self._hook)

    def _hook(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> None:
        self._records[module] = (inputs[0], output)
        self._calls[module] = self._calls.get(module, 0) + 1

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> CandidateUpdates:
        n, b = x.shape[:2]
        self._records.clear()
        self._calls.clear()
        if not x.requires_grad:  # layer outputs must be on a graph to take δ against them
            x = x.detach().requires_grad_(True)
        logits = self.model(x.reshape(n * b, *x.shape[2:]))
        if any(c != 1 for c in self._calls.values()) or len(self._calls) != len(self.layers):
            raise RuntimeError("fast route: a parametrised layer was not called exactly once")
        loss = F.cross_entropy(logits, labels.reshape(-1), reduction="sum") / b
        # what to differentiate: layer outputs (signals δ), or a folded batch norm's leaves
        wrt: list[torch.Tensor] = []
        for m, _, _ in self.layers:
            wrt.extend(
                m.leaves.values() if isinstance(m, FoldedBatchNorm) else [self._records[m][1]]
            )
        grads = list(torch.autograd.grad(loss, wrt, create_graph=True, allow_unused=True))
        if self.per_sample_clip is not None:
            grads = self._clipped_signals(grads, b)
        updates: list[torch.Tensor | LinearFactors | None] = [None] * self.num_params
        bn_stats = []
        for module, wi, bi in self.layers:
            if isinstance(module, FoldedBatchNorm):
                got = {k: grads.pop(0) for k in module.leaves}
                gw, gb = (leaf_gradient(module.leaves, got, k, n) for k in ("weight", "bias"))
                bn_stats.append(module.stats)
            else:
                a, out = self._records[module]
                delta = grads.pop(0)
                if delta is None:
                    delta = torch.zeros_like(out)
                gw, gb = self._layer_gradients(module, a, delta, n)
                if isinstance(module, BN_TYPES):
                    bn_stats.append(
                        batch_moments(a.reshape(n, b, *a.shape[1:]), (1, *range(3, a.dim() + 1)))
                    )
            if wi is not None:
                updates[wi] = gw
            if bi is not None:
                updates[bi] = gb
        self._records.clear()
        if any(u is None for u in updates):
            raise RuntimeError("fast route: some parameter received no gradient")
        return CandidateUpdates(list(updates), bn_stats, self.bn_running)

    def _clipped_signals(
        self, signals: list[torch.Tensor | None], b: int
    ) -> list[torch.Tensor | None]:
        """Each sample's signals scaled by its clip factor (`attacks.clipping`): the layer
        gradients formed from them are the mean of the per-sample clipped gradients."""
        sq_norms = 0
        for (module, wi, bi), delta in zip(self.layers, signals, strict=True):
            if delta is not None:
                a = self._records[module][0]
                sq_norms = sq_norms + layer_sq_norms(
                    module, a, delta, wi is not None, bi is not None
                )
        # signals of the mean loss: each sample's own gradient is b times its share
        factor = clip_factors(sq_norms * b**2, self.per_sample_clip)
        return [None if d is None else d * factor.view(-1, *([1] * (d.dim() - 1))) for d in signals]

    @staticmethod
    def _layer_gradients(
        module: nn.Module, a: torch.Tensor, delta: torch.Tensor, n: int
    ) -> tuple[torch.Tensor | LinearFactors, torch.Tensor]:
        if isinstance(module, nn.Linear):
            a2 = a.reshape(n, -1, a.shape[-1])
            d2 = delta.reshape(n, -1, delta.shape[-1])
            return LinearFactors(a2, d2), d2.sum(dim=1)
        if isinstance(module, nn.Conv2d):
            # Candidates folded into channels, (N·B, C, …) → (B, N·C, …): the weight
            # gradient of an N-group convolution is the N per-candidate gradients, and the
            # native kernel (and its double backward) computes it without unfolded patches.
            gw = torch.nn.grad.conv2d_weight(
                _fold(a, n),
                (n * module.weight.shape[0], *module.weight.shape[1:]),
                _fold(delta, n),
                module.stride,
                module.padding,
                module.dilation,
                groups=n,
            ).reshape(n, *module.weight.shape)
            return gw, delta.reshape(n, -1, *delta.shape[1:]).sum(dim=(1, 3, 4))
        # batch norm in eval mode: gradients of the affine part, from the normalised input
        shape = (1, -1) + (1,) * (a.dim() - 2)
        x_hat = (a - module.running_mean.view(shape)) / torch.sqrt(
            module.running_var.view(shape) + module.eps
        )
        dims = (1, *range(3, a.dim() + 1))
        d = delta.reshape(n, -1, *delta.shape[1:])
        gw = (d * x_hat.reshape(d.shape)).sum(dim=dims)
        return gw, d.sum(dim=dims)
