"""What a run runs on, said before it starts: the engine, the Ray it joins or starts,
where the attacks run, the device.

`fedsim run` prints it in its first line and writes it as `[run.runs]` of the resolved
`scenario.toml`, so that a run's records say where they were made — also where a
setting chose it implicitly (`device = "auto"`, `simulation.address = "auto"`).
"""

from __future__ import annotations

from fedsim.scenario.config import Scenario

WORKERS = {"thread": "in a thread", "inline": "in the round", "ray": "as Ray tasks"}
"""`audit.worker` → where the attacks run, in words."""


def what_runs(scenario: Scenario, launcher: str = "fedsim run") -> dict[str, str]:
    """{engine, ray, audit_worker, device} of `scenario`: `ray` is the address joined,
    "local Ray" or "not used"; `audit_worker` "none" where nothing is attacked; `device`
    this machine's (the server's evaluation, and attacks outside Ray), and where Ray's
    attack tasks choose their own (`device = "auto"`), `attack_device` says so. Under
    `launcher = "flwr run"` Flower's runtime runs the clients (`[simulation]` is unused)."""
    from fedsim.device import resolve_device
    from fedsim.flower.runtimes.ray_cluster import cluster_address

    simulation = scenario.simulation
    attacked = bool(scenario.attacks) and not scenario.federation.secure_aggregation
    worker = scenario.audit.worker if attacked else "none"
    if launcher != "fedsim run":
        engine, ray = launcher, "not started by fedsim"
    else:
        engine = simulation.engine
        if "ray" not in (simulation.engine, worker):
            ray = "not used"
        elif simulation.address is None:
            ray = "local Ray"
        else:
            ray = cluster_address(simulation.address)
    runs = {
        "engine": engine,
        "ray": ray,
        "audit_worker": worker,
        "device": str(resolve_device(scenario.device)),
    }
    if worker == "ray" and scenario.device == "auto":
        runs["attack_device"] = "each node's own: CUDA where it has one, else its CPU"
    return runs


def runs_line(runs: dict[str, str]) -> str:
    """`what_runs` in words: "clients in process, attacks in a thread, device cpu"."""
    ray = "a local Ray" if runs["ray"] == "local Ray" else f"the Ray cluster at {runs['ray']}"
    if runs["engine"] == "inprocess":
        clients = "clients in process"
    elif runs["engine"] == "ray":
        clients = f"clients on {ray}"
    else:
        clients = f"clients on {runs['engine']}"
    worker = runs["audit_worker"]
    attacks = "no attacks" if worker == "none" else f"attacks {WORKERS[worker]}"
    if worker == "ray" and runs["engine"] != "ray":
        attacks += f" on {ray}"
    device = f"device {runs['device']}"
    if "attack_device" in runs:
        device += f" (attack tasks: {runs['attack_device']})"
    return f"{clients}, {attacks}, {device}"
