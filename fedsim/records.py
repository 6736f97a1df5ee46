"""The run directory: resolved scenario, per-round and per-attack JSON lines, image grids.

    RUN/scenario.toml       the scenario's settings that act, defaults filled in, plus a
                            [run] table (seed, package versions, start time, what ran)
    RUN/rounds.jsonl        one line per round: test loss and accuracy, clients, train loss
                            (and ε, δ spent under DP-SGD)
    RUN/leakage.jsonl       one line per (round, client, attack): defense, PSNR, SSIM,
                            label accuracy, objective, iterations, seconds, status
    RUN/reconstructions/    one PNG per audited round: every audited client's originals over
                            each attack's reconstructions
    RUN/checkpoints/        the global model after the last complete rounds and a progress
                            journal, for `fedsim run --resume` (see `fedsim.checkpoints`)

Each line is appended in one write as it happens (from any thread), and the files are
fsynced at the end of every round, so an interrupted run keeps everything up to its
last finished round. The directory is owner-only (0o700), its files 0o600: the
reconstructions and grids are images of the clients' private data.
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
from typing import TYPE_CHECKING, Any

from fedsim.checkpoints import Checkpoints
from fedsim.errors import ConfigError
from fedsim.private_files import (
    append_line,
    fsync_file,
    make_private,
    output_dir,
    private_dir,
    write_atomic,
)

if TYPE_CHECKING:
    from fedsim.image_grid import ClientImages

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
    """Appends the records of one run to its directory; safe to call from several threads.

    `resume=True` reopens a run directory that already holds records (`fedsim run --resume`).
    """

    def __init__(self, run_dir: str | Path, *, resume: bool = False) -> None:
        self.run_dir = Path(run_dir)
        if not resume and (
            (self.run_dir / ROUNDS_FILE).exists() or (self.run_dir / LEAKAGE_FILE).exists()
        ):
            raise ConfigError(
                f"--out: {self.run_dir} already holds a run; choose another directory"
            )
        try:
            if resume:
                private_dir(self.run_dir)
            else:
                output_dir(self.run_dir)
            private_dir(self.run_dir / RECONSTRUCTIONS_DIR)
        except OSError as error:
            raise ConfigError(f"--out: cannot create {self.run_dir} ({error.strerror})") from None
        self._lock = threading.Lock()
        self.checkpoints = Checkpoints(self.run_dir)

    def write_scenario(self, toml_text: str) -> None:
        write_atomic(self.run_dir / SCENARIO_FILE, toml_text.encode("utf-8"))

    def _append(self, name: str, record: Mapping[str, Any]) -> None:
        line = json.dumps({k: _json_value(v) for k, v in record.items()}, sort_keys=False)
        with self._lock:
            append_line(self.run_dir / name, line)

    def sync(self) -> None:
        """fsync rounds.jsonl and leakage.jsonl (called at the end of every round)."""
        with self._lock:
            for name in (ROUNDS_FILE, LEAKAGE_FILE):
                fsync_file(self.run_dir / name)

    def keep_through(self, server_round: int) -> None:
        """Drop every record of a round after `server_round` (resume: they are redone)."""
        with self._lock:
            for name in (ROUNDS_FILE, LEAKAGE_FILE):
                path = self.run_dir / name
                if not path.is_file():
                    continue
                kept = [
                    json.dumps(r)
                    for r in read_jsonl(path)
                    if isinstance(r.get("round"), int) and r["round"] <= server_round
                ]
                write_atomic(path, "".join(line + "\n" for line in kept).encode("utf-8"))

    def append_round(self, record: Mapping[str, Any]) -> None:
        """One line of rounds.jsonl."""
        self._append(ROUNDS_FILE, record)

    def append_leakage(self, record: Mapping[str, Any]) -> None:
        """One line of leakage.jsonl."""
        self._append(LEAKAGE_FILE, record)

    def save_strip(self, server_round: int, cases: Sequence[ClientImages]) -> Path:
        """PNG of one audited round: every client's originals over its reconstructions."""
        from fedsim.image_grid import save_round_strip

        path = self.run_dir / RECONSTRUCTIONS_DIR / f"round-{server_round:04d}.png"
        with self._lock:
            save_round_strip(path, cases, f"round {server_round}")
            make_private(path)
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
