"""Ray for one run: join the cluster `simulation.address` names, or start a local one.

Ray refuses resources (`num_cpus`, `num_gpus`) when it joins an existing cluster —
each node declared its own with `ray start` — so `simulation.num_cpus` applies only to
the local instance fedsim starts; a cluster's clients are scheduled by the per-client
resources alone. A local run asks for `address = "local"`: left unset, `ray.init`
would join whichever cluster `ray start` last started on this machine.

`ray.init` on an address where no cluster answers retries for minutes. fedsim first
asks the address, with a deadline (`simulation.connect_timeout`), for its cluster id —
the first call a Ray driver makes to the cluster's GCS — and refuses an address where
nothing listens, nothing answers in time, or something that is not a Ray head answers,
naming it. (A TCP connection alone proves nothing: some networks accept any connection
and answer HTTP/2 themselves.)
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import Any

from fedsim.errors import ConfigError
from fedsim.flower.runtimes.faults import FAULTS_ENV
from fedsim.scenario.config import SimulationConfig


class ClusterUnreachable(ConfigError):
    """`simulation.address` names no Ray cluster that answers."""


def cluster_address(address: str) -> str:
    """host:port of the cluster `address` names (`auto`: $RAY_ADDRESS, else the cluster
    the last `ray start` on this machine joined or started)."""
    if address != "auto":
        return address
    from ray._private.services import canonicalize_bootstrap_address_or_die

    try:
        return canonicalize_bootstrap_address_or_die(address)
    except (ConnectionError, ValueError) as error:
        raise ClusterUnreachable(f"simulation.address {address!r}: {error}") from None


def probe(address: str, timeout: float) -> None:
    """Raise ClusterUnreachable unless a Ray head's GCS answers at `address` within `timeout`."""
    resolved = cluster_address(address)
    host, _, port = resolved.rpartition(":")
    shown = resolved if resolved == address else f"{address!r} ({resolved})"
    if not host or not port.isdigit():
        raise ClusterUnreachable(
            f"simulation.address {address!r}: expected HOST:PORT of a Ray head, or 'auto'"
        )
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except TimeoutError:
        raise ClusterUnreachable(
            f"simulation.address {shown}: no Ray cluster answered within {timeout:g} s"
        ) from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ClusterUnreachable(
            f"simulation.address {shown}: no Ray cluster answers ({reason.lower()})"
        ) from None
    _ask_cluster_id(resolved, shown, max(0.1, deadline - time.monotonic()), timeout)


def _ask_cluster_id(resolved: str, shown: str, remaining: float, timeout: float) -> None:
    """The GCS's GetClusterId over gRPC, with a deadline (Ray's generated stubs, grpcio)."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(resolved) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=remaining)
        except grpc.RpcError as error:
            code = error.code()
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return  # a Ray head that wants credentials: ray.init will present them
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                reason = f"no Ray cluster answered within {timeout:g} s"
            elif code == grpc.StatusCode.UNAVAILABLE:
                reason = "no Ray cluster answers (unavailable)"
            else:
                reason = f"what answers is not a Ray cluster's head ({code.name.lower()})"
            raise ClusterUnreachable(f"simulation.address {shown}: {reason}") from None


def init_args(simulation: SimulationConfig, debug: bool = False) -> dict[str, Any]:
    """The arguments of `ray.init` for this run: a cluster's address alone, or a local
    instance's CPUs. Workers get this process's `sys.path`, as Flower gives them, and
    its fault plan (`FEDSIM_FAULTS`, tests only): a cluster's workers do not inherit
    this process's environment."""
    pythonpath = os.pathsep.join(sys.path)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{pythonpath}{os.pathsep}{os.environ['PYTHONPATH']}"
    env_vars = {"PYTHONPATH": pythonpath}
    if os.environ.get(FAULTS_ENV):
        env_vars[FAULTS_ENV] = os.environ[FAULTS_ENV]
    args: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": debug,
        "logging_level": logging.INFO if debug else logging.ERROR,
        "runtime_env": {"env_vars": env_vars},
    }
    if simulation.address is not None:
        args["address"] = cluster_address(simulation.address)
    else:
        args["address"] = "local"
        if simulation.num_cpus is not None:
            args["num_cpus"] = simulation.num_cpus
    return args


def start_ray(simulation: SimulationConfig, debug: bool = False) -> bool:
    """Connect this process to Ray (probing a cluster's address first); False when it
    already was (then the caller must not shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    if simulation.address is not None:
        probe(simulation.address, simulation.connect_timeout)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(**init_args(simulation, debug))
    return True


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
