"""The cells of an attack × defense matrix: defended updates of real images, attacked and scored.

Every image batch becomes the update a client would send (through `client_update`,
exactly as in the federation), every attack reconstructs all batches of a defense
in one batched call, and reconstructions are scored against the originals after
optimal matching.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from attacks.local_training import client_options
from attacks.seeding import stream_seed
from attacks.specs import AttackSpec
from attacks.target import AttackTarget, Budget, Protocol, Reconstruction, ThreatModel
from defenses.base import Defense, missing_mechanism, stated_mechanism
from defenses.client import client_update
from defenses.registry import parse_defense
from fedsim.attack_matrix.trained_states import TrainedState
from fedsim.data import load_dataset
from fedsim.errors import ConfigError
from fedsim.judgement.criteria import image_recovered
from fedsim.metrics import label_accuracy, match_by_psnr, ssim
from fedsim.metrics.capped import CappedPSNR, summarize_psnr
from fedsim.metrics.guesses import Guess, image_guess
from fedsim.metrics.psnr import PSNR_CAP_DB, psnr_per_image
from fedsim.models import build_model

DEFENSE_STREAM = "matrix-defense"
"""The stream (`attacks.seeding`) each target's defense draws its randomness from."""


@dataclass(frozen=True)
class MatrixSettings:
    """What `fedsim attack` was asked for."""

    dataset: str = "mnist-sample"
    split: str = "test"
    data_root: str | Path | None = None
    download: bool = False
    model: str = "cnn"
    attacks: Sequence[str] = ("bayes",)
    defenses: Sequence[str] = ("none",)
    images: int = 10
    batch_size: int = 1
    first: int = 0
    iterations: int | None = None
    restarts: int = 1
    labels_known: bool = True
    seed: int = 0
    device: str = "auto"
    protocol: Protocol = field(default_factory=Protocol)


@dataclass
class CellResult:
    """Scores of one attack against one defense over all attacked images."""

    attack: str
    defense: str
    dataset: str
    model: str
    images: int
    psnr: list[float]
    ssim: list[float]
    label_accuracy: float
    seconds: float
    statuses: list[str]
    priors: dict[str, float] = field(default_factory=dict)
    priors_source: str = "none"
    ssim_guess: list[float] = field(default_factory=list)
    """Per image: the SSIM of the guess that ignores the update (`fedsim.metrics.guesses`)."""
    guess: str = ""
    mechanism: dict[str, Any] | None = None
    """The likelihood the attack read (`attacks.likelihood.describe_likelihood`), or None
    with the reason in `mechanism_reason`."""
    mechanism_reason: str | None = None
    psnr_unclipped: list[float] = field(default_factory=list)
    """Per image, the PSNR of the reconstruction as the attack returned it, not clipped to
    [0, 1] (the Bayesian framework paper's); equal to `psnr` for an attack kept in the box."""

    @property
    def psnr_mean(self) -> float:
        return statistics.fmean(self.psnr)

    @property
    def psnr_median(self) -> float:
        return statistics.median(self.psnr)

    @property
    def psnr_summary(self) -> CappedPSNR:
        """Mean, median and the images at the cap (exact reconstructions)."""
        return summarize_psnr(self.psnr)

    @property
    def ssim_mean(self) -> float:
        return statistics.fmean(self.ssim)

    @property
    def recovered(self) -> list[bool]:
        """Per image: recovered as `fedsim.judgement` counts it (recognisable and above
        the guess that ignores the update, where one was scored)."""
        guesses = (
            self.ssim_guess if len(self.ssim_guess) == len(self.ssim) else [None] * len(self.ssim)
        )
        return [image_recovered(s, g) for s, g in zip(self.ssim, guesses, strict=True)]

    @property
    def recognisable(self) -> float:
        """The fraction of attacked images recovered (`recovered`)."""
        flags = self.recovered
        return sum(flags) / len(flags) if flags else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "defense": self.defense,
            "dataset": self.dataset,
            "model": self.model,
            "images": self.images,
            "psnr": self.psnr,
            "psnr_mean": self.psnr_mean,
            "psnr_median": self.psnr_median,
            "psnr_exact_fraction": self.psnr_summary.exact_fraction,
            "psnr_unclipped": self.psnr_unclipped,
            "psnr_unclipped_mean": statistics.fmean(self.psnr_unclipped)
            if self.psnr_unclipped
            else None,
            "ssim": self.ssim,
            "ssim_mean": self.ssim_mean,
            "ssim_guess": self.ssim_guess,
            "guess": self.guess,
            "recognisable": self.recognisable,
            "label_accuracy": self.label_accuracy,
            "seconds": self.seconds,
            "statuses": self.statuses,
            "priors": self.priors,
            "priors_source": self.priors_source,
            "mechanism": self.mechanism,
            "mechanism_reason": self.mechanism_reason,
        }


