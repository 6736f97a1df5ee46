"""κ: how often a guess that ignores the update already makes a private image recognisable.

The reconstruction bound (`defenses.reconstruction`) starts from the success of the best
guess an adversary can make without seeing anything of the client: κ = sup_w
P_z[SSIM(w, z) ≥ 0.4]. fedsim estimates it per data set from a family of data-only
guesses, each built from the held-out split (what an adversary may know about the data)
and scored against the training images the clients hold:

- constant images: black, white, and flat at the mean intensity;
- the mean image, and the mean image of each class;
- k-means centroids of the held-out images, overall and within each class;
- held-out images themselves, each taken as a fixed guess.

κ without labels is the best share of one guess over all private images; with labels
(granted by the threat model) the adversary picks the best guess per class, so κ is the
class-weighted mean of those best shares. The family is finite, so the true supremum
may be higher: a scenario can state its own (`audit.threat.kappa`). The numbers in
`MEASURED_KAPPA` come from `scripts/kappa_baselines.py` (EXPERIMENTS.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from defenses.reconstruction import Kappa
from fedsim.metrics.recognisable import RECOGNISABLE_SSIM


@dataclass(frozen=True)
class MeasuredKappa:
    """κ of one data set without and with the labels, and the guesses that reached them."""

    inferred: float
    given: float
    best_guess: str
    images: int


MEASURED_KAPPA: dict[str, MeasuredKappa] = {
    "mnist": MeasuredKappa(0.1002, 0.4028, "centroid 4 of class 1", 10000),
    # the larger of its own measurement (0.1015, 0.3540) and MNIST's guesses (0.0970, 0.4130)
    "mnist-sample": MeasuredKappa(0.1015, 0.4130, "centroid 2 of class 1", 2000),
    "cifar10": MeasuredKappa(0.0150, 0.0182, "flat", 4660),
}
"""Data set → κ measured by `scripts/kappa_baselines.py` on every image of its training
split (EXPERIMENTS.md §3 gives the command and the guesses)."""

_WINDOW, _SIGMA, _C1, _C2 = 11, 1.5, 0.01**2, 0.03**2


def kappa_for(dataset: str, labels_given: bool, stated: float | None = None) -> Kappa:
    """The scenario's κ: `stated` where given, else the measured one of `dataset`, else
    none (the bound is then not computed; the source says why)."""
    if stated is not None:
        return Kappa(stated, "stated by the scenario (audit.threat.kappa)")
    measured = MEASURED_KAPPA.get(dataset)
    if measured is None:
        return Kappa(
            None,
            f"no data-only baseline measured for {dataset!r}; state one with audit.threat.kappa",
        )
    labels = "given" if labels_given else "inferred"
    value = measured.given if labels_given else measured.inferred
    return Kappa(
        value,
        f"measured: share of {dataset}'s {measured.images} training images that the best "
        f"data-only guess (labels {labels}) makes recognisable, SSIM ≥ {RECOGNISABLE_SSIM} "
        "(fedsim.metrics.guess_baseline, EXPERIMENTS.md §3)",
    )


def _local_mean(images: torch.Tensor) -> torch.Tensor:
    """The 11×11 Gaussian-window mean of `fedsim.metrics.ssim`, as two 1-D passes."""
    coords = torch.arange(_WINDOW, dtype=images.dtype) - (_WINDOW - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * _SIGMA**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    rows = kernel.view(1, 1, 1, _WINDOW).expand(channels, 1, 1, _WINDOW)
    cols = kernel.view(1, 1, _WINDOW, 1).expand(channels, 1, _WINDOW, 1)
    return F.conv2d(F.conv2d(images, rows, groups=channels), cols, groups=channels)


class PairwiseSSIM:
    """SSIM of fixed guesses against many images, each image's statistics computed once."""

    def __init__(self, images: torch.Tensor, chunk: int = 2048) -> None:
        self.images = images.double()
        self.chunk = chunk
        self.mu = _local_mean(self.images)
        self.var = _local_mean(self.images.square()) - self.mu.square()

    def __call__(self, guess: torch.Tensor) -> torch.Tensor:
        """(N,) SSIM of one (C, H, W) guess against every image."""
        g = guess.double().unsqueeze(0)
        mu_g = _local_mean(g)
        var_g = _local_mean(g.square()) - mu_g.square()
        out = []
        for start in range(0, len(self.images), self.chunk):
            x = self.images[start : start + self.chunk]
            mu_x, var_x = self.mu[start : start + self.chunk], self.var[start : start + self.chunk]
            cov = _local_mean(x * g) - mu_x * mu_g
            ssim_map = ((2 * mu_g * mu_x + _C1) * (2 * cov + _C2)) / (
                (mu_g.square() + mu_x.square() + _C1) * (var_g + var_x + _C2)
            )
            out.append(ssim_map.mean(dim=(1, 2, 3)))
        return torch.cat(out)


