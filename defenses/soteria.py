"""Soteria: prune the defended layer's gradient where the representation leaks most.

Reference: Sun, Li, Wang, Chen, Li, "Soteria: Provable Defense against Privacy
Leakage in Federated Learning from Representation Perspective", CVPR 2021.

The defended layer is a fully connected layer whose input is the representation r
(for ConvBig, the layer after the feature extractor). For each representation
element r_i the defense computes, summed over the batch, the score
‖∂r_i/∂x‖ / |r_i| — how much the input must move to change r_i, per unit of r_i.
Elements with the smallest scores (the `rate` percent below the percentile) are
those a reconstruction recovers most easily from, and the gradient of the defended
layer's weight is zeroed in their columns. Every other parameter's gradient is
sent unchanged. Heuristic: no likelihood is stated (mechanism None); the adapted
attack drops the defended layer from the matching loss (`adapted_attack`).

The layer is named by `layer`, a module path in `model.named_modules()` (e.g.
``body.fc2``). ``auto`` uses the layer the model names in its `defended_layer` or
`representation_layer` attribute (a path string or the module itself; ConvBig names
``body.fc2``, whose input is its 2000-d representation), else the model's last
`nn.Linear`.
"""

from __future__ import annotations

import torch
from torch import nn

from defenses.adapted import AdaptedAttack
from defenses.base import Defense, Parameter
from defenses.errors import DefenseError
from defenses.registry import register_defense


def find_defended_layer(model: nn.Module, layer: str) -> tuple[str, nn.Linear]:
    """The linear layer Soteria defends: by path, the model's `defended_layer`, or the last linear."""
    modules = dict(model.named_modules())
    if layer == "auto":
        declared = getattr(model, "defended_layer", None) or getattr(
            model, "representation_layer", None
        )
        if isinstance(declared, str):
            layer = declared
        elif isinstance(declared, nn.Linear):
            layer = next(name for name, m in modules.items() if m is declared)
        else:
            linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
            if not linears:
                raise DefenseError(
                    "soteria: parameter 'layer': the model has no linear layer to defend"
                )
            layer = linears[-1]
    module = modules.get(layer)
    if not isinstance(module, nn.Linear):
        linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
        raise DefenseError(
            f"soteria: parameter 'layer': {layer!r} is not a linear layer of the model; "
            f"accepted: auto, {', '.join(linears) or '(none)'}"
        )
    return layer, module


def representation_scores(model: nn.Module, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """(F,) Σ_batch ‖∂r_i/∂x_b‖ / |r_{b,i}| for the representation r entering `layer`.

    Runs one forward pass with the model's buffers restored afterwards (batch norm
    in train mode would otherwise update its running statistics).
    """
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    x = x.detach().requires_grad_(True)
    try:
        with torch.enable_grad():
            model(x)
        hook.remove()
        rep = captured[0].flatten(1)
        b, f = rep.shape
        eye = torch.eye(f, dtype=rep.dtype, device=rep.device).unsqueeze(1).expand(f, b, f)
        # Blocks of elements per batched backward pass bound the Jacobian's memory (~2^25 values).
        block = max(1, 2**25 // max(1, x.numel()))
        try:
            dx = torch.cat(
                [
                    torch.autograd.grad(
                        rep,
                        x,
                        grad_outputs=eye[i : i + block],
                        is_grads_batched=True,
                        retain_graph=True,
                    )[0]
                    for i in range(0, f, block)
                ]
            )
        except RuntimeError:  # an op without a batching rule: one backward pass per element
            dx = torch.stack(
                [
                    torch.autograd.grad(rep, x, grad_outputs=eye[i], retain_graph=True)[0]
                    for i in range(f)
                ]
            )
    finally:
        hook.remove()
        with torch.no_grad():  # after the backward passes: buffers are part of the graph
            for name, buffer in model.named_buffers():
                buffer.copy_(saved[name])
    sensitivity = dx.reshape(f, b, -1).norm(dim=2).T  # (B, F)
    ratio = sensitivity / rep.detach().abs().clamp_min(1e-12)
    return ratio.sum(dim=0)


@register_defense
class Soteria(Defense):
    """Gradient stage: zero the defended layer's weight columns of the least sensitive elements."""

    name = "soteria"
    examples = ("soteria:rate=50",)
    reference = (
        "Sun et al., Soteria: Provable Defense against Privacy Leakage in Federated Learning "
        "from Representation Perspective, CVPR 2021"
    )
    effect = (
        "prunes the defended layer's gradient where the representation is most sensitive (a"
        " heuristic: no likelihood; an attack that leaves that layer out recovers the images)"
    )
    parameters = (
        Parameter(
            "rate", float, 80.0, "percent of representation elements pruned", low=0.0, high=100.0
        ),
        Parameter(
            "layer",
            str,
            "auto",
            "the defended linear layer",
            values="auto (the model's representation_layer, else its last linear) or a module path such as body.fc2",
        ),
    )
    stages = frozenset({"gradient"})
    perturbs_update = True
    rate: float
    layer: str

    def adapted_attack(self, model: nn.Module | None = None) -> AdaptedAttack:
        """Cosine matching without the defended layer's weight gradient (the only one
        Soteria changes), the layer resolved on `model` (a placeholder without one)."""
        layer = self.layer
        if model is not None:
            layer, _ = find_defended_layer(model, self.layer)
        elif layer == "auto":
            layer = "<defended layer>"  # resolved once the model is known
        return AdaptedAttack(
            "cos",
            {},
            (f"{layer}.weight",),
            "drop the defended layer's weight gradient from the matching loss",
        )

    @property
    def mechanism_note(self) -> str:
        return "heuristic defense: no likelihood; adapted attack drops the defended layer"

    def mask(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(F,) 0/1 mask over representation elements: 0 where the score is below the percentile."""
        _, layer = find_defended_layer(model, self.layer)
        scores = representation_scores(model, layer, x)
        threshold = torch.quantile(scores.double(), self.rate / 100.0)
        return (scores.double() >= threshold).to(scores.dtype)

    def transform_gradients(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        grads: list[torch.Tensor],
        generator: torch.Generator,
    ) -> list[torch.Tensor]:
        _, layer = find_defended_layer(model, self.layer)
        index = next(i for i, p in enumerate(model.parameters()) if p is layer.weight)
        mask = self.mask(model, x)
        out = list(grads)
        out[index] = grads[index] * mask.to(grads[index].dtype).unsqueeze(0)
        return out
