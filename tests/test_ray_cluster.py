"""Past one machine: a two-node Ray cluster on loopback, runs that crash, audits on Ray.

The module starts a Ray head (`ray start --head --node-ip-address 127.0.0.1 --port P
--block`) and a second node (`ray start --address 127.0.0.1:P --num-cpus 1 --block`),
each in a process group of its own and with a temporary directory of its own (so no
other Ray user of the machine finds it through /tmp/ray), and stops exactly those two
groups at the end (`fedsim.flower.runtimes.loopback_cluster`). On it: a small scenario whose clients must run on both nodes and
whose records must equal the in-process engine's; a ClientApp that kills its worker
process, which must end `fedsim run` in one line that `--resume` then continues; an
attack task whose worker dies, which must be recorded `failed` with Ray's reason.
Also: an address where nothing listens, refused in one line; a runtime that fails at
start and Ctrl-C while clients train, neither of which may leave the run hanging; and
README's cluster recipe, as written, on the quickstart.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
import torch

from fedsim.cli import main as cli_main
from fedsim.flower.apps.client_app import simulation_app as client_app
from fedsim.flower.apps.server_app import run_federation
from fedsim.flower.runtimes.faults import FAULTS_ENV
from fedsim.flower.runtimes.local_grid import LocalGrid
from fedsim.flower.runtimes.loopback_cluster import LoopbackCluster, free_port
from fedsim.flower.runtimes.ray_cluster import start_ray, stop_ray
from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, RunRecorder, read_jsonl
from fedsim.scenario import load_scenario
from fedsim.scenario.audit import AttackConfig
from fedsim.scenario.components import build_attack

CLIENTS = 4
SCENARIO = {
    "name": "cluster",
    "seed": 5,
    "device": "cpu",
    "defenses": ["gaussian:sigma=0.01"],
    "data": {"dataset": "mnist-sample", "eval_samples": 50},
    "federation": {"clients": CLIENTS, "rounds": 3},
    "protocol": {"kind": "fedsgd", "batch_size": 1},
    "attacks": [{"name": "l2"}],
    "audit": {"grids": False, "budget": {"iterations": 2}},
    "simulation": {"engine": "inprocess"},
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """HOST:PORT of a two-node loopback cluster (1 CPU each), stopped after the module."""
    with LoopbackCluster(nodes=2, cpus=1) as address:
        yield address


def numbers(run_dir: Path, name: str) -> list[dict]:
    """A record file's lines without wall-clock seconds and the Ray nodes (engine-specific)."""
    records = read_jsonl(run_dir / name)
    for record in records:
        record.pop("seconds", None)
        record.pop("ray_nodes", None)
    return records


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "cluster.toml"
    path.write_text(tomli_w.dumps(SCENARIO))
    return path


