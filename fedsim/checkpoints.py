"""Per-round checkpoints, the progress journal that `fedsim run --resume` reads, and
the checked reading of a state dict a run starts from (`model.checkpoint`).

    RUN/checkpoints/round-NNNN.pt     the global model (state dict of tensors) after round N
    RUN/checkpoints/strategy-NNNN.pt  the server strategy's state after round N, where it
                                      keeps one (FedAdam's moments; `fedsim.strategies.aggregators`)
    RUN/checkpoints/progress.jsonl    {"event": "trained" | "audited", "round": N} lines

A round is *trained* once its checkpoint, its rounds.jsonl line and the leakage lines
written so far are on disk (fsynced); it is *audited* once every leakage line of its
audit is on disk. A run is complete through round R when every round up to R is
trained and every round up to R that the schedule audits is audited; resuming starts
at R + 1 from checkpoint R. Older checkpoints are deleted as R moves on.
Checkpoints are read back with `torch.load(weights_only=True)`: tensors only, no code.
Rounds on `federation.keep_checkpoints` keep their checkpoint for good, so a later run
can start from them (`model.checkpoint`, checked by `state_for_model`).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import torch

from fedsim.errors import ConfigError
from fedsim.private_files import append_line, fsync_file, private_dir, write_atomic

CHECKPOINTS_DIR = "checkpoints"
PROGRESS_FILE = "progress.jsonl"


class Checkpoints:
    """The checkpoints folder of one run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.folder = Path(run_dir) / CHECKPOINTS_DIR
        self.trained: set[int] = set()
        self.audited: set[int] = set()
        self._read_progress()

    def _read_progress(self) -> None:
        path = self.folder / PROGRESS_FILE
        if not path.is_file():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                target = self.trained if entry["event"] == "trained" else self.audited
                target.add(int(entry["round"]))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line of a killed run

    def path(self, server_round: int) -> Path:
        return self.folder / f"round-{server_round:04d}.pt"

    def strategy_path(self, server_round: int) -> Path:
        return self.folder / f"strategy-{server_round:04d}.pt"

    def save(
        self,
        server_round: int,
        state: Mapping[str, torch.Tensor],
        strategy: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """Write the global model after `server_round`, and the strategy's state where it
        keeps one (atomically, fsynced, owner-only)."""
        private_dir(self.folder)
        if strategy is not None:
            write_atomic(self.strategy_path(server_round), _tensor_bytes(strategy))
        write_atomic(self.path(server_round), _tensor_bytes(state))

    def load(self, server_round: int) -> dict[str, torch.Tensor]:
        """The global model after `server_round`; tensors only (`weights_only=True`)."""
        return read_state_dict(self.path(server_round), "--resume")

    def load_strategy(self, server_round: int) -> dict[str, torch.Tensor]:
        """The server strategy's state after `server_round` (see `save`)."""
        return read_state_dict(self.strategy_path(server_round), "--resume")

    def mark(self, event: str, server_round: int) -> None:
        """Journal that `server_round` is trained or audited (appended and fsynced)."""
        private_dir(self.folder)
        path = self.folder / PROGRESS_FILE
        append_line(path, json.dumps({"event": event, "round": server_round}))
        fsync_file(path)
        (self.trained if event == "trained" else self.audited).add(server_round)

    def complete_through(self, audited: Callable[[int], bool]) -> int:
        """The last round R with every round from the first recorded one to R trained and,
        where scheduled, audited (-1: none). A run started from a checkpoint of round C
        records rounds from C on."""
        last = min(self.trained, default=0) - 1
        while last + 1 in self.trained and (not audited(last + 1) or last + 1 in self.audited):
            last += 1
        return last

    def _numbered(self) -> Iterator[tuple[int, Path]]:
        """(round, path) of every model and strategy checkpoint on disk."""
        if not self.folder.is_dir():
            return
        for pattern, prefix in (("round-*.pt", "round-"), ("strategy-*.pt", "strategy-")):
            for path in self.folder.glob(pattern):
                try:
                    yield int(path.stem.removeprefix(prefix)), path
                except ValueError:
                    continue

    def prune(self, keep_from: int, kept: Callable[[int], bool] = lambda _: False) -> None:
        """Delete checkpoints of rounds before `keep_from` (no longer a resume point),
        except the models of rounds `kept` selects (`federation.keep_checkpoints`)."""
        for number, path in list(self._numbered()):
            if number < keep_from and not (path.name.startswith("round-") and kept(number)):
                os.remove(path)

    def keep_through(self, server_round: int) -> None:
        """Forget progress after `server_round` (resume: those rounds are redone)."""
        self.trained = {r for r in self.trained if r <= server_round}
        self.audited = {r for r in self.audited if r <= server_round}
        if not self.folder.is_dir():
            return
        lines = [json.dumps({"event": "trained", "round": r}) for r in sorted(self.trained)]
        lines += [json.dumps({"event": "audited", "round": r}) for r in sorted(self.audited)]
        write_atomic(self.folder / PROGRESS_FILE, "".join(f"{x}\n" for x in lines).encode())
        for number, path in list(self._numbered()):
            if number > server_round:
                os.remove(path)


def _tensor_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
    return buffer.getvalue()


def read_state_dict(path: str | Path, field: str) -> dict[str, torch.Tensor]:
    """A file of `torch.save(state_dict)`, tensors only (`weights_only=True`).

    Every failure is a one-line ConfigError starting with `field`.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{field}: checkpoint {path} is missing") from None
    except IsADirectoryError:
        raise ConfigError(f"{field}: {path} is a directory, not a checkpoint file") from None
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"{field}: checkpoint {path} is unreadable ({reason})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ConfigError(f"{field}: checkpoint {path} does not hold a state dict of tensors")
    return state


def state_for_model(
    path: str | Path, model: torch.nn.Module, model_name: str, field: str = "model.checkpoint"
) -> dict[str, torch.Tensor]:
    """The state dict in `path`, checked against `model`: the same names and shapes.

    A mismatch (another architecture, another data set's input shape or classes) is
    a one-line ConfigError naming the first differing entry. Values are cast to the
    model's dtypes, so the run sends what a fresh model of that kind would hold.
    """
    state = read_state_dict(path, field)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"lacks {_names(missing)}")
        if unexpected:
            parts.append(f"has {_names(unexpected)} that the model does not")
        raise ConfigError(
            f"{field}: {path} does not fit model {model_name!r}: it {' and '.join(parts)}"
        )
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise ConfigError(
                f"{field}: {path} does not fit model {model_name!r}: {name} has shape"
                f" {tuple(state[name].shape)} in the checkpoint, {tuple(tensor.shape)} in the model"
            )
        if not torch.isfinite(state[name]).all() and state[name].is_floating_point():
            raise ConfigError(f"{field}: {path} holds NaN or infinite values in {name}")
    return {name: state[name].to(tensor.dtype) for name, tensor in expected.items()}


def _names(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
