"""The run directory: resolved scenario, per-round and per-attack JSON lines, image grids.

    RUN/scenario.toml       the scenario with every default filled in, plus a [run] table
                            (seed, package versions, start time)
    RUN/rounds.jsonl        one line per round: test loss and accuracy, clients, train loss
    RUN/leakage.jsonl       one line per (round, client, attack): defense, PSNR, SSIM,
                            label accuracy, objective, iterations, seconds, status
    RUN/reconstructions/    PNG grids, originals over each attack's reconstructions

Lines are appended and flushed as they happen (from any thread), so an interrupted
run keeps everything up to its last finished round.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import threading
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from fedsim.errors import ConfigError

SCENARIO_FILE = "scenario.toml"
ROUNDS_FILE = "rounds.jsonl"
LEAKAGE_FILE = "leakage.jsonl"
RECONSTRUCTIONS_DIR = "reconstructions"

_VERSIONED = ("fedsim", "flwr", "torch", "numpy", "ray")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a run's numbers depend on."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _json_value(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunRecorder:
    """Appends the records of one run to its directory; safe to call from several threads."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        if (self.run_dir / ROUNDS_FILE).exists() or (self.run_dir / LEAKAGE_FILE).exists():
            raise ConfigError(
                f"--out: {self.run_dir} already holds a run; choose another directory"
            )
        try:
            (self.run_dir / RECONSTRUCTIONS_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"--out: cannot create {self.run_dir} ({error.strerror})") from None
        self._lock = threading.Lock()

    def write_scenario(self, toml_text: str) -> None:
        (self.run_dir / SCENARIO_FILE).write_text(toml_text, encoding="utf-8")

    def _append(self, name: str, record: Mapping[str, Any]) -> None:
        line = json.dumps({k: _json_value(v) for k, v in record.items()}, sort_keys=False)
        with self._lock, open(self.run_dir / name, "a", encoding="utf-8") as file:
            file.write(line + "\n")
            file.flush()

    def append_round(self, record: Mapping[str, Any]) -> None:
        """One line of rounds.jsonl."""
        self._append(ROUNDS_FILE, record)

    def append_leakage(self, record: Mapping[str, Any]) -> None:
        """One line of leakage.jsonl."""
        self._append(LEAKAGE_FILE, record)

    def save_grid(
        self,
        server_round: int,
        client: int,
        originals: torch.Tensor,
        rows: Sequence[tuple[str, torch.Tensor]],
    ) -> Path:
        """PNG of the originals (top row) over each attack's matched reconstructions."""
        from fedsim.image_grid import save_image_grid

        path = (
            self.run_dir / RECONSTRUCTIONS_DIR / f"round-{server_round:04d}-client-{client:03d}.png"
        )
        title = f"round {server_round}, client {client}"
        with self._lock:
            save_image_grid(path, [("original", originals), *rows], title)
        return path


def run_header(seed: int, started: _dt.datetime | None = None) -> dict[str, Any]:
    """The `[run]` table of a resolved scenario.toml."""
    started = started or _dt.datetime.now(_dt.UTC)
    return {
        "seed": seed,
        "started": started.isoformat(timespec="seconds"),
        "versions": package_versions(),
    }


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All records of a .jsonl file (tolerates a torn last line of an interrupted run)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
