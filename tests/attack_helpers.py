"""Shared builders for the attack tests: real MNIST images, the untrained paper CNN, targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks import AttackTarget, Protocol, ThreatModel
from fedsim.data import load_dataset
from fedsim.metrics.psnr import psnr as metrics_psnr
from fedsim.models import build_model


def mnist_images(
    data_root, count: int, split: str = "test"
) -> tuple[torch.Tensor, torch.Tensor, object]:
    data = load_dataset("mnist", split, data_root)
    return data.images[:count], data.labels[:count], data.info


def paper_cnn(info) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", info)


def gradient_target(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel | None = None,
    mechanism: object | None = None,
) -> AttackTarget:
    """A FedSGD target: the gradient of the mean loss of batch (x, y) at the model's parameters."""
    loss = F.cross_entropy(model(x), y)
    update = [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]
    return AttackTarget(
        model=model,
        update=update,
        batch_size=x.shape[0],
        input_shape=tuple(x.shape[1:]),
        num_classes=10,
        labels=y,
        mechanism=mechanism,
        threat=threat or ThreatModel(labels_known=True),
    )


def fedavg_target(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float,
    known: bool = True,
) -> AttackTarget:
    """A FedAvg target: the weight delta after `steps` full-batch SGD steps of `lr`."""
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    current = params
    for _ in range(steps):
        out = torch.func.functional_call(model, dict(zip(names, current, strict=True)), (x,))
        grads = torch.autograd.grad(F.cross_entropy(out, y), current)
        current = [p - lr * g for p, g in zip(current, grads, strict=True)]
    delta = [(c - p).detach() for c, p in zip(current, params, strict=True)]
    return AttackTarget(
        model=model,
        update=delta,
        batch_size=x.shape[0],
        input_shape=tuple(x.shape[1:]),
        num_classes=10,
        labels=y,
        protocol=Protocol(kind="fedavg", local_steps=steps, local_lr=lr),
        threat=ThreatModel(labels_known=True, local_hparams_known=known),
    )


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR in dB of images a against b (fedsim.metrics)."""
    return float(metrics_psnr(a.reshape(b.shape), b))
