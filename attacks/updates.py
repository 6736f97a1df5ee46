"""Candidate updates: the update each candidate batch would have produced, for N candidates at once.

The attack objective compares the observed update with ∇θ ℓ(x_n, y_n) for every candidate
n = 1..N (each a batch of B images), and is then differentiated with respect to x: a
second-order gradient. Two routes compute the candidate updates, both differentiable:

- `ActivationUpdates` (fast): one forward pass of all N·B images, the loss's gradients
  δ with respect to every layer output (one backward with `create_graph`), and each
  candidate's weight gradient formed from layer inputs and δ (Conv2d: the weight gradient
  of an N-group convolution, candidates folded into channels; Linear: kept as factors,
  see `LinearFactors`). This is
  Opacus' grad-sample idea (Yousefpour et al., "Opacus: User-Friendly Differential
  Privacy Library in PyTorch", 2021) applied per candidate. Batch norm in train mode is
  normalised per candidate batch, never across candidates (`_FoldedBatchNorm`).
- `VmapUpdates` (generic): `torch.func.vmap` over candidates of `torch.func.grad` of a
  `functional_call`; works for any model, batch norm included, and also unrolls FedAvg
  local steps (parameters become per-candidate after the first step).

`build_updates` picks the fast route when the model's parameters all live in supported
layers and a float64 probe agrees with the generic route; else the generic one.
`route='fast'` forces the fast route where it is supported.

Where the time goes (torch.profiler, ConvNet-64 in train mode, N = 8, one thread): the
fast route used to form convolution weight gradients from unfolded patches and a batched
matmul, and measured 0.66× the plain loop: `bmm` 35 % of the step, `im2col` 13 %,
`col2im` 7 %, zero fills and copies 11 %, against 26 % in the native convolution
kernels. With the candidates folded into the groups of a convolution the native kernel
does that work (its double backward too): the step halved (2.9 s → 1.5 s) and is now
81 % convolution kernels, within about 10 % of the plain loop. `benchmarks/attack_speed.py`
shows why it cannot beat that loop on a CPU: the loop already runs at the rate of a
large matrix product. On the paper CNN at N = 32 the step was 22 % `bmm` (two threads),
nearly all of it the dense layer's observed update multiplied in a layout CPU kernels
run slowly (`LinearFactors.dot` now avoids it), then a fifth average pooling (one
thread), whose kernels are several times slower than a convolution doing the same sums
(`_ConvolutionAvgPool`); with both the step went from 75 to 45 ms (two threads).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from attacks.clipping import clip_factors, layer_sq_norms
from attacks.local_training import protocol_batches, unroll
from attacks.target import Protocol

Route = Literal["auto", "fast", "vmap"]


@dataclass
class LinearFactors:
    """A Linear weight's per-candidate gradient kept as its factors, Σ_k d_k a_kᵀ.

    `a` (N, K, in) are the layer inputs and `d` (N, K, out) the backpropagated signals of
    the candidate's K = B·(extra dims) rows. Objectives that only need inner products
    (L2, Gaussian likelihood, cosine) use them without materialising the (N, out, in)
    gradient: ‖Σ d aᵀ‖² = Σ (d dᵀ) ⊙ (a aᵀ) and ⟨Σ d aᵀ, G⟩ = Σ_k d_kᵀ G a_k — Opacus'
    ghost-norm identity, which saves the memory traffic that dominates large layers.
    """

    a: torch.Tensor
    d: torch.Tensor

    def materialize(self) -> torch.Tensor:
        return torch.bmm(self.d.transpose(1, 2), self.a)

    def sq_norm(self) -> torch.Tensor:
        gram_a = torch.bmm(self.a, self.a.transpose(1, 2))
        gram_d = torch.bmm(self.d, self.d.transpose(1, 2))
        return (gram_a * gram_d).flatten(1).sum(1)

    def dot(self, g: torch.Tensor) -> torch.Tensor:
        """⟨update_n, g_n⟩ for g of shape (N, out, in).

        With few rows, g is multiplied from the left (dᵀ g, then · a): the backward pass
        then needs x gᵀ, a fast layout, where g a's backward needs gᵀ x, a matrix-vector
        product CPU kernels run about 8× slower (paper CNN's dense layer, N = 32: 13.6
        against 1.7 ms). With many rows both are matrix products and g a's smaller
        intermediate wins (`_LEFT_MULTIPLY_ROWS`, measured on CPU).
        """
        if self.a.shape[1] < _LEFT_MULTIPLY_ROWS:
            dg = torch.bmm(self.d, g)  # (N, K, in)
            return (dg * self.a).flatten(1).sum(1)
        ga = torch.bmm(g, self.a.transpose(1, 2))  # (N, out, K)
        return (ga * self.d.transpose(1, 2)).flatten(1).sum(1)


_LEFT_MULTIPLY_ROWS = 12
"""Below this many rows K, `LinearFactors.dot` multiplies the observed update from the left:
forward and backward of (32, 100, 3136) updates took 5 ms against 19 ms at K = 1 and 21
against 59 ms at K = 10, but 27 against 17 ms at K = 16 (two CPU threads)."""


@dataclass
class CandidateUpdates:
    """Per-candidate updates and, for the batch-norm prior, per-candidate batch statistics.

    `parts[i]` is parameter i's update, a tensor of shape (N, *parameter_i.shape) or
    `LinearFactors`; `updates` materialises them all. `bn_stats` holds one (mean, var)
    pair per batch-norm layer, each (N, channels): the statistics of that layer's input
    over the candidate's batch. `bn_running` holds the model's running (mean, var).
    """

    parts: list[torch.Tensor | LinearFactors]
    bn_stats: list[tuple[torch.Tensor, torch.Tensor]]
    bn_running: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def updates(self) -> list[torch.Tensor]:
        return [p.materialize() if isinstance(p, LinearFactors) else p for p in self.parts]

    def select(self, start: int, stop: int) -> CandidateUpdates:
        """Candidates start:stop (updates only; what objectives need)."""
        if start == 0 and stop == _num_candidates(self.parts[0]):
            return self
        parts = [
            LinearFactors(p.a[start:stop], p.d[start:stop])
            if isinstance(p, LinearFactors)
            else p[start:stop]
            for p in self.parts
        ]
        return CandidateUpdates(parts, [], [])


def _num_candidates(part: torch.Tensor | LinearFactors) -> int:
    return part.a.shape[0] if isinstance(part, LinearFactors) else part.shape[0]


UpdateFunction = Callable[[torch.Tensor, torch.Tensor], CandidateUpdates]
"""(x (N, B, C, H, W), labels (N, B)) → CandidateUpdates."""

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _private_copy(model: nn.Module, bn_train_mode: bool) -> nn.Module:
    """A detached copy in the client's mode, with in-place activations turned off."""
    clone = copy.deepcopy(model)
    for p in clone.parameters():
        p.requires_grad_(False)
    clone.train(bn_train_mode)
    for m in clone.modules():
        if hasattr(m, "inplace") and isinstance(m.inplace, bool):
            m.inplace = False
    return clone


