"""The federation: what clients send, what the auditor recovers, and `fedsim run` end to end."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from defenses.client import client_update
from fedsim.cli import main as cli_main
from fedsim.flower.apps.local_update import local_update, recover_update
from fedsim.records import LEAKAGE_FILE, RECONSTRUCTIONS_DIR, ROUNDS_FILE, SCENARIO_FILE, read_jsonl
from fedsim.scenario.build import build_federation
from fedsim.scenario.loading import validate_scenario

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "scenarios" / "quickstart.toml"


def _scenario(protocol: dict, defenses: list[str]) -> object:
    return validate_scenario(
        {
            "seed": 5,
            "defenses": defenses,
            "federation": {"clients": 2, "rounds": 1},
            "protocol": protocol,
            "model": {"name": "cnn"},
        }
    )


@pytest.mark.parametrize(
    ("protocol", "defenses", "tolerance"),
    [
        ({"kind": "fedsgd", "lr": 0.1, "batch_size": 3}, ["gaussian:sigma=0.01"], 2e-5),
        ({"kind": "fedsgd", "lr": 0.1, "batch_size": 2}, [], 2e-5),
        (
            {
                "kind": "fedavg",
                "lr": 0.05,
                "batch_size": 4,
                "local_steps": 3,
                "local_batch_size": 2,
            },
            [],
            1e-6,
        ),
    ],
    ids=["fedsgd-gaussian", "fedsgd-plain", "fedavg"],
)
def test_auditor_recovers_the_update_the_client_computed(
    protocol: dict, defenses: list[str], tolerance: float
) -> None:
    federation = build_federation(_scenario(protocol, defenses))
    model = federation.build_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    sent = local_update(federation, model, client=1, server_round=2).state

    reference_model = federation.build_model()
    x, y = federation.client_batch(1, 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(federation.train_seed(1, 2))
        expected = client_update(
            federation.defense,
            reference_model,
            x,
            y,
            federation.defense_generator(1, 2),
            kind=protocol["kind"],
            local_steps=federation.scenario.protocol.local_steps,
            local_lr=federation.scenario.protocol.lr,
            local_batch_size=federation.scenario.protocol.local_batch_size,
        ).update
    names = [name for name, _ in reference_model.named_parameters()]
    recovered = recover_update(federation, start, sent, names)
    for name, got, want in zip(names, recovered, expected, strict=True):
        scale = float(start[name].abs().max()) / federation.scenario.protocol.lr
        assert torch.allclose(got, want, rtol=0, atol=tolerance * max(scale, 1.0)), name


def test_client_batches_are_the_seeded_sampler_and_stay_in_partition() -> None:
    federation = build_federation(_scenario({"kind": "fedsgd", "batch_size": 4}, []))
    first = federation.batch_indices(0, 1)
    assert (first == federation.batch_indices(0, 1)).all()
    assert not (first == federation.batch_indices(0, 2)).all()
    assert set(first.tolist()) <= set(federation.partitions[0].tolist())


def test_run_refuses_a_bad_override_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cli_main(
        ["run", str(QUICKSTART), "--set", "federation.clients=0", "--out", str(tmp_path / "r")]
    )
    assert code == 2
    err = " ".join(
        capsys.readouterr().err.split()
    )  # rich may wrap a long line on a narrow terminal
    assert err.startswith("fedsim run: scenario: federation.clients: ") and "Traceback" not in err


@pytest.mark.slow
def test_fedsim_run_quickstart_end_to_end(tmp_path: Path) -> None:
    """The quickstart on Flower's simulation engine (Ray), two rounds and a tiny attack budget."""
    out = tmp_path / "run"
    code = cli_main(
        [
            "run",
            str(QUICKSTART),
            "--set",
            "federation.rounds=2",
            "--set",
            "audit.budget.iterations=4",
            "--set",
            "data.eval_samples=100",
            "--set",
            "simulation.engine='ray'",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    resolved = tomllib.loads((out / SCENARIO_FILE).read_text())
    assert resolved["run"]["seed"] == 0 and "flwr" in resolved["run"]["versions"]
    assert resolved["federation"]["rounds"] == 2
    rounds = read_jsonl(out / ROUNDS_FILE)
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert rounds[1]["clients"] == list(range(resolved["federation"]["clients"]))
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rounds)
    leakage = read_jsonl(out / LEAKAGE_FILE)
    attacks = sorted({r["attack"] for r in leakage})
    sampled = resolved["audit"]["clients"]["sample"]
    assert len(leakage) == 2 * sampled * len(attacks) and attacks == ["bayes"]
    for record in leakage:
        assert record["defense"] == resolved["defenses"][0]
        assert record["status"] in ("ok", "timeout", "failed")
        if record["status"] == "ok":
            assert record["psnr"] is not None and record["label_accuracy"] is not None
            assert len(record["ssim_images"]) == resolved["protocol"]["batch_size"]
    assert len(list((out / RECONSTRUCTIONS_DIR).glob("*.png"))) == 2  # one strip per round
    assert (out / "report" / "index.html").is_file()
