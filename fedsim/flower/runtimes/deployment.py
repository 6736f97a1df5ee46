"""Flower's deployment engine on loopback: one SuperLink, N SuperNodes, `flwr run`.

`run_on_loopback` starts `flower-superlink --insecure` and `flower-supernode --insecure`
processes (one per partition, `--node-config "partition-id=i num-partitions=N"`) on
free 127.0.0.1 ports (in Flower 1.42 one HTTP port serves the Fleet, Control and
runtime APIs), submits this project with `flwr run PROJECT deployment --stream`
and waits for it, every wait bounded by the deadline. All processes run in their own
session under a private `FLWR_HOME` and are killed at the end, whatever happens. The
ServerApp (in a process the SuperLink starts) writes the run directory itself.

Runtime dependency installation is disabled (offline): every process uses the
Python environment it was started from, where fedsim must be installed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, read_jsonl

CONNECTION = "deployment"


class DeploymentError(RuntimeError):
    """The loopback deployment did not finish; the message carries the processes' logs."""


@dataclass
class DeploymentRun:
    """Where the records are, the wall-clock seconds, and the log file of every process."""

    run_dir: Path
    seconds: float
    round_seconds: list[float]
    logs: dict[str, Path] = field(default_factory=dict)


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (bound to port 0, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _bin(name: str) -> str:
    """A console script of this environment (beside the running interpreter), else on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _wait_http(url: str, deadline: float, process: subprocess.Popen) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DeploymentError(f"{process.args[0]} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise DeploymentError(f"{url} did not answer before the deadline")


def _kill(process: subprocess.Popen) -> None:
    """Terminate the process and its session (the SuperLink's and SuperNodes' children)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # children left in the session
    if process.poll() is None:
        process.wait(timeout=5)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_on_loopback(
    project: str | Path,
    out: str | Path,
    *,
    scenario: str = "scenarios/quickstart.toml",
    overrides: list[str] | None = None,
    supernodes: int = 2,
    timeout: float = 90.0,
    work_dir: str | Path | None = None,
) -> DeploymentRun:
    """Run `scenario` of the Flower app at `project` on a loopback deployment.

    `overrides` are `--set` strings; `federation.clients` is set to `supernodes`.
    Raises DeploymentError (with every process's log tail) if the run does not
    complete with all its rounds recorded before `timeout` seconds.
    """
    started = time.monotonic()
    deadline = started + timeout
    work = Path(work_dir or tempfile.mkdtemp(prefix="fedsim-deploy-"))
    home = work / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)
    out = Path(out).resolve()
    http, *node_ports = free_ports(1 + supernodes)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n'
        f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{http}"\ninsecure = true\n',
        encoding="utf-8",
    )
    env = dict(
        os.environ,
        FLWR_HOME=str(home),
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0",
    )
    logs: dict[str, Path] = {}
    processes: list[subprocess.Popen] = []

    def start(name: str, command: list[str]) -> subprocess.Popen:
        logs[name] = work / f"{name}.log"
        with open(logs[name], "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=work,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        processes.append(process)
        return process

    settings = [*(overrides or []), f"federation.clients={supernodes}"]
    run_config = f"scenario='{scenario}' out='{out}' set='{';'.join(settings)}'"
    try:
        superlink = start(
            "superlink",
            [
                _bin("flower-superlink"),
                "--insecure",
                "--disable-runtime-dependency-installation",
                "--host",
                "127.0.0.1",
                "--port",
                str(http),
            ],
        )
        _wait_http(f"http://127.0.0.1:{http}/health", deadline, superlink)
        for partition, port in enumerate(node_ports):
            start(
                f"supernode-{partition}",
                [
                    _bin("flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{http}",
                    "--port",
                    str(port),
                    "--node-config",
                    f"partition-id={partition} num-partitions={supernodes}",
                ],
            )
        submit = start(
            "flwr-run",
            [_bin("flwr"), "run", str(Path(project).resolve()), CONNECTION, "--stream"]
            + ["--run-config", run_config],
        )
        try:
            submit.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise DeploymentError("`flwr run` did not finish before the deadline") from None
        if submit.returncode != 0:
            raise DeploymentError(f"`flwr run` exited with status {submit.returncode}")
        rounds = _records_complete(out, deadline)
        seconds = time.monotonic() - started
        times = [r["seconds"] for r in rounds]
        return DeploymentRun(
            out, seconds, [b - a for a, b in zip(times, times[1:], strict=False)], logs
        )
    except DeploymentError as error:
        tails = "\n".join(f"----- {name} -----\n{_tail(path)}" for name, path in logs.items())
        raise DeploymentError(f"{error}\n{tails}") from None
    finally:
        for process in reversed(processes):
            _kill(process)


def _records_complete(out: Path, deadline: float) -> list[dict]:
    """The rounds of a finished run, once the ServerApp has written the last one."""
    from fedsim.scenario.loading import scenario_from_resolved

    while time.monotonic() < deadline:
        if (out / "scenario.toml").exists() and (out / ROUNDS_FILE).exists():
            scenario = scenario_from_resolved((out / "scenario.toml").read_text())
            rounds = read_jsonl(out / ROUNDS_FILE)
            if len(rounds) == scenario.federation.rounds + 1:
                return rounds
        time.sleep(0.2)
    found = len(read_jsonl(out / ROUNDS_FILE)) if (out / ROUNDS_FILE).exists() else 0
    leaks = len(read_jsonl(out / LEAKAGE_FILE)) if (out / LEAKAGE_FILE).exists() else 0
    raise DeploymentError(f"{out}: {found} round records and {leaks} leakage records at deadline")
