"""Infer the labels of a client's batch from its update alone, without the images.

Both methods read the classifier head: the last 2-D parameter whose first dimension is
`num_classes` (the last `nn.Linear` onto the logits), and the 1-D bias registered right
after it when there is one. They assume a mean cross-entropy loss over the batch, as the
clients compute it, and (for the weight-gradient route) non-negative head inputs, as
after a ReLU.

Labels come back sorted: a gradient of a mean loss is invariant to the order of the
batch, so only the multiset of labels is recoverable; score it order-independently
(as `fedsim.metrics.label_accuracy` does).

Two readings serve two purposes. `infer_labels` gives the labels an attack optimises
with; its class probabilities come from the model on random inputs, exact where
reconstruction attacks work (small batches early in training). `count_labels` gives
the class histogram an update gives away at any batch size and training state, from
the head's update alone (no forward pass), calibrated on the batch itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attacks.errors import AttackError
from attacks.local_training import gradient_weights
from attacks.target import AttackTarget, Protocol


def approximate_gradient(target: AttackTarget) -> list[torch.Tensor]:
    """The update as a gradient of the mean batch loss.

    FedSGD updates are that gradient already. A FedAvg update is the weight delta after
    `local_steps` SGD steps, delta = −lr · Σ_t g_t, so −delta / (lr · steps) is the mean
    of the local gradients: exact for one full-batch step, an approximation otherwise
    (the parameters move between steps). With momentum or a learning-rate schedule
    delta = −Σ_t c_t g_t (`attacks.local_training.gradient_weights`) and the divisor is
    Σ_t c_t; under Adam it is Σ_t lr_t, and only the signs mean anything. Without the
    sign flip every label method would read the head backwards.
    """
    update = [u.detach() for u in target.update]
    if target.protocol.kind != "fedavg":
        return update
    scale = _gradient_scale(target.protocol)
    if scale <= 0:
        raise AttackError(
            f"protocol: local_lr · local_steps must be positive to read a FedAvg update, got {scale}"
        )
    return [-u / scale for u in update]


def _gradient_scale(protocol: Protocol) -> float:
    """Σ_t c_t: a FedAvg delta is −(that) times the weighted mean local gradient."""
    if protocol.plain_sgd:
        return protocol.local_lr * protocol.local_steps
    weights = gradient_weights(protocol)
    return float(weights.sum()) if weights is not None else float(sum(protocol.step_lrs()))


def classifier_head(target: AttackTarget) -> tuple[str, int, int | None]:
    """(module name, weight index, bias index or None) of the last layer onto the logits.

    Indices are positions in `model.parameters()` order, i.e. in `target.update`.
    """
    named = list(target.model.named_parameters())
    weight_index = None
    for i, (_, p) in enumerate(named):
        if p.ndim == 2 and p.shape[0] == target.num_classes:
            weight_index = i
    if weight_index is None:
        raise AttackError(
            f"label inference needs a last linear layer with {target.num_classes} outputs "
            "(a 2-D parameter whose first dimension is num_classes); the model has none"
        )
    weight_name = named[weight_index][0]
    module_name = weight_name.rpartition(".")[0]
    bias_index = None
    if weight_index + 1 < len(named):
        name, p = named[weight_index + 1]
        if name == f"{module_name}.bias" and tuple(p.shape) == (target.num_classes,):
            bias_index = weight_index + 1
    return module_name, weight_index, bias_index


def infer_labels(target: AttackTarget, *, dummy_inputs: int = 64, seed: int = 0) -> torch.Tensor:
    """Labels (batch_size,) int64, sorted, inferred from the head's gradient.

    Batch size 1 — iDLG (Zhao, Mopuri, Bilen, "iDLG: Improved Deep Leakage from Gradients",
    2020): with cross-entropy, ∂L/∂b_c = p_c − 1[y = c] is negative only for the true
    class, and the weight row ∂L/∂W_c = (p_c − 1[y = c]) h has the same sign pattern when
    h ≥ 0. Exact, no assumption about p.

    Larger batches — count estimation from the head, after LLG+ (Wainakh et al., "User-Level
    Label Leakage from Gradients in Federated Learning", PETS 2022) and Geng et al.
    ("Towards General Deep Leakage in Federated Learning", 2021): for the mean loss over
    B samples, ∂L/∂b_c = (1/B) Σ_i p_ic − n_c / B, so n_c = B · (p̄_c − ∂L/∂b_c) where p̄_c is
    the batch's mean softmax output. p̄ is estimated by feeding `dummy_inputs` uniform
    random images through the known model (an assumption that holds best for untrained
    or uncertain models). Without a bias the weight-row sums stand in for ∂L/∂b, divided
    by the mean ‖h‖₁ of the head's input (LLG's "impact"), calibrated on the classes the
    batch lacks (see `_impact`) rather than on the dummy images, whose ‖h‖₁ is far off.
    Every class with a negative bias gradient (or row sum) certainly occurs and gets one
    label first; the rest are handed out one at a time to the class whose estimated count
    most exceeds what it holds, so repeated labels are recovered.
    """
    gradient = approximate_gradient(target)
    module_name, weight_index, bias_index = classifier_head(target)
    device = gradient[weight_index].device
    if bias_index is not None:
        signal = gradient[bias_index].detach().cpu().double()
    else:
        signal = gradient[weight_index].detach().cpu().double().sum(dim=1)

    if target.batch_size == 1:
        return signal.argmin().reshape(1).to(device=device, dtype=torch.int64)

    mean_probs, mean_activation, _ = _dummy_statistics(target, module_name, dummy_inputs, seed)
    if bias_index is None:
        signal = signal / _impact(signal, mean_probs, mean_activation)
    expected = target.batch_size * (mean_probs - signal)
    labels = _allocate(expected, present=signal < 0, batch_size=target.batch_size)
    return labels.to(device)


@dataclass(frozen=True)
class LabelCounts:
    """How many samples of each class the batch holds (`counts`, (num_classes,) int64,
    summing to the batch size), and the method that read them from the update."""

    counts: torch.Tensor
    method: str


def count_labels(target: AttackTarget) -> LabelCounts:
    """The batch's class histogram from the head's update alone: cheap at any batch size.

    With the mean loss over B samples the head's bias gradient is g_c = p̄_c − n_c/B
    (Wainakh et al., "User-Level Label Leakage from Gradients in Federated Learning",
    PETS 2022). The batch's mean softmax output p̄ is modelled as p̄_c = a·n_c/B + (1 − a)/C:
    a share a of the probability on the true class, the rest spread evenly over the C
    classes (a = 0 for an untrained model, near 1 for a trained one). Then
    n_c/B = 1/C − g_c/κ with κ = 1 − a, and an absent class has g_c = κ/C: κ is read from
    the batch itself. A class is absent where its weight-gradient row has no negative
    entry (∂L/∂W_c = (1/B)·Σ_i (p_ic − y_ic)·h_i with head inputs h ≥ 0, as after a ReLU:
    only a sample of class c makes it negative), and κ = C·mean g over those classes.
    Where every class is present, κ is at least C·max g (no negative counts) and at least
    1 − (the model's mean largest class probability on random inputs); κ ≤ 1. Unlike p̄
    from random inputs (`infer_labels`), which a trained model maps to a few confident
    classes, this holds across training (measured in EXPERIMENTS.md). Without a head bias
    the weight-row sums stand in for g, scaled by the head input's mean ‖h‖₁, which the
    calibration on absent classes (else C·max g) absorbs.

    FedAvg: g is the optimiser-weighted mean of the local gradients (`approximate_gradient`;
    Dimitrov et al., "Data Leakage in Federated Averaging", TMLR 2022, read the FedSGD
    quantities along the local steps), with weight decay's share of the head's update
    taken out (−λ·Σ c_t θ_t, θ_t taken halfway between the start and the sent head). Adam
    normalises every coordinate, so only signs survive: the classes whose head bias (or
    weight-row sum) rose are present and share the batch evenly. One sample: iDLG.
    """
    module_name, weight_index, bias_index = classifier_head(target)
    protocol = target.protocol
    head = "bias" if bias_index is not None else "weight-row sums"

    def head_signal(tensors: list[torch.Tensor]) -> torch.Tensor:
        if bias_index is not None:
            return tensors[bias_index].detach().cpu().double()
        return tensors[weight_index].detach().cpu().double().sum(dim=1)

    gradient = approximate_gradient(target)
    signal = head_signal(gradient)
    rows = gradient[weight_index].detach().cpu().double().flatten(1)
    size, classes = target.batch_size, signal.numel()
    if size == 1:
        return LabelCounts(_histogram(signal.argmin().reshape(1), classes), f"iDLG ({head})")
    fedavg = protocol.kind == "fedavg"
    if fedavg and protocol.optimizer.name != "sgd":
        present = signal < 0 if bool((signal < 0).any()) else signal == signal.min()
        share = present.double() * size / int(present.sum())
        return LabelCounts(
            _histogram(_allocate(share, present, size), classes),
            f"signs of the head's {head} update under {protocol.optimizer.name}: the classes "
            "present share the batch evenly (Adam keeps no magnitudes)",
        )
    if fedavg and protocol.optimizer.decay:
        params = [p.detach() for p in target.model.parameters()]
        decay = protocol.optimizer.decay
        signal = signal - decay * (head_signal(params) + 0.5 * head_signal(list(target.update)))
        halfway = params[weight_index] + 0.5 * target.update[weight_index].detach()
        rows = rows - decay * halfway.cpu().double().flatten(1)
    absent = rows.min(dim=1).values >= -1e-6 * float(rows.abs().max())
    if bool(absent.any()) and not bool(absent.all()):
        kappa = classes * float(signal[absent].mean())
    else:
        absent = torch.zeros_like(absent)
        kappa = classes * float(signal.max())
        if bias_index is not None:
            _, _, confidence = _dummy_statistics(target, module_name, 64, 0)
            kappa = max(kappa, 1.0 - confidence)
    if bias_index is not None:
        kappa = min(kappa, 1.0)
    if kappa <= 0:
        kappa = 1.0
    expected = size * (1.0 / classes - signal / kappa)
    expected[absent] = -float(size)  # a count only if the batch has more classes than that
    labels = _allocate(expected, present=signal < 0, batch_size=size)
    steps = f", mean of {protocol.local_steps} local steps" if fedavg else ""
    calibration = f"{int(absent.sum())} absent classes" if absent.any() else "no absent class"
    return LabelCounts(
        _histogram(labels, classes),
        f"head {head}{steps}: n/B = 1/C − g/κ, κ = {kappa:.3g} ({calibration})",
    )


def _histogram(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.bincount(labels.cpu().long(), minlength=classes)


def _impact(row_sums: torch.Tensor, mean_probs: torch.Tensor, dummy: torch.Tensor) -> torch.Tensor:
    """Mean ‖h‖₁ of the batch, the factor between weight-row sums and bias gradients.

    For an absent class the row sum is ≈ p̄_c · mean ‖h‖₁, for a present one it is smaller,
    so the largest ratio row sum / p̄_c calibrates on the batch itself. Dummy images (noise
    is brighter than most data) serve only when no row sum is positive.
    """
    ratio = row_sums / mean_probs.clamp_min(1e-12)
    best = ratio.max()
    return best if best > 0 else dummy.clamp_min(1e-12)


def _allocate(expected: torch.Tensor, present: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Integer counts summing to `batch_size` that follow `expected`, at least one per `present` class."""
    counts = torch.zeros_like(expected)
    certain = torch.nonzero(present).flatten()
    if certain.numel() > batch_size:
        # More negative entries than samples can only come from noise; keep the strongest.
        certain = certain[torch.argsort(expected[certain], descending=True)[:batch_size]]
    counts[certain] = 1
    for _ in range(batch_size - int(counts.sum())):
        counts[torch.argmax(expected - counts)] += 1
    return torch.repeat_interleave(torch.arange(expected.numel()), counts.to(torch.int64)).to(
        torch.int64
    )


def _dummy_statistics(
    target: AttackTarget, module_name: str, count: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mean softmax output, mean ‖head input‖₁ and mean largest class probability of the
    model on random inputs of the target's domain (uniform random images; random feature rows).

    Runs in the client's training mode; buffers (batch-norm running statistics), module
    modes, the global RNG and any generator a module holds (e.g. a variational bottleneck's)
    are restored after, so the target's model and the caller's randomness are left as
    they were.
    """
    model = target.model
    head = model.get_submodule(module_name) if module_name else model
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []

    def keep_input(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured.append(args[0].detach())

    noise = torch.Generator().manual_seed(seed)
    images = target.domain.random_inputs((count, *target.input_shape), noise).to(device)
    buffers = [(b, b.clone()) for b in model.buffers()]
    generators = [
        (g, g.get_state())
        for m in model.modules()
        for g in vars(m).values()
        if isinstance(g, torch.Generator)
    ]
    modes = {m: m.training for m in model.modules()}
    devices = [device] if device.type == "cuda" else []
    handle = head.register_forward_pre_hook(keep_input)
    try:
        model.train(target.bn_train_mode)
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            logits = model(images)
    finally:
        handle.remove()
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for held, state in generators:
            held.set_state(state)
        for module, training in modes.items():
            module.training = training
    if not captured:
        raise AttackError(
            f"label inference: the head layer {module_name!r} is not called in forward"
        )
    softmax = torch.softmax(logits.double(), dim=-1)
    activation = captured[-1].double().flatten(1).abs().sum(dim=1).mean().cpu()
    return softmax.mean(dim=0).cpu(), activation, float(softmax.max(dim=-1).values.mean())
