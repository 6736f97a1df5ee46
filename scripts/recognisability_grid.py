"""Reconstructions of every quality, sorted by SSIM: the picture behind fedsim's
"recognisable" threshold (`fedsim.metrics.recognisable`).

Attacks real images under a ladder of Gaussian noise levels (and batches of 4, where
images blend), scores each reconstruction after Hungarian matching, and draws every
original over its reconstruction in order of SSIM, each captioned with its SSIM and
PSNR and a line where the threshold falls. A person reads off where a reconstruction
stops showing what the private image shows.

    python scripts/recognisability_grid.py OUT.png --dataset mnist-sample
    python scripts/recognisability_grid.py OUT.png --dataset cifar10 --data-root DATA
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from attacks.specs import AttackSpec
from fedsim.attack_matrix.cells import (
    MatrixSettings,
    defended_batches,
    image_batches,
    run_cell,
)
from fedsim.metrics import match_by_psnr, ssim
from fedsim.metrics.recognisable import RECOGNISABLE_SSIM

LADDER = (
    (1, "none"),
    (1, "gaussian:sigma=0.03"),
    (1, "gaussian:sigma=0.1"),
    (1, "gaussian:sigma=0.2"),
    (1, "gaussian:sigma=0.3"),
    (1, "gaussian:sigma=0.4"),
    (1, "gaussian:sigma=0.6"),
    (4, "gaussian:sigma=0.1"),
    (16, "gaussian:sigma=0.03"),
)
"""(batch size, defense) pairs: from exact copies down to noise."""


def reconstructions(
    dataset: str, data_root: str | None, model: str, images: int, iterations: int
) -> list[dict]:
    """Every (original, reconstruction, SSIM, PSNR, setting) of the ladder."""
    scored: list[dict] = []
    for batch_size, spec in LADDER:
        settings = MatrixSettings(
            dataset=dataset,
            data_root=data_root,
            model=model,
            images=max(1, images // batch_size),
            batch_size=batch_size,
            labels_known=False,
            iterations=iterations,
        )
        info, x, y = image_batches(settings)
        batches = defended_batches(settings, spec, info, x, y, torch.device("cpu"))
        _, guesses = run_cell(settings, AttackSpec("bayes"), batches)
        originals = x.reshape(-1, *x.shape[2:])
        for start in range(0, len(originals), batch_size):
            original = originals[start : start + batch_size]
            guess = guesses[start : start + batch_size].clamp(0, 1)
            matching = match_by_psnr(guess, original)
            matched = matching.apply(guess)
            values = ssim(matched, original, reduction="none")
            for i in range(len(original)):
                scored.append(
                    {
                        "original": original[i],
                        "reconstruction": matched[i],
                        "ssim": float(values[i]),
                        "psnr": float(matching.psnr[i].clamp(max=100.0)),
                        "setting": f"batch {batch_size}, {spec}",
                    }
                )
    return scored


def draw(scored: list[dict], out: Path, per_row: int = 12) -> None:
    from matplotlib.figure import Figure

    scored = sorted(scored, key=lambda s: s["ssim"])
    rows = -(-len(scored) // per_row)
    figure = Figure(figsize=(1.1 * per_row, 2.5 * rows), dpi=100)
    axes = figure.subplots(2 * rows, per_row, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for index, item in enumerate(scored):
        row, column = divmod(index, per_row)
        for offset, key in ((0, "original"), (1, "reconstruction")):
            ax = axes[2 * row + offset][column]
            image = item[key].permute(1, 2, 0).numpy()
            if image.shape[2] == 1:
                ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(image)
        below = item["ssim"] < RECOGNISABLE_SSIM
        axes[2 * row + 1][column].set_title(
            f"SSIM {item['ssim']:.2f}\n{item['psnr']:.1f} dB",
            fontsize=7,
            y=-0.45,
            color="firebrick" if below else "black",
        )
    figure.suptitle(
        f"originals over reconstructions, by SSIM (red: below {RECOGNISABLE_SSIM})", fontsize=10
    )
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.4 / figure.get_figheight()))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--images", type=int, default=8, help="images per setting")
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    scored = reconstructions(args.dataset, args.data_root, args.model, args.images, args.iterations)
    draw(scored, args.out)
    summary = [{k: v for k, v in s.items() if isinstance(v, float | str)} for s in scored]
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} ({len(scored)} images)")


if __name__ == "__main__":
    main()