def _running_stats(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    stats = []
    for m in model.modules():
        if isinstance(m, _BN_TYPES) and m.running_mean is not None:
            stats.append((m.running_mean.detach().clone(), m.running_var.detach().clone()))
    return stats


def _batch_moments(
    x: torch.Tensor, sample_dims: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(dim=sample_dims)
    var = x.var(dim=sample_dims, unbiased=False)
    return mean, var


# --------------------------------------------------------------------------- fast route


class _GroupBatchNorm(nn.Module):
    """Batch norm in train mode from elementary ops (generic route).

    Under torch.func, the native batch norm's double backward inside `grad` + `vmap`
    returned wrong input gradients (torch 2.x; first-order updates were right), so the
    generic route normalises with mean/var ops, whose derivatives compose correctly.
    Each vmapped call sees one candidate's batch, so its statistics are per candidate.
    """

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        self.weight = source.weight
        self.bias = source.bias
        self.eps = source.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (0, *range(2, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, unbiased=False, keepdim=True)
        out = (x - mean) / torch.sqrt(var + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.weight is not None:
            out = out * self.weight.view(shape)
        if self.bias is not None:
            out = out + self.bias.view(shape)
        return out


class _FoldedBatchNorm(nn.Module):
    """Batch norm in train mode per candidate with the native kernel (fast route).

    The N candidates are folded into the channel axis, (N·B, C, …) → (B, N·C, …), so the
    kernel's per-channel statistics are per candidate; the affine weight and bias enter
    repeated N times as fresh leaves, whose gradients are then exactly the per-candidate
    gradients of the layer's weight and bias.
    """

    def __init__(self, source: nn.Module, batch_size: int) -> None:
        super().__init__()
        self.weight = source.weight
        self.bias = source.bias
        self.eps = source.eps
        self.batch_size = batch_size
        self.leaves: dict[str, torch.Tensor] = {}
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, spatial = self.batch_size, x.shape[1], x.shape[2:]
        n = x.shape[0] // b
        folded = x.reshape(n, b, c, *spatial).transpose(0, 1).reshape(b, n * c, *spatial)
        self.leaves = {}
        for key in ("weight", "bias"):
            p = getattr(self, key)
            if p is not None:
                self.leaves[key] = p.detach().repeat(n).requires_grad_(True)
        out = F.batch_norm(
            folded,
            None,
            None,
            self.leaves.get("weight"),
            self.leaves.get("bias"),
            True,
            0.0,
            self.eps,
        )
        dims = (0, *range(2, folded.dim()))
        self.stats = (
            folded.mean(dim=dims).reshape(n, c),
            folded.var(dim=dims, unbiased=False).reshape(n, c),
        )
        return out.reshape(b, n, c, *spatial).transpose(0, 1).reshape(x.shape)


class _ConvolutionAvgPool(nn.Module):
    """2-D average pooling as a depthwise strided convolution with a constant kernel (fast route).

    The same values up to rounding. On a CPU the convolution kernels are several times
    faster than average pooling's on a batch of candidates, forward and backward (a
    transposed convolution), and the attack differentiates through both: on the paper
    CNN at N = 32 pooling took a fifth of the step. The two are each other's adjoint
    (`_PoolFunction`, `_UnpoolFunction`), so autograd never takes the grouped
    convolution's own double backward, which loops over the channels. Only pools without
    padding, ceiling or divisor override are swapped (`_replace_avg_pools`); small
    inputs, inputs other than (N, C, H, W) and other devices than the CPU use the
    pooling kernel (`_POOL_AS_CONVOLUTION_FROM`).
    """

    def __init__(self, source: nn.AvgPool2d) -> None:
        super().__init__()
        self.source = source
        self.kernel_size = _pair(source.kernel_size)
        self.stride = _pair(source.stride or source.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.device.type != "cpu" or x.numel() < _POOL_AS_CONVOLUTION_FROM:
            return self.source(x)
        return _PoolFunction.apply(x, self.kernel_size, self.stride)


_POOL_AS_CONVOLUTION_FROM = 300_000
"""Inputs of at least this many elements are pooled as convolutions: measured on CPU,
the paper CNN's step at N = 32 (pool inputs of 802,816 and 401,408 elements) took 44–63
against 60–74 ms (two threads), while at N = 8 (200,704 and 100,352) the pooling kernel
was as fast or faster. On other devices the pooling kernel is used."""


def _mean_kernel(channels: int, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    return torch.full(
        (channels, 1, *size), 1.0 / (size[0] * size[1]), dtype=like.dtype, device=like.device
    )


class _PoolFunction(torch.autograd.Function):
    """x (N, C, H, W) → its window means; backward `_UnpoolFunction`."""

    @staticmethod
    def forward(ctx, x, size, stride):
        ctx.size, ctx.stride, ctx.input_size = size, stride, tuple(x.shape[-2:])
        channels = x.shape[1]
        return F.conv2d(x, _mean_kernel(channels, size, x), stride=stride, groups=channels)

    @staticmethod
    def backward(ctx, grad):
        return _UnpoolFunction.apply(grad, ctx.size, ctx.stride, ctx.input_size), None, None


class _UnpoolFunction(torch.autograd.Function):
    """The adjoint of `_PoolFunction`: each window's value spread evenly over the window."""

    @staticmethod
    def forward(ctx, grad, size, stride, input_size):
        ctx.size, ctx.stride = size, stride
        channels, out_h, out_w = grad.shape[1:]
        # rows and columns the pooling dropped at the far edges come back as zeros
        padding = tuple(
            full - ((out - 1) * s + k)
            for full, out, s, k in zip(input_size, (out_h, out_w), stride, size, strict=True)
        )
        return F.conv_transpose2d(
            grad,
            _mean_kernel(channels, size, grad),
            stride=stride,
            groups=channels,
            output_padding=padding,
        )

    @staticmethod
    def backward(ctx, grad):
        return _PoolFunction.apply(grad, ctx.size, ctx.stride), None, None, None


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _swap_layers(parent: nn.Module, swap: Callable[[nn.Module], nn.Module | None]) -> None:
    """Replace every descendant layer for which `swap` returns a module by that module;
    the others are searched in turn."""
    for name, child in parent.named_children():
        new = swap(child)
        if new is not None:
            setattr(parent, name, new)
        else:
            _swap_layers(child, swap)


def _replace_avg_pools(parent: nn.Module) -> None:
    """Swap plain `nn.AvgPool2d` layers for `_ConvolutionAvgPool`."""

    def swap(layer: nn.Module) -> nn.Module | None:
        plain = (
            isinstance(layer, nn.AvgPool2d)
            and _pair(layer.padding) == (0, 0)
            and not layer.ceil_mode
            and layer.divisor_override is None
        )
        return _ConvolutionAvgPool(layer) if plain else None

    _swap_layers(parent, swap)


def _fold(t: torch.Tensor, n: int) -> torch.Tensor:
    """(N·B, C, …) → (B, N·C, …): candidate n's channels become group n (a view when B = 1)."""
    b, rest = t.shape[0] // n, t.shape[1:]
    if b == 1:
        return t.reshape(1, n * rest[0], *rest[1:])
    return t.reshape(n, b, *rest).transpose(0, 1).reshape(b, n * rest[0], *rest[1:])


def _leaf_gradient(
    leaves: dict[str, torch.Tensor], grads: dict[str, torch.Tensor | None], key: str, n: int
) -> torch.Tensor | None:
    """A folded batch norm's (N·C,) leaf gradient as (N, C); zeros where unused, None if absent."""
    if key not in leaves:
        return None
    g = grads[key]
    return (torch.zeros_like(leaves[key]) if g is None else g).reshape(n, -1)


def _replace_batch_norm(parent: nn.Module, batch_size: int | None) -> None:
    """Swap train-mode batch norms for `_FoldedBatchNorm` (batch_size given) or `_GroupBatchNorm`."""

    def swap(layer: nn.Module) -> nn.Module | None:
        if not isinstance(layer, _BN_TYPES):
            return None
        return _FoldedBatchNorm(layer, batch_size) if batch_size else _GroupBatchNorm(layer)

    _swap_layers(parent, swap)


def _fast_support(model: nn.Module) -> str | None:
    """None if every parameter lives in a layer the fast route handles, else the reason."""
    supported = (nn.Linear, nn.Conv2d, *_BN_TYPES)
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
        if per_sample_clip is not None and any(isinstance(m, _BN_TYPES) for m in model.modules()):
            reason = "per-sample clipping: batch norm mixes the samples of a batch"
        if reason is not None:
            raise NotImplementedError(reason)
        self.batch_size = batch_size
        self.per_sample_clip = per_sample_clip
        self.model = _private_copy(model, bn_train_mode)
        self.bn_running = _running_stats(self.model)
        index = {id(p): i for i, p in enumerate(self.model.parameters())}
        self.num_params = len(index)
        if bn_train_mode:
            _replace_batch_norm(self.model, batch_size)
        _replace_avg_pools(self.model)
        self.layers: list[tuple[nn.Module, int | None, int | None]] = []
        self._records: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self._calls: dict[nn.Module, int] = {}
        for module in self.model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, _FoldedBatchNorm, *_BN_TYPES)):
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
                m.leaves.values() if isinstance(m, _FoldedBatchNorm) else [self._records[m][1]]
            )
        grads = list(torch.autograd.grad(loss, wrt, create_graph=True, allow_unused=True))
        if self.per_sample_clip is not None:
            grads = self._clipped_signals(grads, b)
        updates: list[torch.Tensor | LinearFactors | None] = [None] * self.num_params
        bn_stats = []
        for module, wi, bi in self.layers:
            if isinstance(module, _FoldedBatchNorm):
                got = {k: grads.pop(0) for k in module.leaves}
                gw, gb = (_leaf_gradient(module.leaves, got, k, n) for k in ("weight", "bias"))
                bn_stats.append(module.stats)
            else:
                a, out = self._records[module]
                delta = grads.pop(0)
                if delta is None:
                    delta = torch.zeros_like(out)
                gw, gb = self._layer_gradients(module, a, delta, n)
                if isinstance(module, _BN_TYPES):
                    bn_stats.append(
                        _batch_moments(a.reshape(n, b, *a.shape[1:]), (1, *range(3, a.dim() + 1)))
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


# ------------------------------------------------------------------------- generic route


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
        self.model = _private_copy(model, bn_train_mode)
        self.bn_running = _running_stats(self.model)
        if bn_train_mode:
            # Batch statistics from each vmapped call's own batch; no running-stat updates.
            _replace_batch_norm(self.model, None)
        self.params = {k: v.detach() for k, v in self.model.named_parameters()}
        self.buffers = {k: v.detach() for k, v in self.model.named_buffers()}
        self.batch_size = batch_size
        self.protocol = protocol or Protocol()
        self.unroll = unroll and self.protocol.kind == "fedavg"
        self._bn_inputs: list[torch.Tensor] = []
        for m in self.model.modules():
            if isinstance(m, (*_BN_TYPES, _GroupBatchNorm)):
                m.register_forward_hook(lambda _m, inp, _out: self._bn_inputs.append(inp[0]))

    def _loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        self._bn_inputs.clear()
        logits = functional_call(self.model, (params, self.buffers), (x,))
        stats = [_batch_moments(a, (0, *range(2, a.dim()))) for a in self._bn_inputs]
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


# ----------------------------------------------------------------------------- selection


def build_updates(
    model: nn.Module,
    batch_size: int,
    bn_train_mode: bool,
    protocol: Protocol | None = None,
    unroll: bool = False,
    route: Route = "auto",
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    per_sample_clip: float | None = None,
) -> UpdateFunction:
    """The fastest update function that is exact for this model (see module docstring).

    `per_sample_clip` C: each candidate's update is the mean of its per-sample gradients
    clipped to norm C (DP-SGD's clean update, `attacks.clipping`); the generic route is
    then `attacks.per_sample.PerSampleClippedUpdates`.

    `auto` tries the fast route and keeps it only if, on a random probe of two candidates
    in float64, it matches the generic route to `PROBE_TOLERANCE` (guarding against layers
    that couple samples in ways the fast route cannot see). Unrolled FedAvg always takes
    the generic route.
    """
    unrolled = unroll and protocol is not None and protocol.kind == "fedavg"
    if per_sample_clip is not None:
        from attacks.per_sample import PerSampleClippedUpdates  # it builds on this module

        generic = PerSampleClippedUpdates(model, batch_size, per_sample_clip, protocol, unrolled)
    else:
        generic = VmapUpdates(model, batch_size, bn_train_mode, protocol, unroll=unrolled)
    if route == "vmap" or unrolled:
        return generic
    try:
        fast = ActivationUpdates(model, batch_size, bn_train_mode, per_sample_clip)
    except NotImplementedError:
        if route == "fast":
            raise
        return generic
    if route == "fast" or input_shape is None or num_classes is None:
        return fast
    if not _routes_agree(
        model, batch_size, bn_train_mode, input_shape, num_classes, per_sample_clip
    ):
        return generic
    return fast


PROBE_TOLERANCE = 1e-8
"""Largest difference, relative to the largest update entry, at which the routes agree.
The probe runs in float64 (in float32, train-mode batch norm over one image's few
pixels leaves the two routes 1e-2 apart in early layers), so that near-ties in max
pooling cannot route gradients differently and a layer that couples samples stands
out by orders of magnitude."""

PROBE_CLIP = 1e-4
"""The per-sample clip of the probe of clipped routes: below any gradient norm a random
input gives, so that the clip factors of every sample enter the comparison."""

_AGREEMENT: dict[tuple, bool] = {}
"""Probe results by architecture: whether the routes agree depends on the layers, not on
the weights, and a federation audits the same model round after round."""


def _architecture(model: nn.Module) -> tuple:
    modules = tuple((name, type(m).__qualname__, repr(m)) for name, m in model.named_modules())
    shapes = tuple((name, tuple(p.shape)) for name, p in model.named_parameters())
    return type(model).__qualname__, modules, shapes


def _routes_agree(
    model: nn.Module,
    batch_size: int,
    bn_train_mode: bool,
    input_shape: Sequence[int],
    num_classes: int,
    per_sample_clip: float | None = None,
) -> bool:
    key = (
        _architecture(model),
        batch_size,
        bn_train_mode,
        tuple(input_shape),
        num_classes,
        per_sample_clip is not None,
    )
    if key not in _AGREEMENT:
        _AGREEMENT[key] = _probe_routes(
            model, batch_size, bn_train_mode, input_shape, num_classes, per_sample_clip is not None
        )
    return _AGREEMENT[key]


def _probe_routes(
    model: nn.Module,
    batch_size: int,
    bn_train_mode: bool,
    input_shape: Sequence[int],
    num_classes: int,
    clipped: bool = False,
) -> bool:
    probe = copy.deepcopy(model).double().cpu()
    gen = torch.Generator().manual_seed(1234)
    x = torch.rand((2, batch_size, *input_shape), generator=gen, dtype=torch.float64)
    y = torch.randint(0, num_classes, (2, batch_size), generator=gen)
    try:
        if clipped:
            # a clip below the samples' gradient norms, so that it acts on every sample
            from attacks.per_sample import PerSampleClippedUpdates

            clip = PROBE_CLIP
            fast = ActivationUpdates(probe, batch_size, bn_train_mode, clip)(x, y).updates
            generic = PerSampleClippedUpdates(probe, batch_size, clip)(x, y).updates
        else:
            fast = ActivationUpdates(probe, batch_size, bn_train_mode)(x, y).updates
            generic = VmapUpdates(probe, batch_size, bn_train_mode)(x, y).updates
    except (RuntimeError, NotImplementedError):
        return False
    if any(u.shape != v.shape for u, v in zip(fast, generic, strict=True)):
        return False
    # One scale for all parameters: a parameter whose true gradient is zero (a convolution
    # bias before batch norm in train mode) holds only rounding noise in both routes.
    scale = max(max(v.abs().max().item() for v in generic), 1e-300)
    return all(
        (u - v).abs().max().item() <= PROBE_TOLERANCE * scale
        for u, v in zip(fast, generic, strict=True)
    )
