"""The model states a matrix attacks: the network as trained under each defense, kept on disk.

The Bayesian framework paper attacks checkpoints of its networks trained with the defense
in place (its README: the defense name "denotes defense used to train the model"), with
Adam of lr 0.001 on batches of 32 (its code's `-lr 0.001` and batch-size default). Here,
from the scenario's seeded initialisation (step 0, the untrained model a matrix without
`[model.training]` attacks), each step takes the next batch of a seeded shuffle of the
training split, makes the update a client would send from it through the defense
(`defenses.client.client_update`, FedSGD: the defended mean gradient of the batch) and
takes one Adam step on that update. The defense acts as fedsim's defense of that name
does on a batch update (noise, for example, is drawn once for the batch's mean gradient).

States are kept in a cache folder, one sub-folder per training recipe, so every later run
(and `scripts/train_paper_states.py`, which trains them ahead) reuses them; a state
missing there is trained on first use, from step 0. Training is deterministic: a recipe
gives the same states on the same machine.

    CACHE/<dataset>-<model>-<defense>-<hash>/recipe.json     the recipe and each state's
                                                             test accuracy
    CACHE/<dataset>-<model>-<defense>-<hash>/step-000020.pt  the state dict after 20 steps

The defense's randomness in training is seeded from the scenario (a simulation), apart
from the seeds of the attacked updates, and no attack path receives it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from fedsim.checkpoints import state_for_model
from fedsim.private_files import private_dir, write_atomic

TRAINING_SEED_OFFSET = 2**40
"""Added to the seeds of training's batch order and defense noise, so that none of them
is the seed of an attacked or tuning update (`cells.defended_batches`)."""

EVALUATION_IMAGES = 500
"""Test images each kept state is evaluated on (all of a shorter split)."""


@dataclass(frozen=True)
class Recipe:
    """How a state was trained; its hash names the cache folder."""

    dataset: str
    train_size: int
    model: str
    defense: str
    seed: int
    batch_size: int
    lr: float
    optimizer: str = "adam"

    def folder(self, cache: str | Path) -> Path:
        text = json.dumps(asdict(self), sort_keys=True)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9.]+", "-", self.defense).strip("-")
        return Path(cache) / f"{self.dataset}-{self.model}-{slug}-{digest}"


@dataclass(frozen=True)
class TrainedState:
    """One kept state: the step it was taken after, its file and its test accuracy."""

    step: int
    path: Path
    test_accuracy: float | None

    def load(self, model: torch.nn.Module, model_name: str) -> dict[str, torch.Tensor]:
        return state_for_model(self.path, model, model_name, "model.training")

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "path": str(self.path), "test_accuracy": self.test_accuracy}


def _state_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:06d}.pt"


def _read_recipe(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "recipe.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _batches(size: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Index batches of a seeded shuffle of `size` samples, a new shuffle every epoch
    (the last incomplete batch of an epoch dropped, as the paper's loader does)."""
    per_epoch = max(1, size // batch_size)
    epoch = 0
    while True:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + TRAINING_SEED_OFFSET + epoch)
        order = torch.randperm(size, generator=generator)
        for b in range(per_epoch):
            yield order[b * batch_size : (b + 1) * batch_size]
        epoch += 1


def _accuracy(model: torch.nn.Module, test: Any, device: torch.device) -> float:
    count = min(len(test), EVALUATION_IMAGES)
    data = test.subset(list(range(count))).as_float()
    correct = 0
    with torch.no_grad():
        for start in range(0, count, 500):
            x = data.images[start : start + 500].to(device)
            y = data.labels[start : start + 500].to(device)
            correct += int((model(x).argmax(1) == y).sum())
    return correct / count


def train_states(
    recipe: Recipe,
    steps: Sequence[int],
    train: Any,
    test: Any | None,
    cache: str | Path,
    device: torch.device,
    say: Callable[[str], None] = lambda _: None,
) -> dict[int, TrainedState]:
    """The states of `recipe` after each of `steps`, trained now where the cache lacks one."""
    from defenses.client import client_update
    from defenses.registry import parse_defense
    from fedsim.models import build_model

    folder = recipe.folder(cache)
    known = _read_recipe(folder).get("states", {})
    wanted = sorted(set(steps))
    if all(_state_path(folder, s).is_file() and str(s) in known for s in wanted):
        return {s: TrainedState(s, _state_path(folder, s), known[str(s)]) for s in wanted}

    defense = parse_defense(recipe.defense)
    torch.manual_seed(recipe.seed)
    model = build_model(recipe.model, train.info).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    say(
        f"training {recipe.model} on {recipe.dataset} under {recipe.defense} to step"
        f" {wanted[-1]} (Adam lr {recipe.lr:g}, batches of {recipe.batch_size}) → {folder}"
    )
    private_dir(folder)
    batches = _batches(len(train), recipe.batch_size, recipe.seed)
    accuracies: dict[str, float | None] = {}
    for step in range(wanted[-1] + 1):
        if step in wanted:
            write_atomic(_state_path(folder, step), _state_bytes(model))
            accuracies[str(step)] = None if test is None else _accuracy(model, test, device)
        if step == wanted[-1]:
            break
        chosen = train.subset(next(batches)).as_float()
        generator = torch.Generator(device=device).manual_seed(
            recipe.seed * 1_000_003 + TRAINING_SEED_OFFSET + step
        )
        made = client_update(
            defense, model, chosen.images.to(device), chosen.labels.to(device), generator
        )
        for parameter, update in zip(model.parameters(), made.update, strict=True):
            parameter.grad = update.to(parameter.dtype)
        optimizer.step()
    record = {**asdict(recipe), "states": {**known, **accuracies}}
    write_atomic(folder / "recipe.json", json.dumps(record, indent=2).encode("utf-8"))
    say(
        "  test accuracy: "
        + ", ".join(
            f"step {s} {a:.1%}" if a is not None else f"step {s}"
            for s, a in ((s, accuracies[str(s)]) for s in wanted)
        )
    )
    return {s: TrainedState(s, _state_path(folder, s), accuracies[str(s)]) for s in wanted}


def states_by_defense(
    scenario: Any,
    splits: Mapping[str, Any],
    device: torch.device,
    steps: Sequence[int] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, list[TrainedState | None]]:
    """Per defense of an attack scenario, its trained states (`[model.training]`, or
    `steps` instead of the scenario's), trained now where the states folder lacks them;
    [None] (the untrained model) for a scenario without training."""
    from defenses import parse_defense

    training = scenario.model.training
    if training is None:
        return {spec: [None] for spec in scenario.defenses}
    steps = list(training.steps if steps is None else steps)
    train = splits["train"]
    out: dict[str, list[TrainedState | None]] = {}
    for spec in scenario.defenses:
        defense = parse_defense(spec)
        recipe = Recipe(
            dataset=scenario.data.dataset,
            train_size=len(train),
            model=defense.model_name or scenario.model.name,
            defense=defense.spec,
            seed=scenario.seed,
            batch_size=training.batch_size,
            lr=training.lr,
        )
        kept = train_states(recipe, steps, train, splits.get("test"), training.states, device, say)
        out[spec] = [kept[step] for step in steps]
    return out


def _state_bytes(model: torch.nn.Module) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()
