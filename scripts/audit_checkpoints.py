"""Audit a trained federation at several of its states: train once, attack many times.

For each state R (the global model after round R, from the training run's kept
checkpoints `federation.keep_checkpoints`; R = 0 is its seeded initialisation) this
runs one more round of the same federation, started from that checkpoint
(`model.checkpoint`, `model.checkpoint_round = R`), in which `--clients` seeded
clients each train one local epoch on `--batch-size` private images in one
mini-batch, and the auditor attacks all their updates. The training run's data,
partition, defenses, learning rate and seed are kept, so each audited update is one
that client could send at that state. Then it prints (and writes to OUT/table.md) one
row per state: the test accuracy of the state, and per attack the mean PSNR and how
many images were recovered recognisably.

    python scripts/audit_checkpoints.py TRAIN_RUN OUT --batch-size 1 --clients 4 \\
        --states 0 1 5 20 100 500 --attacks "[{name = 'bayes'}]" [--set KEY=VALUE ...]

A state already audited in OUT (its leakage.jsonl complete) is not run again.
`fedsim report OUT [OUT2 ...]` reads OUT as one run over training (its verdict,
leakage per state and against accuracy); several OUT folders, of several defenses,
overlay into the privacy–utility picture over training.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from fedsim.records import LEAKAGE_FILE, SCENARIO_FILE
from fedsim.report import load_run
from fedsim.scenario.loading import (
    apply_override,
    parse_override,
    scenario_to_toml,
    settle_stored,
)


def state_scenario(
    train: dict[str, Any], state: int, batch_size: int, clients: int, attacks: list[dict]
) -> dict[str, Any]:
    """The training scenario, set to audit one round after `state` (see the module doc)."""
    raw = {k: v for k, v in train.items() if k != "run"}
    raw["federation"] = {
        k: v for k, v in raw.get("federation", {}).items() if k != "keep_checkpoints"
    }
    # Only the audited clients train in the audit round: its aggregate is not used.
    raw["federation"].update(rounds=state + 1, clients_per_round=clients)
    protocol = {
        k: v for k, v in raw.get("protocol", {}).items() if k not in ("local_steps", "local_epochs")
    }
    protocol["batch_size"] = batch_size
    if protocol.get("kind") == "fedavg":
        protocol.update(local_batch_size=batch_size, local_epochs=1)
    raw["protocol"] = protocol
    raw["attacks"] = attacks
    audit = dict(raw.get("audit", {}))
    audit.update(rounds={"rounds": [state + 1]}, clients={})
    raw["audit"] = audit
    raw["name"] = f"{train.get('name', 'run')}-b{batch_size}-s{state}"
    return raw


def checkpoint_of(train_run: Path, state: int) -> Path:
    path = train_run / "checkpoints" / f"round-{state:04d}.pt"
    if not path.is_file():
        raise SystemExit(f"{train_run} kept no checkpoint of round {state} ({path})")
    return path


def audit_state(
    train_run: Path, out: Path, state: int, args: argparse.Namespace, attacks: list[dict]
) -> tuple[Path, float | None]:
    """Run (or reuse) the audit of one state; its run directory and wall seconds."""
    run_dir = out / f"state-{state:04d}"
    timing = out / f"state-{state:04d}.seconds"
    if (run_dir / LEAKAGE_FILE).is_file() and not load_run(run_dir).partial:
        return run_dir, float(timing.read_text()) if timing.is_file() else None
    train = tomllib.loads((train_run / SCENARIO_FILE).read_text(encoding="utf-8"))
    raw = state_scenario(train, state, args.batch_size, args.clients, attacks)
    if state > 0:
        raw["model"] = {
            **raw.get("model", {}),
            "checkpoint": str(checkpoint_of(train_run, state).resolve()),
            "checkpoint_round": state,
        }
    changed = []
    for text in args.set:
        keys, value = parse_override(text)
        apply_override(raw, keys, value)
        changed.append(".".join(keys))
    # A bad setting, or a --set that would do nothing, is refused before running; what the
    # training run set and the audit round leaves without effect is dropped, and said so.
    chosen, dropped = settle_stored(raw, changed)
    for reason in dropped:
        print(f"audit_checkpoints: dropped from the training scenario: {reason}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    scenario = out / f"state-{state:04d}.toml"
    scenario.write_text(scenario_to_toml(chosen, acting=True), encoding="utf-8")
    started = time.perf_counter()
    command = [sys.executable, "-m", "fedsim.cli", "run", str(scenario), "--out", str(run_dir)]
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    timing.write_text(f"{seconds:.1f}\n", encoding="utf-8")
    return run_dir, seconds


def table(rows: list[tuple[int, Path, float | None]], batch_size: int) -> str:
    """Markdown: per state, its accuracy and per attack mean PSNR and images recovered."""
    runs = [(state, load_run(path), seconds) for state, path, seconds in rows]
    attacks = sorted({f.series.label for _, run, _ in runs for f in run.facts()})
    header = ["state (rounds trained)", "test accuracy"]
    header += [f"{a} PSNR / recovered" for a in attacks] + ["seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for state, run, seconds in runs:
        accuracy = run.accuracy_after().get(state)
        cells = [str(state), "–" if accuracy is None else f"{100 * accuracy:.1f} %"]
        audited = {f.series.label: f.rounds for f in run.facts()}
        for key in attacks:
            found = [r for r in audited.get(key, []) if r.items]
            if not found:
                cells.append("–")
                continue
            r = found[0]
            cells.append(f"{statistics.fmean(r.psnr):.1f} dB / {r.recovered} of {r.items}")
        cells.append("–" if seconds is None else f"{seconds:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    defense = runs[0][1].scenario.get("defenses") or ["none"]
    title = f"batch size {batch_size}, defense {'+'.join(defense)}"
    return f"{title}\n\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_run", type=Path, help="run directory of the training run")
    parser.add_argument("out", type=Path, help="folder of the audit runs")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--clients", type=int, default=1, help="clients audited per state")
    parser.add_argument("--states", type=int, nargs="+", required=True)
    parser.add_argument("--attacks", default="[{name = 'bayes'}]", help="TOML list of attacks")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    attacks = tomllib.loads(f"value = {args.attacks}")["value"]
    rows = []
    for state in args.states:
        run_dir, seconds = audit_state(args.train_run, args.out, state, args, attacks)
        rows.append((state, run_dir, seconds))
    text = table(rows, args.batch_size)
    (args.out / "table.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
