"""fedsim against breaching on breaching's own case: PSNR against wall time, per image.

The case is breaching 0.1.2's `1_single_image_small`: CIFAR-10, its ConvNet-64, one
image, labels given, Inverting Gradients with breaching's defaults at `--iterations`
(1,000). breaching's server sends its batch-norm buffers, so the client computes its
update in eval mode; `--train-mode` asks breaching for the variant without public
buffers (batch norm in train mode) and runs fedsim the same way.

For each image the breaching half (`breaching_side.py`, run with the interpreter of a
virtual environment that holds breaching) builds the case model from `--model-seed`,
computes the update with breaching's own user and attacks it; then fedsim loads the
same weights into its `ConvNet64` (breaching's `convK`/`bnK`/`linear` → `body.*`, its
CIFAR-10 mean and std, so the pixel image x·std + mean is the same input), recomputes
the update (checked against breaching's) and runs its `cos` attack with the defaults a
user gets. The tools alternate image by image, and each is timed around its attack call
alone. Both reconstructions are scored with fedsim's PSNR in pixel space.

Make breaching's environment once (breaching pins no torch; the registry's CPU-capable
torch 2.9.0 and torchvision 0.24.0 work):

    python3 -m venv BREACHING_ENV
    BREACHING_ENV/bin/pip install torch==2.9.0 torchvision==0.24.0 hydra-core scipy lpips platformdirs
    BREACHING_ENV/bin/pip install --no-deps breaching==0.1.2

then

    python benchmarks/versus_breaching.py --breaching-python BREACHING_ENV/bin/python \
        --data-root DATA [--classes 0 1 2 3 4 5] [--iterations 1000] [--out FILE]

The images are the first test image of each class in `--classes` (class 0's is the one
breaching's user 0 holds in this case). `--attack-seeds 0 1 2` runs both attacks once
per seed (breaching's torch seed, fedsim's `seed`, i.e. its start) and compares means:
one image's PSNR moves by tenths of a dB from seed to seed, and with the CPU's rounding.
Prints JSON: per image and tool the mean PSNR and seconds and each run's (with
breaching's (seconds, PSNR) curve); per image the ratio of wall times; and the summary.

fedsim's settings are chosen away from those test images: `--held-out 30 5 13 17 10 40`
(the second training image of classes 0-5) runs fedsim alone on training images, once
per `--fedsim-options` (repeat it), and prints each setting's PSNR per image and mean.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from attacks import AttackTarget, ThreatModel, build_attack
from attacks.target import Reconstruction
from fedsim.data import load_dataset
from fedsim.metrics.psnr import psnr
from fedsim.models.convnet64 import ConvNet64

SIDE = Path(__file__).with_name("breaching_side.py")


def _images(root: str | None, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    data = load_dataset("cifar10", "test", root)
    index = [int((data.labels == c).nonzero()[0]) for c in classes]
    return data.images[index], data.labels[index], index


def _breaching(
    python: str,
    image,
    label,
    args,
    folder: Path,
    iterations: int | None = None,
    attack_seed: int = 0,
) -> dict:
    request, reply = folder / "request.pt", folder / "reply.pt"
    torch.save(
        {
            "images": image[None],
            "labels": label.view(1),
            "model_seed": args.model_seed,
            "attack_seed": attack_seed,
            "iterations": args.iterations if iterations is None else iterations,
            "snapshot_every": args.snapshot_every,
            "train_mode": args.train_mode,
            "threads": torch.get_num_threads(),
        },
        request,
    )
    subprocess.run(
        [python, str(SIDE), str(request), str(reply)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=None if args.verbose else subprocess.DEVNULL,
    )
    return torch.load(reply)


def _model(reply: dict, train_mode: bool) -> ConvNet64:
    model = ConvNet64((3, 32, 32), 10, reply["mean"], reply["std"])
    model.body.load_state_dict(reply["state_dict"])
    return model.train(train_mode)


def _target(model: ConvNet64, image, label, train_mode: bool) -> AttackTarget:
    x, y = image[None], label.view(1)
    update = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    return AttackTarget(
        model=model,
        update=[u.detach() for u in update],
        batch_size=1,
        input_shape=(3, 32, 32),
        num_classes=10,
        labels=y,
        threat=ThreatModel(labels_known=True),
        bn_train_mode=train_mode,
    )


def _fedsim(target: AttackTarget, spec: dict) -> tuple[Reconstruction, float]:
    attack = build_attack("cos", **spec)
    start = time.perf_counter()
    rec = attack.reconstruct(target)
    return rec, time.perf_counter() - start


def _score(x: torch.Tensor, truth: torch.Tensor) -> float:
    return round(float(psnr(x.clamp(0, 1)[None], truth[None])), 2)


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 2)


def _breaching_run(reply: dict, image: torch.Tensor) -> dict:
    theirs = reply["results"][0]
    return {
        "psnr": _score(theirs["inputs"], image),
        "seconds": round(theirs["seconds"], 2),
        "curve": [
            {"iteration": it, "seconds": round(s, 2), "psnr": _score(x, image)}
            for it, s, x in theirs["snapshots"]
        ],
    }


def _image_row(
    args: argparse.Namespace, image, label, index: int, folder: Path
) -> tuple[dict, dict, str]:
    """Both tools on one image, once per attack seed, alternating; (row, breaching's
    attack configuration, breaching's torch version)."""
    spec = args.fedsim_options[0]
    ours, theirs = [], []
    target = None  # the model depends on --model-seed only: the same for every attack seed
    for seed in args.attack_seeds:
        reply = _breaching(args.breaching_python, image, label, args, folder, attack_seed=seed)
        theirs.append({"seed": seed, **_breaching_run(reply, image)})
        if target is None:
            target = _target(_model(reply, args.train_mode), image, label, args.train_mode)
            agreement = max(
                float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
                for a, b in zip(target.update, reply["results"][0]["update"], strict=True)
            )
        rec, seconds = _fedsim(target, {**spec, "seed": seed})
        ours.append(
            {
                "seed": seed,
                "psnr": _score(rec.inputs[0], image),
                "seconds": round(seconds, 2),
                "status": rec.status,
            }
        )
        # breaching's curve point reached within fedsim's time, same seed
        ours[-1]["breaching_psnr_at_these_seconds"] = next(
            (p["psnr"] for p in reversed(theirs[-1]["curve"]) if p["seconds"] <= seconds), None
        )
    row = {
        "test_index": index,
        "label": int(label),
        "update_max_relative_difference": agreement,
        "breaching": {
            "psnr": _mean([r["psnr"] for r in theirs]),
            "seconds": _mean([r["seconds"] for r in theirs]),
            "iterations": reply["attack_config"]["iterations"],
            "runs": theirs,
        },
        "fedsim": {
            "psnr": _mean([r["psnr"] for r in ours]),
            "seconds": _mean([r["seconds"] for r in ours]),
            "iterations": rec.iterations,
            "priors": rec.priors,
            "priors_source": rec.priors_source,
            "runs": ours,
        },
    }
    row["time_ratio_fedsim_over_breaching"] = round(
        row["fedsim"]["seconds"] / row["breaching"]["seconds"], 3
    )
    row["psnr_gain_db"] = round(row["fedsim"]["psnr"] - row["breaching"]["psnr"], 2)
    within = [r["breaching_psnr_at_these_seconds"] for r in ours]
    row["breaching_psnr_at_fedsim_seconds"] = None if None in within else _mean(within)
    return row, reply["attack_config"], reply["torch"]


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    images, labels, index = _images(args.data_root, args.classes)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for image, label, i in zip(images, labels, index, strict=True):
            row, breaching_config, breaching_torch = _image_row(args, image, label, i, Path(tmp))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    ratios = [r["time_ratio_fedsim_over_breaching"] for r in rows]
    gains = [r["psnr_gain_db"] for r in rows]
    return {
        "benchmark": "versus_breaching",
        "case": "breaching 1_single_image_small (CIFAR-10, ConvNet-64, batch 1, labels given)",
        "batch_norm": "train" if args.train_mode else "eval (breaching's public buffers)",
        "fedsim_attack": {"name": "cos", **args.fedsim_options[0]},
        "breaching_attack": breaching_config,
        "attack_seeds": args.attack_seeds,
        "torch": {"fedsim": torch.__version__, "breaching": breaching_torch},
        "threads": args.threads,
        "machine": platform.machine(),
        "images": rows,
        "summary": {
            "fedsim_reaches_breaching_psnr": all(g >= 0 for g in gains),
            "worst_time_ratio": max(ratios),
            "mean_time_ratio": round(sum(ratios) / len(ratios), 3),
            "mean_psnr_fedsim": _mean([r["fedsim"]["psnr"] for r in rows]),
            "mean_psnr_breaching": _mean([r["breaching"]["psnr"] for r in rows]),
        },
    }


def held_out(args: argparse.Namespace) -> dict:
    """fedsim alone on CIFAR-10 training images of the case, once per `--fedsim-options`:
    where its settings are chosen, away from the test images the comparison scores."""
    torch.set_num_threads(args.threads)
    data = load_dataset("cifar10", "train", args.data_root)
    with tempfile.TemporaryDirectory() as tmp:
        # breaching's side builds the case model; one iteration of its attack suffices
        reply = _breaching(
            args.breaching_python, data.images[0], data.labels[0], args, Path(tmp), iterations=1
        )
    model = _model(reply, args.train_mode)
    settings = []
    for spec in args.fedsim_options:
        rows = []
        for i in args.held_out:
            image, label = data.images[i], data.labels[i]
            rec, seconds = _fedsim(_target(model, image, label, args.train_mode), spec)
            rows.append(
                {
                    "train_index": i,
                    "psnr": _score(rec.inputs[0], image),
                    "seconds": round(seconds, 2),
                }
            )
        mean = _mean([r["psnr"] for r in rows])
        settings.append(
            {"fedsim_attack": {"name": "cos", **spec}, "images": rows, "mean_psnr": mean}
        )
        print(json.dumps(settings[-1]), file=sys.stderr, flush=True)
    return {
        "benchmark": "versus_breaching --held-out",
        "case": "breaching 1_single_image_small's model, CIFAR-10 training images",
        "batch_norm": "train" if args.train_mode else "eval (breaching's public buffers)",
        "threads": args.threads,
        "settings": settings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--breaching-python",
        required=True,
        help="python of a virtual environment with breaching 0.1.2 (see the module docstring)",
    )
    parser.add_argument("--data-root", default=None)
    parser.add_argument(
        "--classes",
        nargs="+",
        type=int,
        default=list(range(6)),
        help="attack the first test image of each of these classes (default 0-5)",
    )
    parser.add_argument("--iterations", type=int, default=1000, help="breaching's iterations")
    parser.add_argument(
        "--fedsim-options",
        action="append",
        type=json.loads,
        default=None,
        help="JSON options for fedsim's cos attack (default: none, the user's defaults), "
        "e.g. '{\"iterations\": 1000}'; with --held-out it may repeat",
    )
    parser.add_argument(
        "--held-out",
        nargs="+",
        type=int,
        default=None,
        metavar="TRAIN_INDEX",
        help="instead of the comparison: fedsim alone on these CIFAR-10 training images, "
        "once per --fedsim-options (to choose settings away from the scored test images)",
    )
    parser.add_argument("--train-mode", action="store_true", help="batch norm in train mode")
    parser.add_argument("--model-seed", type=int, default=0)
    parser.add_argument(
        "--attack-seeds",
        nargs="+",
        type=int,
        default=[0],
        help="run both attacks once per seed (breaching's torch seed, fedsim's start) and "
        "compare the means: one image's PSNR moves by tenths of a dB from seed to seed",
    )
    parser.add_argument("--snapshot-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--verbose", action="store_true", help="show breaching's log")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    if not Path(args.breaching_python).exists():
        parser.error(f"--breaching-python: {args.breaching_python} does not exist")
    args.fedsim_options = args.fedsim_options or [{}]
    if args.held_out is None and len(args.fedsim_options) > 1:
        parser.error("--fedsim-options: give it once, or several times with --held-out")
    report = held_out(args) if args.held_out is not None else run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
