"""A Flower app protected by Flower's own `LocalDpMod`, audited with the mechanism it induces.

The app is `tests/tabular_app.py` (a stock Flower app) with `LocalDpMod` among its
client mods. The auditor is told the same mod, so the Bayes attack's likelihood is
`LocalDpMod`'s: the update clipped to C over all parameters, then Gaussian noise of
std Δ·√(2 ln(1.25/δ))/ε. Clipping bites (C is below the clean update's norm), which
L2 gradient matching ignores: the Bayes attack must reconstruct the rows at least as
well as L2 on the same updates (mean MSE after matching), and every record must carry
the ε of Flower's `RdpAccountant` for the rounds that client took part in, as a privacy
claim naming its threat model.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import LocalDpMod
from flwr.serverapp.strategy import FedAvg, Strategy

from fedsim.auditor import LeakageAuditor
from fedsim.auditor.flower_dp import localdp_std, rdp_epsilon
from fedsim.flower.runtimes.local_grid import LocalGrid
from fedsim.metrics.rows import match_rows
from fedsim.records import LEAKAGE_FILE, RECONSTRUCTIONS_DIR, read_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tabular_app as app  # noqa: E402 - the stock app, beside this file

CLIP, EPSILON, DELTA, BATCH, ROUNDS, NODES = 0.05, 100.0, 1e-5, 1, 2, 2


def local_dp() -> LocalDpMod:
    return LocalDpMod(clipping_norm=CLIP, sensitivity=2 * CLIP, epsilon=EPSILON, delta=DELTA)


def _auditor(inner: Strategy, out_dir: Path, **options: Any) -> LeakageAuditor:
    """The tabular app's auditor around `inner`; `options` are for_model's further arguments."""
    return LeakageAuditor.for_model(
        inner,
        app.Net,
        input_shape=(app.FEATURES,),
        num_classes=app.CLASSES,
        batch_size=BATCH,
        domain="features",
        protocol="fedavg",
        lr=app.LR,
        local_steps=app.EPOCHS,
        out_dir=out_dir,
        **options,
    )


def _train(strategy: LeakageAuditor, client: ClientApp) -> None:
    """The app's federation, seeded: LocalDpMod and Flower's DP wrappers draw their noise
    from numpy's global generator."""
    np.random.seed(0)
    torch.manual_seed(0)
    strategy.start(
        grid=LocalGrid(client, num_nodes=NODES, seed=0),
        initial_arrays=ArrayRecord(app.Net().state_dict()),
        train_config=ConfigRecord({"lr": app.LR, "batch-size": BATCH}),
        num_rounds=ROUNDS,
    )
    strategy.close()


def test_localdpmod_app_is_audited_with_its_mechanism_and_flowers_epsilon(tmp_path: Path) -> None:
    torch.set_num_threads(1)  # a tiny model: one thread is fastest, and fair on a shared CPU
    client = ClientApp(mods=[local_dp()])
    client.train()(app.client_train)
    strategy = _auditor(
        FedAvg(fraction_evaluate=0.0, min_available_nodes=NODES),
        tmp_path,
        defense=local_dp(),
        attacks=["bayes", "l2"],
        audit={"worker": "inline", "budget": {"iterations": 200}},
    )
    _train(strategy, client)

    records = read_jsonl(tmp_path / LEAKAGE_FILE)
    assert len(records) == ROUNDS * NODES * 2 and {r["status"] for r in records} == {"ok"}
    std = localdp_std(2 * CLIP, EPSILON, DELTA)
    errors: dict[str, list[float]] = {"bayes": [], "l2": []}
    for record in records:
        assert record["defense"].startswith("LocalDpMod(clipping_norm=0.05")
        assert "noised by the client" in record["server_saw"]
        (claim,) = record["privacy"]
        assert claim["threat_model"] == "user" and claim["delta"] == DELTA
        # Flower's numpy noise may be seeded by the app: unverified, and said why.
        assert claim["holds"] is None and "numpy's global generator" in claim["why_not"]
        assert "local DP against this server" in claim["statement"]
        assert claim["epsilon"] == rdp_epsilon(std / (2 * CLIP), record["round"], DELTA)
        saved = torch.load(
            tmp_path
            / RECONSTRUCTIONS_DIR
            / f"round-{record['round']:04d}-client-{record['client']}.pt"
        )
        truth = app.load_data(record["client"], BATCH).dataset.tensors[0]
        errors[record["attack"]].append(
            float(match_rows(saved[record["attack"]], truth).mse.mean())
        )
    epsilons = sorted({r["privacy"][0]["epsilon"] for r in records})
    assert len(epsilons) == ROUNDS and epsilons[0] > 0  # composed over the rounds taken part in
    bayes, l2 = (float(np.mean(errors[a])) for a in ("bayes", "l2"))
    print(f"mean MSE after matching: bayes {bayes:.4f}, l2 {l2:.4f}; ε {epsilons}")
    assert bayes <= l2


def test_central_dp_with_client_side_adaptive_clipping_says_the_server_saw_clipped_updates(
    tmp_path: Path,
) -> None:
    """Flower's adaptive wrapper sends a new clipping norm each round: the attack models each
    round's norm, and the central ε is labelled as not holding against this server."""
    from flwr.clientapp.mod import adaptiveclipping_mod
    from flwr.serverapp.strategy import DifferentialPrivacyClientSideAdaptiveClipping

    torch.set_num_threads(1)
    client = ClientApp(mods=[adaptiveclipping_mod])
    client.train()(app.client_train)
    wrapper = DifferentialPrivacyClientSideAdaptiveClipping(
        FedAvg(fraction_evaluate=0.0, min_available_nodes=NODES),
        noise_multiplier=0.5,
        num_sampled_clients=NODES,
        initial_clipping_norm=0.01,
        clipped_count_stddev=1.0,
    )
    strategy = _auditor(
        wrapper,
        tmp_path,
        attacks=["bayes"],
        audit={"worker": "inline", "budget": {"iterations": 3}},
        delta=1e-4,
    )
    norms = []
    original = wrapper.configure_train

    def configure_train(server_round, arrays, config, grid):  # noqa: ANN001, ANN202
        norms.append(wrapper.clipping_norm)  # what the wrapper sends this round
        return original(server_round, arrays, config, grid)

    wrapper.configure_train = configure_train
    _train(strategy, client)

    records = read_jsonl(tmp_path / LEAKAGE_FILE)
    assert [r["status"] for r in records] == ["ok"] * ROUNDS * NODES
    assert norms[0] != norms[1]  # the norm adapted
    z_total = 0.5  # the wrapper's multiplier covers the update noise and the noisy count
    for record in records:
        assert record["clipping_norm"] == norms[record["round"] - 1]
        assert "clipped by the client, in the clear" in record["server_saw"]
        (claim,) = record["privacy"]
        assert claim["threat_model"] == "user" and claim["delta"] == 1e-4
        assert not claim["holds"] and "this server saw each client's update" in claim["why_not"]
        expected = rdp_epsilon(z_total, record["round"], 1e-4, NODES, NODES)
        assert abs(claim["epsilon"] - expected) < 1e-9 * expected
