"""Per-sample gradient clipping as DP-SGD's client does it, for candidate batches.

DP-SGD clips the gradient of every sample to norm C (over all parameters together)
and averages: (1/B) Σ_i f_i ∇θ ℓ(x_i, y_i) with f_i = min(1, C / (‖∇θ ℓ(x_i, y_i)‖ + ε)),
ε = `defenses.mechanisms.clipped.CLIP_EPSILON`, the client's own; the clip here works
from squared norms, as the fast route forms them.

On the fast route (`attacks.updates.ActivationUpdates`) a layer's per-sample gradient
is formed from its input a_i and the backpropagated signal δ_i of sample i, and every
parameter's gradient is linear in δ_i; so the clipped mean is the ordinary batch
gradient with each sample's signals scaled by f_i. The norms come from the same
factors without forming the dense layers' per-sample gradients: ‖δ aᵀ‖² = ‖δ‖²‖a‖²
(Opacus' ghost norm); a convolution's per-sample weight gradients are one grouped
convolution with a group per sample.
"""

from __future__ import annotations

import torch
from torch import nn

from defenses.mechanisms.clipped import CLIP_EPSILON


def clip_factors(sq_norms: torch.Tensor, clip: float) -> torch.Tensor:
    """min(1, C / (‖g_i‖ + ε)) from squared norms ‖g_i‖² (any shape)."""
    # clamped so that a zero gradient has a finite derivative, as torch.norm's at 0
    norms = sq_norms.clamp_min(1e-30).sqrt()
    return (clip / (norms + CLIP_EPSILON)).clamp(max=1.0)


def layer_sq_norms(
    module: nn.Module, a: torch.Tensor, delta: torch.Tensor, weight: bool, bias: bool
) -> torch.Tensor:
    """(S,) per-sample squared norm of a Linear or Conv2d layer's weight (if `weight`) and
    bias (if `bias`) gradients, from its input `a` and output signal `delta`, S samples."""
    s = a.shape[0]
    total = a.new_zeros(s)
    if isinstance(module, nn.Linear):
        a3, d3 = a.reshape(s, -1, a.shape[-1]), delta.reshape(s, -1, delta.shape[-1])
        if weight and a3.shape[1] == 1:
            total = total + a3.square().sum((1, 2)) * d3.square().sum((1, 2))
        elif weight:
            gram_a = torch.bmm(a3, a3.transpose(1, 2))
            gram_d = torch.bmm(d3, d3.transpose(1, 2))
            total = total + (gram_a * gram_d).sum((1, 2))
        if bias:
            total = total + d3.sum(1).square().sum(1)
        return total
    if not isinstance(module, nn.Conv2d):
        raise NotImplementedError(f"per-sample norms of {type(module).__name__} layers")
    if weight:
        per_sample = torch.nn.grad.conv2d_weight(
            a.reshape(1, -1, *a.shape[2:]),
            (s * module.weight.shape[0], *module.weight.shape[1:]),
            delta.reshape(1, -1, *delta.shape[2:]),
            module.stride,
            module.padding,
            module.dilation,
            groups=s,
        )
        total = total + per_sample.reshape(s, -1).square().sum(1)
    if bias:
        total = total + delta.sum((2, 3)).square().sum(1)
    return total