def _kmeans(images: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k centroids of `images` after a few Lloyd iterations (empty clusters keep their seed)."""
    flat = images.reshape(len(images), -1).double()
    k = min(k, len(flat))
    centroids = flat[torch.randperm(len(flat), generator=generator)[:k]].clone()
    for _ in range(10):
        nearest = torch.cdist(flat, centroids).argmin(dim=1)
        for j in range(k):
            members = flat[nearest == j]
            if len(members):
                centroids[j] = members.mean(dim=0)
    return centroids.reshape(k, *images.shape[1:]).to(images.dtype)


def data_only_guesses(
    images: torch.Tensor, labels: torch.Tensor, pool: int = 200, clusters: int = 32, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Name → (C, H, W) guess, built from the adversary's own `images` and `labels` alone."""
    generator = torch.Generator().manual_seed(seed)
    like = images[0]
    guesses = {
        "black": torch.zeros_like(like),
        "white": torch.ones_like(like),
        "flat": images.mean(dim=(0, 2, 3)).view(-1, 1, 1).expand_as(like).clone(),
        "mean image": images.mean(dim=0),
    }
    for c in labels.unique().tolist():
        members = images[labels == c]
        guesses[f"mean of class {c}"] = members.mean(dim=0)
        for j, centroid in enumerate(_kmeans(members, max(2, clusters // 4), generator)):
            guesses[f"centroid {j} of class {c}"] = centroid
    for j, centroid in enumerate(_kmeans(images, clusters, generator)):
        guesses[f"centroid {j}"] = centroid
    for i in torch.randperm(len(images), generator=generator)[:pool].tolist():
        guesses[f"held-out image {i}"] = images[i]
    return guesses


@dataclass(frozen=True)
class KappaMeasurement:
    """κ without and with labels over `images` private images, and the guesses behind them."""

    inferred: float
    given: float
    best_guess: str
    best_per_class: dict[int, str]
    images: int


def measure_kappa(
    guesses: dict[str, torch.Tensor], private: torch.Tensor, private_labels: torch.Tensor
) -> KappaMeasurement:
    """The best share of recognisable private images over `guesses`, without and with labels."""
    ssim = PairwiseSSIM(private)
    hits = {name: ssim(guess) >= RECOGNISABLE_SSIM for name, guess in guesses.items()}
    shares = {name: float(hit.double().mean()) for name, hit in hits.items()}
    best = max(shares, key=shares.__getitem__)
    given, per_class = 0.0, {}
    for c in private_labels.unique().tolist():
        members = private_labels == c
        class_shares = {name: float(hit[members].double().mean()) for name, hit in hits.items()}
        per_class[c] = max(class_shares, key=class_shares.__getitem__)
        given += class_shares[per_class[c]] * float(members.double().mean())
    return KappaMeasurement(shares[best], given, best, per_class, len(private))