@pytest.fixture(scope="module")
def reference(scenario_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenario on the in-process engine, attacks in the thread worker, one torch thread
    (as in a Ray worker of one CPU: float sums depend on the thread count)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli_main(["run", str(scenario_file), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def test_two_node_cluster_run_equals_the_in_process_engine(
    cluster: str, scenario_file: Path, reference: Path, tmp_path: Path
) -> None:
    """Clients on Flower's Ray engine over both nodes, attacks as Ray tasks: same records."""
    out = tmp_path / "run"
    code = cli_main(["run", *_ray_run_args(scenario_file, cluster, out, "audit.worker='ray'")])
    assert code == 0
    for name in (ROUNDS_FILE, LEAKAGE_FILE):
        assert numbers(out, name) == numbers(reference, name), name
    rounds = read_jsonl(out / ROUNDS_FILE)
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    assert len(read_jsonl(out / LEAKAGE_FILE)) == 3 * CLIENTS
    nodes = [node for r in rounds[1:] for node in r["ray_nodes"]]
    assert all(len(r["ray_nodes"]) == len(r["clients"]) == CLIENTS for r in rounds[1:])
    assert len(set(nodes)) == 2, "clients ran on both nodes"


def _ray_run_args(scenario_file: Path, address: str, out: Path, *sets: str) -> list[str]:
    """`fedsim run` arguments for `scenario_file` on the Ray cluster at `address`, with
    further `--set` overrides, writing to `out`."""
    overrides = [arg for value in sets for arg in ("--set", value)]
    return [
        str(scenario_file),
        "--set",
        "simulation.engine='ray'",
        "--set",
        f"simulation.address='{address}'",
        *overrides,
        "--out",
        str(out),
    ]


def _fedsim(
    args: list[str], faults: str | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k not in (FAULTS_ENV, "RAY_ADDRESS")}
    # one torch thread in the driver, whose audit worker attacks, as in `reference`: float
    # sums depend on the thread count, on some CPUs down to the records' last digits
    env["OMP_NUM_THREADS"] = "1"
    if faults:
        env[FAULTS_ENV] = faults
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done, time.monotonic() - started


def test_a_client_that_kills_its_worker_ends_the_run_in_one_line_then_resumes(
    cluster: str, scenario_file: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    done, seconds = _fedsim(_ray_run_args(scenario_file, cluster, out), faults="2:1:exit")
    assert done.returncode == 1, done.stderr
    assert seconds < 90
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "lost a client's worker: ActorDiedError" in lines[0]
    assert f"fedsim run --resume {out}" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert [r["round"] for r in read_jsonl(out / ROUNDS_FILE)] == [0, 1]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert (
            cli_main(["run", "--resume", str(out), "--set", "simulation.engine='inprocess'"]) == 0
        )
    finally:
        torch.set_num_threads(threads)
    for name in (ROUNDS_FILE, LEAKAGE_FILE):
        assert numbers(out, name) == numbers(reference, name), name


class WorkerKiller:
    """An 'attack' whose process exits: on Ray, its task is lost with its worker."""

    def reconstruct(self, target: object, budget: object) -> object:
        os._exit(3)


def test_a_lost_attack_task_is_recorded_failed_and_the_federation_goes_on(
    cluster: str, scenario_file: Path, tmp_path: Path
) -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    scenario = load_scenario(
        scenario_file,
        [f"simulation.address='{cluster}'", "audit.worker='ray'", "federation.rounds=2"],
    )
    attacks = [
        (AttackConfig(name="l2"), build_attack("l2", {}, 0)),
        (AttackConfig(name="l1", label="killer"), WorkerKiller()),
    ]
    recorder = RunRecorder(tmp_path / "run")
    assert start_ray(scenario.simulation)
    try:
        grid = LocalGrid(client_app, CLIENTS, seed=scenario.seed)
        run_federation(grid, scenario, recorder, attacks=attacks, torch_threads=0)
    finally:
        stop_ray()
    rounds = read_jsonl(tmp_path / "run" / ROUNDS_FILE)
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert not any("ray_nodes" in r for r in rounds)  # in-process clients, though Ray is up
    leakage = read_jsonl(tmp_path / "run" / LEAKAGE_FILE)
    assert [(r["round"], r["attack"]) for r in leakage] == [
        (n, a) for n in (1, 2) for a in ("l2", "killer") for _ in range(CLIENTS)
    ]
    killed = [r for r in leakage if r["attack"] == "killer"]
    assert {r["status"] for r in killed} == {"failed"}
    assert all(r["message"].startswith("lost on Ray: ") for r in killed), killed[0]
    assert all("Worker" in r["message"] or "died" in r["message"] for r in killed)
    assert {r["status"] for r in leakage if r["attack"] == "l2"} == {"ok"}


def test_an_address_where_no_cluster_answers_is_refused_in_one_line(
    scenario_file: Path, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    done, seconds = _fedsim(_ray_run_args(scenario_file, address, out))
    assert done.returncode == 2 and seconds < 90
    assert done.stderr.strip().splitlines() == [
        f"fedsim run: simulation.address {address}: no Ray cluster answers (connection refused)"
    ]
    assert not out.exists()


def test_a_runtime_that_fails_at_start_ends_the_run_instead_of_hanging(
    cluster: str, scenario_file: Path, tmp_path: Path
) -> None:
    """No actor fits (GPUs per client on a cluster without one): Flower's engine raises
    while the ServerApp thread waits for replies; the run must end, not wait an hour."""
    out = tmp_path / "run"
    done, seconds = _fedsim(
        _ray_run_args(scenario_file, cluster, out, "simulation.gpus_per_client=64")
    )
    assert done.returncode == 1 and seconds < 90, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(
        "fedsim run: the simulation runtime failed: ValueError: ActorPool is empty"
    )
    assert line.endswith(f"continue with `fedsim run --resume {out}`")
    assert [r["round"] for r in read_jsonl(out / ROUNDS_FILE)] == [0]


def test_ctrl_c_ends_a_ray_run_whose_clients_are_still_training(
    cluster: str, scenario_file: Path, tmp_path: Path
) -> None:
    """SIGINT while round 2's clients sleep in their Ray workers: the run stops with 130
    at once, not when the clients wake (Flower's engine threads still wait on them)."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env[FAULTS_ENV] = "2:*:sleep=120"
    command = [
        sys.executable,
        "-m",
        "fedsim.cli",
        "run",
        *_ray_run_args(scenario_file, cluster, out),
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while (
            not (out / ROUNDS_FILE).exists() or '"round": 1,' not in (out / ROUNDS_FILE).read_text()
        ):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.2)
        time.sleep(1.0)  # round 2's clients are asleep
        process.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        code = process.wait(timeout=60)
        assert time.monotonic() - stopped < 30
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 130
    assert process.stderr is not None and "interrupted" in process.stderr.read()
    assert [r["round"] for r in read_jsonl(out / ROUNDS_FILE)] == [0, 1]


REPO = Path(__file__).resolve().parents[1]


def readme_cluster_recipe(address: str) -> dict:
    """The scenario settings of README's "On a Ray cluster" recipe, for the head at `address`."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("**On a Ray cluster.**") :]
    block = re.search(r"```toml\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None, "README's cluster recipe has no TOML block"
    return tomllib.loads(block.group(1).replace("HEAD_IP:6379", address))


@pytest.mark.slow
def test_readme_cluster_recipe_runs_the_quickstart_on_the_cluster(
    cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quickstart with only the recipe's settings changed (and fewer rounds and attack
    steps, for time) runs its clients and its attacks on the cluster, and says so."""
    recipe = readme_cluster_recipe(cluster)
    assert recipe["simulation"]["engine"] == "ray"
    raw = tomllib.loads((REPO / "scenarios" / "quickstart.toml").read_text())
    for table, settings in recipe.items():
        raw.setdefault(table, {}).update(settings)
    scenario_file = tmp_path / "quickstart-cluster.toml"
    scenario_file.write_text(tomli_w.dumps(raw))
    out = tmp_path / "run"
    shorter = ["federation.rounds=2", "audit.budget.iterations=4", "data.eval_samples=100"]
    code = cli_main(
        ["run", str(scenario_file), *[a for s in shorter for a in ("--set", s)], "--out", str(out)]
    )
    assert code == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert f"; clients on the Ray cluster at {cluster}, attacks as Ray tasks, device" in first
    runs = tomllib.loads((out / "scenario.toml").read_text())["run"]["runs"]
    assert (runs["engine"], runs["ray"], runs["audit_worker"]) == ("ray", cluster, "ray")
    rounds = read_jsonl(out / ROUNDS_FILE)
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert all(len(r["ray_nodes"]) == len(r["clients"]) == 16 for r in rounds[1:])
    assert len({node for r in rounds[1:] for node in r["ray_nodes"]}) == 2, "both nodes"
    leakage = read_jsonl(out / LEAKAGE_FILE)
    assert len(leakage) == 2 * 3  # log-spaced rounds 1 and 2, three sampled clients
    assert not [r for r in leakage if r.get("message", "").startswith("lost on Ray")]
