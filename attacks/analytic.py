"""Closed-form inversion of a leading fully connected layer: no optimisation, no prior."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from attacks.errors import AttackError
from attacks.labels import infer_labels
from attacks.registry import register_attack
from attacks.target import AttackTarget, Budget, Reconstruction

#: Rows compared pairwise when grouping a batch (the strongest); bounds memory on wide layers.
_MAX_CANDIDATE_ROWS = 4096


NO_LIKELIHOOD = "analytic-fc solves the layer's update in closed form and reads no likelihood"


class _Stop(Exception):
    """Raised by the probe hook to end a forward pass once the first layer is seen."""


@register_attack
@dataclass
class AnalyticFC:
    """`analytic-fc`: read the input off the gradient of a first `nn.Linear` with bias.

    For y = W z + b on the flattened, normalised image z, each sample contributes
    ∂L/∂W_i = (∂L/∂b_i) · z to row i, so z = ∂L/∂W_i / ∂L/∂b_i for any row with a non-zero
    bias gradient (Phong et al., "Privacy-Preserving Deep Learning via Additively
    Homomorphic Encryption", 2017; used by Balunović et al., ICLR 2022, to break PRECODE,
    whose variational bottleneck sits after such a layer and changes nothing here).

    Batch size 1: exact. The `rows` rows with the largest |∂L/∂b_i| are combined by least
    squares, z = Σ b_i W_i / Σ b_i², i.e. their estimates averaged with inverse-variance
    weights (∂L/∂b_i)², which is robust to rounding and to noise on the update.

    Batch size B > 1: a row gives the batch average weighted by each sample's signal on
    that unit, (Σ_n δ_ni z_n) / Σ_n δ_ni. Rows that only one sample activates (ReLU units
    off for the others) give that sample exactly, and distinct rows of the same sample give
    the same estimate, whereas mixtures differ from row to row; so estimates are grouped
    (relative distance below `tolerance`) and groups of at least two rows are taken as
    single images, strongest first — the idea of Fowl et al., "Robbing the Fed", ICLR 2022,
    here without a malicious server shaping the layer. When fewer than B such groups exist
    the remaining slots get the strongest other rows' estimates, which are mixtures; the
    `message` says how many images came from single-sample groups.

    The update may be a FedSGD gradient or a FedAvg weight delta: the ratio is invariant to
    scale and sign, and every local step adds δ_t,n z_n for the same inputs z_n, so a
    single image is recovered exactly after any number of full-batch local steps, and a
    unit that only one sample activates throughout stays pure. What does mix is a unit
    whose set of active samples changes between steps (or between local mini-batches);
    then the groups are fewer and the remaining estimates are mixtures, as above.
    """

    name: ClassVar[str] = "analytic-fc"
    reference: ClassVar[str] = (
        "Phong et al., Privacy-Preserving Deep Learning via Additively Homomorphic "
        "Encryption, 2017; Fowl et al., Robbing the Fed, ICLR 2022"
    )
    #: ThreatModel flags this attack needs set; it needs none (labels are inferred).
    needs: ClassVar[frozenset[str]] = frozenset()

    rows: int = 64
    tolerance: float = 1e-3
    seed: int = 0
    """Unused (the attack is deterministic); kept so every attack takes the same options."""

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise AttackError(f"analytic-fc: rows must be at least 1, got {self.rows}")
        if self.tolerance <= 0:
            raise AttackError(f"analytic-fc: tolerance must be positive, got {self.tolerance}")

    def reads(self) -> frozenset[str]:
        """Whether labels are granted, and the time budget (the auditor marks an attack
        that overran it): no optimisation, so no steps, restarts, prior or mechanism
        (see `GradientAttack.reads`)."""
        return frozenset({"labels_known", "seconds"})

    def reconstruct(self, target: AttackTarget, budget: Budget | None = None) -> Reconstruction:
        """Reconstruct the batch in pixel space; `budget` is accepted for the common interface.

        `objective` is the share of the first-layer weight gradient that the recovered
        inputs leave unexplained (see `_unexplained_fraction`); `iterations` is 0. For
        B > 1, B mixtures spanning the batch explain it as well as the images themselves,
        so there `message` (single-sample images out of B) says more than the objective.
        """
        start = time.perf_counter()
        _, weight_index, bias_index = first_linear_layer(target)
        normalisation = layer_input_map(target)
        weight_grad = target.update[weight_index].detach().double()
        bias_grad = target.update[bias_index].detach().double()
        labels, labels_inferred = _labels(target)

        strength = bias_grad.abs()
        peak = float(strength.max())
        if peak == 0.0:
            return self._failed(
                target, labels, labels_inferred, start, "first-layer bias gradient is zero"
            )
        usable = torch.nonzero(strength > 1e-6 * peak).flatten()
        usable = usable[torch.argsort(strength[usable], descending=True)]

        if target.batch_size == 1:
            groups = [usable[: self.rows]]
            message = ""
        else:
            candidates = usable[:_MAX_CANDIDATE_ROWS]
            groups, pure = _single_sample_groups(
                weight_grad[candidates], bias_grad[candidates], target.batch_size, self.tolerance
            )
            groups = [candidates[g[: self.rows]] for g in groups]
            message = f"{pure} of {target.batch_size} images from single-sample rows"

        estimates = []
        for rows in groups:
            w, b = weight_grad[rows], bias_grad[rows]
            estimates.append((b @ w) / (b @ b))
        layer_inputs = torch.stack(estimates)
        objective = _unexplained_fraction(weight_grad[usable], layer_inputs)
        inputs = _to_inputs(layer_inputs, normalisation, target)
        return Reconstruction(
            inputs=inputs,
            labels=labels,
            objective=torch.tensor([objective], dtype=torch.float32),
            best=0,
            iterations=0,
            seconds=time.perf_counter() - start,
            labels_inferred=labels_inferred,
            message=message,
            likelihood_note=NO_LIKELIHOOD,
        )

    def _failed(
        self,
        target: AttackTarget,
        labels: torch.Tensor,
        labels_inferred: bool,
        start: float,
        message: str,
    ) -> Reconstruction:
        device = target.update[0].device
        return Reconstruction(
            inputs=torch.full((target.batch_size, *target.input_shape), 0.5, device=device),
            labels=labels,
            objective=torch.tensor([float("inf")]),
            best=0,
            iterations=0,
            seconds=time.perf_counter() - start,
            labels_inferred=labels_inferred,
            status="failed",
            message=message,
            likelihood_note=NO_LIKELIHOOD,
        )


def first_linear_layer(target: AttackTarget) -> tuple[nn.Linear, int, int]:
    """The first parameterised module the forward pass reaches, if it is a Linear with bias.

    Found by running a probe image through the model with hooks on every module that owns
    parameters, stopping at the first one called (before it runs, so no state changes).
    Returns the layer and the positions of its weight and bias in `target.update`.
    """
    model = target.model
    requirement = (
        "analytic-fc needs the model's first parameterised layer to be an nn.Linear with "
        "bias on the flattened image (after the model's own normalisation)"
    )
    first = _probe_first_module(target)
    if not isinstance(first, nn.Linear) or first.bias is None:
        found = "none" if first is None else type(first).__name__
        raise AttackError(f"{requirement}; the first one is {found}")
    if first.in_features != math.prod(target.input_shape):
        raise AttackError(
            f"{requirement}; it takes {first.in_features} features, the image has "
            f"{math.prod(target.input_shape)}"
        )
    positions = {id(p): i for i, p in enumerate(model.parameters())}
    return first, positions[id(first.weight)], positions[id(first.bias)]


def layer_input_map(target: AttackTarget) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) with layer input = (image − mean) / std, per pixel, flattened.

    Read from the model's `input_mean` / `input_std` buffers when it has them (identity
    otherwise) and checked against what the first layer really receives on a probe image,
    so a model that transforms its input in any other way is refused.
    """
    model = target.model
    shape = target.input_shape
    buffers = dict(model.named_buffers())
    device = next(model.parameters()).device
    mean = buffers.get("input_mean", torch.zeros(()))
    std = buffers.get("input_std", torch.ones(()))
    mean = torch.broadcast_to(mean.detach().to(device, torch.float64), shape).reshape(-1)
    std = torch.broadcast_to(std.detach().to(device, torch.float64), shape).reshape(-1)

    probe = torch.rand((1, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    seen = _probe_layer_input(target, probe)
    expected = (probe.reshape(1, -1).double() - mean) / std
    if (
        seen is None
        or seen.shape != expected.shape
        or not torch.allclose(seen.double(), expected, rtol=1e-4, atol=1e-4)
    ):
        raise AttackError(
            "analytic-fc needs the first nn.Linear to receive the flattened image, normalised "
            "only by the model's input_mean / input_std; this model transforms it otherwise"
        )
    return mean, std


def _labels(target: AttackTarget) -> tuple[torch.Tensor, bool]:
    if target.threat.labels_known and target.labels is not None:
        return target.labels, False
    return infer_labels(target), True


def _single_sample_groups(
    weight_grad: torch.Tensor, bias_grad: torch.Tensor, batch_size: int, tolerance: float
) -> tuple[list[torch.Tensor], int]:
    """Up to `batch_size` groups of row indices (strongest first) whose estimates coincide.

    Rows come sorted by |∂L/∂b| descending. Returns the groups and how many of them have
    at least two rows (taken to be single-sample rows).
    """
    estimates = weight_grad / bias_grad[:, None]
    norms = estimates.norm(dim=1).clamp_min(1e-12)
    distance = torch.cdist(estimates, estimates) / norms[:, None]
    unassigned = torch.ones(len(estimates), dtype=torch.bool, device=estimates.device)
    groups: list[torch.Tensor] = []
    for i in range(len(estimates)):
        if not unassigned[i]:
            continue
        members = torch.nonzero(unassigned & (distance[i] < tolerance)).flatten()
        unassigned[members] = False
        groups.append(members)
    weight = [float(bias_grad[g].square().sum()) for g in groups]
    order = sorted(range(len(groups)), key=lambda k: (len(groups[k]) < 2, -weight[k]))
    chosen = [groups[k] for k in order[:batch_size]]
    pure = sum(len(g) >= 2 for g in chosen)
    while len(chosen) < batch_size:  # fewer distinct rows than samples: repeat the strongest
        chosen.append(chosen[len(chosen) % max(1, len(groups))])
    return chosen, pure


def _unexplained_fraction(weight_grad: torch.Tensor, layer_inputs: torch.Tensor) -> float:
    """Share of ‖∂L/∂W‖² outside the span of the recovered layer inputs (0: exactly explained).

    Every row of the true gradient is a combination of the batch's inputs, so this is the
    residual of the layer equation ∂L/∂W = Σ_n δ_n z_nᵀ with the best coefficients.
    """
    coefficients = weight_grad @ torch.linalg.pinv(layer_inputs)  # rank-safe least squares
    residual = weight_grad - coefficients @ layer_inputs
    return float(residual.square().sum() / weight_grad.square().sum().clamp_min(1e-300))


def _to_inputs(
    layer_inputs: torch.Tensor,
    normalisation: tuple[torch.Tensor, torch.Tensor],
    target: AttackTarget,
) -> torch.Tensor:
    """Undo the model's normalisation and bring the result into the target's domain
    (images: clamped to [0, 1]; one-hot groups: the largest entry)."""
    mean, std = normalisation
    inputs = (layer_inputs * std + mean).float().reshape(-1, *target.input_shape)
    target.domain.project_(inputs)
    return target.domain.finalize(inputs)


def _probe_first_module(target: AttackTarget) -> nn.Module | None:
    found: list[nn.Module] = []

    def stop(module: nn.Module, _: tuple[torch.Tensor, ...]) -> None:
        found.append(module)
        raise _Stop

    device = next(target.model.parameters()).device
    _run_with_hooks(target, stop, torch.zeros((1, *target.input_shape), device=device))
    return found[0] if found else None


def _probe_layer_input(target: AttackTarget, probe: torch.Tensor) -> torch.Tensor | None:
    seen: list[torch.Tensor] = []

    def stop(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.append(args[0].detach().reshape(args[0].shape[0], -1))
        raise _Stop

    _run_with_hooks(target, stop, probe)
    return seen[0] if seen else None


def _run_with_hooks(target: AttackTarget, hook: object, probe: torch.Tensor) -> None:
    """Forward `probe` with `hook` as pre-hook on every parameter-owning module, in eval mode.

    The hook raises `_Stop` at the first such module, before it runs, so the pass changes
    no buffers; module modes are restored after.
    """
    model = target.model
    modes = {m: m.training for m in model.modules()}
    owners = [m for m in model.modules() if next(m.parameters(recurse=False), None) is not None]
    handles = [m.register_forward_pre_hook(hook) for m in owners]
    try:
        model.eval()
        with torch.no_grad():
            model(probe)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