@dataclass
class _DefendedBatches:
    defense: Defense
    model_name: str
    targets: list[AttackTarget]
    originals: list[torch.Tensor]
    labels: list[torch.Tensor]
    guess: Guess | None = None


@functools.lru_cache(maxsize=4)
def _guess_for(dataset: str, root: str | None, labels_known: bool) -> Guess | None:
    """The guess that ignores the update, from the data set's training split: its mean
    per channel, or each class's mean image where the labels are granted."""
    try:
        train = load_dataset(dataset, "train", root).as_float()
    except Exception:  # noqa: BLE001 - no training split here: scored by the threshold alone
        return None
    if train.images.ndim != 4:
        return None
    return image_guess(train.images, train.labels if labels_known else None)


def matrix_guess(settings: MatrixSettings) -> Guess | None:
    """The guess of `settings`' data set and threat model (None where none can be made)."""
    root = None if settings.data_root is None else str(settings.data_root)
    return _guess_for(settings.dataset, root, settings.labels_known)


def select_batches(
    data: Any, first: int, images: int, batch_size: int, field: str = "--images"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (images, batch_size, C, H, W) and labels of `data` from index `first` on.

    `field` names the setting in the error when the split is too short.
    """
    count = images * batch_size
    if first < 0 or first + count > len(data):
        raise ConfigError(
            f"{field}: {images} batches of {batch_size} from index {first} "
            f"need {first + count} images; {data.info.name}/{data.split} has {len(data)}"
        )
    chosen = data.subset(list(range(first, first + count))).as_float()
    shape = (images, batch_size, *chosen.images.shape[1:])
    return chosen.images.reshape(shape), chosen.labels.reshape(shape[:2])


def image_batches(settings: MatrixSettings) -> tuple[Any, torch.Tensor, torch.Tensor]:
    data = load_dataset(
        settings.dataset, settings.split, settings.data_root, download=settings.download
    )
    images, labels = select_batches(data, settings.first, settings.images, settings.batch_size)
    return data.info, images, labels


def defended_batches(
    settings: MatrixSettings,
    spec: str,
    info: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    noise_offset: int = 0,
    state: TrainedState | None = None,
) -> _DefendedBatches:
    """Each batch as the update a client sends through `spec` (FedSGD of the seeded model,
    or of its trained `state`).

    Batch `index` draws the defense's randomness from the stream `DEFENSE_STREAM` of
    `settings.seed` at (`noise_offset`, `index`) (`attacks.seeding`: never the stream an
    attack's restarts draw from); targets built from other images (held-out tuning
    images) take another `noise_offset` so their noise differs.
    """
    defense = parse_defense(spec)
    model_name = defense.model_name or settings.model
    torch.manual_seed(settings.seed)
    model = build_model(model_name, info).to(device)
    if state is not None:
        model.load_state_dict(state.load(model, model_name))
    threat = ThreatModel(labels_known=settings.labels_known)
    mechanism, refusal = stated_mechanism(defense, settings.batch_size, settings.protocol)
    missing = missing_mechanism(defense, mechanism, refusal)
    targets = []
    for index, (x, y) in enumerate(zip(images, labels, strict=True)):
        generator = torch.Generator(device=device).manual_seed(
            stream_seed(settings.seed, DEFENSE_STREAM, noise_offset, index)
        )
        protocol = settings.protocol
        made = client_update(
            defense,
            model,
            x.to(device),
            y.to(device),
            generator,
            **client_options(protocol),
        )
        targets.append(
            AttackTarget(
                model=model,
                update=made.update,
                batch_size=settings.batch_size,
                input_shape=info.input_shape,
                num_classes=info.num_classes,
                labels=y.to(device) if settings.labels_known else None,
                mechanism=mechanism,
                mechanism_refusal=refusal,
                mechanism_missing=missing,
                protocol=settings.protocol,
                threat=threat,
            )
        )
    guess = matrix_guess(settings)
    return _DefendedBatches(defense, model_name, targets, list(images), list(labels), guess)


def _matched(rec: Reconstruction, original: torch.Tensor) -> tuple[torch.Tensor, Any]:
    guess = rec.inputs.detach().cpu().clamp(0, 1).to(original.dtype)
    return guess, match_by_psnr(guess, original)


def mean_matched_psnr(
    reconstructions: Sequence[Reconstruction], originals: Sequence[torch.Tensor]
) -> float:
    """Mean PSNR (dB, each capped at `PSNR_CAP_DB`) after optimal matching: a tuning score."""
    values = [
        min(float(v), PSNR_CAP_DB)
        for rec, original in zip(reconstructions, originals, strict=True)
        for v in _matched(rec, original)[1].psnr
    ]
    return statistics.fmean(values)


def _score(
    attack: AttackSpec,
    batches: _DefendedBatches,
    settings: MatrixSettings,
    reconstructions: Sequence[Reconstruction],
    seconds: float,
) -> CellResult:
    psnrs: list[float] = []
    unclipped: list[float] = []
    ssims: list[float] = []
    guessed: list[float] = []
    correct = 0.0
    for original, label, rec in zip(
        batches.originals, batches.labels, reconstructions, strict=True
    ):
        found, matching = _matched(rec, original)
        psnrs.extend(min(float(v), PSNR_CAP_DB) for v in matching.psnr)
        raw = matching.apply(rec.inputs.detach().cpu().to(original.dtype))
        unclipped.extend(min(float(v), PSNR_CAP_DB) for v in psnr_per_image(raw, original))
        ssims.extend(float(v) for v in ssim(matching.apply(found), original, reduction="none"))
        correct += float(label_accuracy(rec.labels.cpu(), label)) * len(label)
        if batches.guess is not None:
            guessed.extend(batches.guess.scores(original, label)["ssim_guess_images"])
    first = reconstructions[0] if reconstructions else None
    surrogate = first.surrogate if first is not None else None
    return CellResult(
        attack=attack.label if surrogate is None else f"{attack.label}~{surrogate}",
        defense=batches.defense.spec,
        dataset=settings.dataset,
        model=batches.model_name,
        images=len(psnrs),
        psnr=psnrs,
        ssim=ssims,
        label_accuracy=correct / len(psnrs),
        seconds=seconds,
        statuses=[rec.status for rec in reconstructions],
        priors=dict(first.priors) if first is not None else {},
        priors_source=first.priors_source if first is not None else "none",
        mechanism=first.likelihood if first is not None else None,
        mechanism_reason=(
            first.likelihood_note if first is not None else "the attack made no reconstruction"
        ),
        ssim_guess=guessed,
        guess="" if batches.guess is None else batches.guess.kind,
        psnr_unclipped=unclipped,
    )


def cell_budget(settings: MatrixSettings, attack: AttackSpec) -> Budget:
    """The budget of one cell: `settings.iterations`, else the attack's own default."""
    iterations = settings.iterations or attack.default_iterations
    return Budget(iterations=iterations, restarts=settings.restarts)


def run_cell(
    settings: MatrixSettings, attack: AttackSpec, batches: _DefendedBatches
) -> tuple[CellResult, torch.Tensor]:
    """One attack (already resolved for the defense) on every batch; scores and reconstructions."""
    budget = cell_budget(settings, attack)
    started = time.perf_counter()
    reconstructions = attack.run(batches.targets, budget, seed=settings.seed)
    seconds = time.perf_counter() - started
    result = _score(attack, batches, settings, reconstructions, seconds)
    return result, torch.cat([r.inputs.detach().cpu() for r in reconstructions])
