"""Every leakage record names the likelihood its attack read, in the units it read it, or
says why none; `bayes` without a likelihood under a perturbing defense is not called Bayes."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from attacks.specs import AttackSpec
from defenses import client_update, parse_defense
from defenses.mechanisms import GaussianMechanism
from fedsim.attack_matrix.cells import MatrixSettings, defended_batches, image_batches, run_cell
from fedsim.attack_matrix.tables import _stand_in
from fedsim.auditor import AuditSetup
from fedsim.auditor.attack_runner import AttackRunner, ClientCase, RoundJob
from fedsim.models.cnn import PaperCNN

LR = 0.1


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return PaperCNN((1, 8, 8), 4, [0.5], [0.25])


def _records(
    protocol: str = "fedsgd",
    defense: str | None = None,
    mechanism: object | None = None,
    threat: dict[str, Any] | None = None,
    attacks: tuple[str, ...] = ("bayes", "l2"),
) -> dict[str, dict[str, Any]]:
    """Leakage records by attack, of one audited update of a client batch of one image."""
    model = _model()
    setup = AuditSetup.for_model(
        _model, input_shape=(1, 8, 8), num_classes=4, batch_size=1, domain="image",
        protocol=protocol, lr=LR, local_steps=1 if protocol == "fedavg" else None,
        attacks=attacks, defense=defense, mechanism=mechanism,
        audit={"worker": "inline", "grids": False, "budget": {"iterations": 2},
               "threat": {"labels": "inferred", **(threat or {})}},
    )  # fmt: skip
    x, y = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([2])
    made = client_update(
        setup.defense, model, x, y, torch.Generator().manual_seed(2), kind=protocol, local_lr=LR
    )
    job = RoundJob(1, model.state_dict(), cases=[ClientCase(0, made.update)])
    outcomes = AttackRunner(setup, torch.device("cpu")).run(job)
    return {outcome.record["attack"]: outcome.record for _, outcome in outcomes}


def test_records_name_the_likelihood_and_its_scale_in_the_units_the_attack_reads() -> None:
    records = _records(mechanism=GaussianMechanism(0.1))
    assert records["bayes"]["mechanism"] == {
        "name": "gaussian", "noise": "gaussian", "sigma": 0.1, "units": "gradient"
    }  # fmt: skip
    assert records["bayes"]["mechanism_reason"] is None
    assert records["l2"]["mechanism"] is None
    assert "l2 distance" in records["l2"]["mechanism_reason"]


def test_a_fedavg_delta_read_as_a_gradient_states_the_scale_in_gradient_units() -> None:
    """Local hyper-parameters unknown: the attack reads −δ/lr, so σ on δ is σ/lr to it."""
    records = _records("fedavg", mechanism=GaussianMechanism(0.01), threat={"local_hparams_known": False})  # fmt: skip
    described = records["bayes"]["mechanism"]
    assert described["sigma"] == pytest.approx(0.01 / LR)
    assert described["units"].startswith("gradient, read as −delta")
    unrolled = _records("fedavg", mechanism=GaussianMechanism(0.01))["bayes"]["mechanism"]
    assert (unrolled["sigma"], unrolled["units"]) == (0.01, "weight delta")


def test_dpsgd_records_state_the_per_sample_clip() -> None:
    described = _records(defense="dpsgd:clip=0.5,sigma=0.2")["bayes"]["mechanism"]
    assert described["per_sample_clip"] == 0.5 and described["sigma"] == pytest.approx(0.1)


def test_bayes_without_a_likelihood_under_a_perturbing_defense_is_a_named_surrogate() -> None:
    """`gaussian | quantize` states no composed likelihood: what runs is not Bayes, and
    neither its name nor its prior source may say it is, or that the update is exact."""
    records = _records(defense="gaussian:sigma=0.01 | quantize:bits=4")
    assert set(records) == {"bayes~l2-surrogate", "l2"}
    surrogate = records["bayes~l2-surrogate"]
    assert surrogate["status"] == "ok"
    assert "(l2-surrogate: l2's priors)" in surrogate["priors_source"]
    assert "exact" not in surrogate["priors_source"]
    assert surrogate["mechanism"] is None
    assert "states no likelihood" in surrogate["mechanism_reason"]
    assert "l2-surrogate ran in its place" in surrogate["mechanism_reason"]


def test_bayes_on_an_exact_update_says_so() -> None:
    record = _records()["bayes"]
    assert record["priors_source"] == "exact update: exact_priors"
    assert record["mechanism"] is None and "exact" in record["mechanism_reason"]


def test_bayes_is_refused_where_the_threat_model_withholds_the_mechanism() -> None:
    records = _records(defense="gaussian:sigma=0.01", threat={"mechanism_known": False})
    assert records["bayes"]["status"] == "failed"
    assert "mechanism_known" in records["bayes"]["message"]
    assert records["l2"]["status"] == "ok"


def test_attack_matrix_cells_name_the_surrogate_and_the_likelihood() -> None:
    settings = MatrixSettings(images=1, iterations=2)
    info, images, labels = image_batches(settings)
    cells = {}
    for spec in ("gaussian:sigma=0.01 | quantize:bits=4", "gaussian:sigma=0.01"):
        batches = defended_batches(settings, spec, info, images, labels, torch.device("cpu"))
        cells[spec] = run_cell(settings, AttackSpec("bayes"), batches)[0].to_json()
    surrogate = cells["gaussian:sigma=0.01 | quantize:bits=4"]
    assert surrogate["attack"] == "bayes~l2-surrogate" and surrogate["mechanism"] is None
    assert "states no likelihood" in surrogate["mechanism_reason"]
    assert _stand_in(surrogate["attack"]) == " (l2-surrogate)"
    assert cells["gaussian:sigma=0.01"]["attack"] == "bayes"
    assert cells["gaussian:sigma=0.01"]["mechanism"]["sigma"] == 0.01
    assert parse_defense("gaussian:sigma=0.01 | quantize:bits=4").mechanism is None
