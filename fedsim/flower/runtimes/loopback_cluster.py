"""A Ray cluster on this machine, on loopback: for tests, benchmarks and trying the cluster path.

`LoopbackCluster(nodes=2)` starts a head (`ray start --head --node-ip-address
127.0.0.1 --port P --block`) and `nodes - 1` more nodes (`ray start --address
127.0.0.1:P --block`), each in a process group of its own and with a temporary
directory of its own: no other Ray user of the machine finds it through
/tmp/ray/ray_current_cluster (where a plain `ray start` announces itself, and where
`ray.init()` without an address would look), and leaving the context stops exactly
those process groups, whatever state they are in.

    with LoopbackCluster(nodes=2, cpus=1) as address:
        fedsim run SCENARIO --set simulation.address="'$address'"
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

START_SECONDS = 90.0


def free_port() -> int:
    """A TCP port nothing listens on now (the OS's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Node:
    """One `ray start ... --block` in a process group of its own."""

    def __init__(self, arguments: list[str], temp_dir: Path, log: Path) -> None:
        self.log = log
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        ray = Path(sys.executable).with_name("ray")
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [str(ray), "start", *arguments, "--temp-dir", str(temp_dir), "--block"],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def wait_started(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited:\n{self.log.read_text()[-3000:]}")
            if "Ray runtime started" in self.log.read_text():
                return
            time.sleep(0.5)
        raise RuntimeError(f"ray start did not finish:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM to the node's process group (ray start stops its processes), then SIGKILL."""
        for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=wait)
                time.sleep(1.0)  # the group's other processes follow their parent
                os.killpg(self.process.pid, 0)  # raises once the whole group is gone
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


class LoopbackCluster:
    """`nodes` Ray nodes of `cpus` CPUs each (the head's own: `head_cpus`, default `cpus`)."""

    def __init__(self, nodes: int = 2, cpus: int = 1, head_cpus: int | None = None) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least its head node")
        self.nodes = nodes
        self.cpus = cpus
        self.head_cpus = cpus if head_cpus is None else head_cpus
        self.address = ""
        # Ray's socket paths must stay short: a folder of its own directly in /tmp.
        self.root = Path(tempfile.mkdtemp(prefix="fedsim-ray-", dir=_short_temp()))
        self._started: list[_Node] = []

    def __enter__(self) -> str:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        try:
            head = self._start(
                "head",
                [
                    "--head",
                    "--node-ip-address",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--num-cpus",
                    str(self.head_cpus),
                    "--ray-client-server-port",
                    str(free_port()),
                    "--include-dashboard",
                    "false",
                ],
            )
            head.wait_started()
            for index in range(1, self.nodes):
                node = self._start(
                    f"node{index}", ["--address", self.address, "--num-cpus", str(self.cpus)]
                )
                node.wait_started()
        except BaseException:
            self.stop()
            raise
        return self.address

    def _start(self, name: str, arguments: list[str]) -> _Node:
        node = _Node(
            [*arguments, "--disable-usage-stats"], self.root / name, self.root / f"{name}.log"
        )
        self._started.append(node)
        return node

    def log(self, name: str = "head") -> str:
        path = self.root / f"{name}.log"
        return path.read_text() if path.is_file() else ""

    def stop(self) -> None:
        for node in reversed(self._started):
            node.stop()
        self._started.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _short_temp() -> str | None:
    return "/tmp" if os.path.isdir("/tmp") else None
