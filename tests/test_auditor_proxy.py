"""Proxy audits and the cost plan of `LeakageAuditor.for_model`: how proxy data are read
(keys, spaces, refusals), how a smaller client trains, what the plan decides from a cost
model, what an out-of-reach attack records, and the protocol check against proxy clients."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pytest
import test_auditor_checks as checks
import torch
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import LocalDpMod
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from attacks.domain import FeatureDomain, ImageDomain
from fedsim.auditor import LeakageAuditor
from fedsim.auditor.attack_runner import AttackRunner, ClientCase, RoundJob
from fedsim.auditor.client_sizes import scaled_protocol
from fedsim.auditor.cost_plan import CostModel, _plan_attack
from fedsim.auditor.preflight import simulated_update
from fedsim.auditor.protocol_check import ProtocolCheck
from fedsim.auditor.proxy_data import read_proxy_data
from fedsim.auditor.setup import AuditSetup
from fedsim.errors import ConfigError
from fedsim.records import LEAKAGE_FILE, read_jsonl

IMAGE = ImageDomain(low=-1.0, high=1.0)


class Items(Dataset):
    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def _read(data: object, domain: object = IMAGE, shape: tuple = (1, 4, 4)) -> object:
    return read_proxy_data(data, input_shape=shape, num_classes=3, domain=domain, limit=100)


# --- reading proxy data ------------------------------------------------------------------


def test_flwr_datasets_items_are_read_by_their_keys_in_the_models_space() -> None:
    x = torch.rand(5, 1, 4, 4) * 2 - 1  # as Normalize((0.5,), (0.5,)) gives them
    data = _read(Items([{"img": x[i], "label": i % 3, "id": i} for i in range(5)]))
    assert torch.equal(data.inputs, x) and torch.allclose(data.pixels, (x + 1) / 2)
    assert data.labels.tolist() == [0, 1, 2, 0, 1]
    assert data.source == "Dataset items' 'img' and 'label', 5 examples"
    pairs = _read(TensorDataset(x, torch.tensor([2, 1, 0, 0, 1])))
    assert torch.equal(pairs.inputs, x) and pairs.source.startswith("Dataset (input, label)")
    loader = DataLoader(TensorDataset(x, torch.tensor([2, 1, 0, 0, 1])), batch_size=2)
    assert torch.equal(_read(loader).inputs, x)  # its dataset's items, not its batches

    class Split:  # a Hugging Face `datasets` split: items by index, not a torch Dataset
        def __len__(self) -> int:
            return 5

        def __getitem__(self, index: int) -> dict:
            return {"image": x[index], "label": torch.tensor(index % 3)}

    assert _read(Split()).source == "Dataset items' 'image' and 'label', 5 examples"


def test_ambiguous_or_missing_keys_and_a_wrong_box_are_refused_in_one_line() -> None:
    x = torch.rand(1, 4, 4)
    with pytest.raises(ConfigError, match="several of the input keys 'img', 'image'"):
        _read(Items([{"img": x, "image": x, "label": 0}]))
    with pytest.raises(ConfigError, match="several of the label keys 'fine_label', 'coarse_lab"):
        _read(Items([{"img": x, "fine_label": 0, "coarse_label": 1}]))
    with pytest.raises(ConfigError, match="none of the label keys .*item keys: 'img', 'class'"):
        _read(Items([{"img": x, "class": 0}]))
    normalised = torch.linspace(-1, 1, 48).reshape(3, 1, 4, 4)
    with pytest.raises(
        ConfigError,
        match=r"lie in \[-1, 1\], outside the declared .* \[0, 1\]; "
        r"declare .* \(domain=ImageDomain\(low=-1.0, high=1.0\) holds these\)",
    ):
        _read((normalised, torch.tensor([0, 1, 2])), ImageDomain())
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 3\)"):
        _read((torch.rand(2, 1, 4, 4), torch.tensor([0, 3])))
    with pytest.raises(ConfigError, match=r"inputs of shape \(5, 5\) do not fit"):
        _read((torch.rand(2, 5, 5), torch.tensor([0, 1])))


def test_raw_pixels_pil_images_and_data_set_names_map_into_the_box() -> None:
    pixels = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)  # channels last
    data = _read((pixels, np.array([1, 2])), shape=(3, 4, 4))
    unit = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(data.pixels, unit) and torch.allclose(data.inputs, unit * 2 - 1)
    pictures = Items([{"image": Image.fromarray(pixels[i]), "label": i} for i in range(2)])
    assert torch.allclose(_read(pictures, shape=(3, 4, 4)).pixels, unit)
    digits = read_proxy_data(
        "mnist-sample", input_shape=(1, 28, 28), num_classes=10, domain=IMAGE, limit=20
    )
    assert len(digits) == 20 and digits.source == "mnist-sample test split, 20 examples"
    assert float(digits.pixels.min()) >= 0 and float(digits.inputs.min()) < -0.99
    rows = _read((torch.randn(4, 3), torch.tensor([0, 1, 2, 0])), FeatureDomain(), (3,))
    assert torch.equal(rows.inputs, rows.pixels)


# --- a smaller client, and the plan -------------------------------------------------------


def test_a_smaller_client_makes_the_declared_epochs_in_smaller_mini_batches() -> None:
    setup = _image_setup(batch_size=24, local_steps=6, local_batch_size=8)  # two epochs
    at = {p: scaled_protocol(setup.protocol, 24, p) for p in (1, 4, 16, 24)}
    assert {p: (q.local_steps, q.local_batch_size) for p, q in at.items()} == {
        1: (2, 1),
        4: (2, 4),
        16: (4, 8),
        24: (6, 8),
    }
    assert at[4].optimizer == setup.protocol.optimizer and at[4].shuffled


def _image_setup(**changes: object) -> AuditSetup:
    options: dict = {
        "input_shape": (1, 4, 4),
        "num_classes": 3,
        "batch_size": 24,
        "domain": IMAGE,
        "protocol": "fedavg",
        "optimizer": functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9),
        "local_steps": 3,
        "local_batch_size": 8,
        "shuffle": True,
        "audit": {"budget": {"iterations": 100, "seconds": 10.0}},
        **changes,
    }
    return AuditSetup.for_model(_pixels_net, **options)


def _pixels_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def test_the_plan_attacks_what_fits_and_runs_proxy_batches_below_what_does_not() -> None:
    setup = _image_setup()
    sizes = [1, 4, 16, 24]
    # 1 ms per example and iteration: the update from 24 examples (3 steps of 8) takes
    # 2.4 s at 100 iterations, within its 5 s share (the other half: a proxy client of 24)
    cheap = _plan_attack(setup, "bayes", 100, 1, CostModel(0.0, 0.0, 1e-3), sizes)
    assert cheap.fits and cheap.real_seconds == 5.0
    assert [(c.batch_size, c.clients, c.seconds) for c in cheap.proxy] == [(24, 1, 5.0)]
    # 10 ms: 24 s, out of reach. Proxy clients of 1 (four of them: 4 s), 4 (4 s) and 16
    # (3.2 s) images do not fit 10/3 s each; those of 1 and 4 fit 5 s each
    dear = _plan_attack(setup, "bayes", 100, 1, CostModel(0.0, 0.0, 1e-2), sizes)
    assert not dear.fits and "more than its 5 s share of the 10 s a round" in dear.reason
    assert [(c.batch_size, c.clients, c.seconds) for c in dear.proxy] == [(1, 4, 5.0), (4, 1, 5.0)]
    # 40 ms: not even four one-image clients at 100 iterations; at 62 they fit the 10 s
    fewer = _plan_attack(setup, "bayes", 100, 1, CostModel(0.0, 0.0, 4e-2), sizes)
    assert [(c.batch_size, c.iterations) for c in fewer.proxy] == [(1, 62)]
    # 1 s: 2 iterations would fit, below the floor of 10: nothing is attacked
    assert _plan_attack(setup, "bayes", 100, 1, CostModel(0.0, 0.0, 1.0), sizes).proxy == []
    unlimited = _plan_attack(
        _image_setup(audit={"budget": {"iterations": 100}}), "bayes", 100, 1,
        CostModel(0.0, 0.0, 1.0), sizes,
    )  # fmt: skip
    assert unlimited.fits and [c.batch_size for c in unlimited.proxy] == [24]


def test_an_out_of_reach_attack_records_its_reason_and_the_updates_label_counts() -> None:
    setup = _image_setup()
    runner = AttackRunner(setup, torch.device("cpu"))
    model = setup.build_model()
    update = simulated_update(setup, model)
    job = RoundJob(3, model.state_dict(), cases=[ClientCase(7, update)])
    job.skipped = {"bayes": "bayes needs about 48 min for an update"}
    ((case, result),) = runner.run(job)
    record = result.record
    assert record["status"] == "out_of_reach" and record["message"].startswith("bayes needs")
    assert record["iterations"] == 0 and result.inputs is None
    assert sum(record["label_counts"]["recovered"].values()) == 24


# --- in a Flower app ---------------------------------------------------------------------

ROWS, FEATURES = 4, checks.FEATURES


def _client(lr: float) -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        model = checks.received(msg)
        generator = torch.Generator().manual_seed(int(context.node_config["partition-id"]))
        x = torch.randn(ROWS, FEATURES, generator=generator)
        y = (x[:, 0] > 0).long()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        return checks.reply(msg, model, ROWS)

    return app


def _proxy_rows() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(200, FEATURES, generator=torch.Generator().manual_seed(5))
    return x, (x[:, 0] > 0).long()


def _audit(out_dir: Path | None, client_lr: float, **changes: object) -> LeakageAuditor:
    options: dict = {
        "batch_size": ROWS,
        "proxy_data": _proxy_rows(),
        "audit": {"worker": "inline", "budget": {"iterations": 3}},
        **changes,
    }
    strategy = checks.auditor(out_dir, **options)
    checks.run(strategy, _client(client_lr), rounds=1)
    return strategy


def test_proxy_records_are_scored_and_the_replies_checked_against_proxy_clients(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fedsim.auditor")
    _audit(tmp_path, client_lr=0.1)
    records = read_jsonl(tmp_path / LEAKAGE_FILE)
    proxy = [r for r in records if r.get("proxy")]
    assert [r["batch_size"] for r in proxy] == [ROWS] and proxy[0]["local_steps"] == 1
    assert proxy[0]["mse_rows"] and len(proxy[0]["mse_guess_rows"]) == ROWS
    assert proxy[0]["label_counts"]["true"] is not None
    assert (tmp_path / "audit_plan.json").is_file()
    assert "differs per layer" not in caplog.text and "proxy clients trained" not in caplog.text
    caplog.clear()
    _audit(None, client_lr=1.0)  # the clients step ten times further than declared
    assert "update norm" in caplog.text and "that of proxy clients trained as" in caplog.text


def test_the_check_against_proxy_clients_names_the_layers_that_differ(
    caplog: pytest.LogCaptureFixture,
) -> None:
    check = ProtocolCheck(4, "fedavg, 1 local step of lr 0.1, batch 4", None)
    reference = [[torch.ones(3, 3), torch.ones(3)] for _ in range(3)]
    check.against_proxy(1, 0, [torch.ones(3, 3) * 2, torch.ones(3) * 3], reference, ["w", "b"])
    assert "update norm" not in caplog.text and "differs per layer" not in caplog.text
    check.against_proxy(1, 0, [torch.zeros(3, 3), torch.ones(3) * 9], reference, ["w", "b"])
    assert "differs per layer from proxy clients trained as declared: w unchanged" in caplog.text
    assert "update norm 15.6 is 4.5× that of proxy clients" in caplog.text


def test_proxy_clients_cannot_stand_in_for_flowers_local_dp_mod() -> None:
    mod = LocalDpMod(clipping_norm=1.0, sensitivity=2.0, epsilon=5.0, delta=1e-5)
    with pytest.raises(ConfigError, match="proxy_data: proxy clients cannot apply Flower's"):
        _audit(None, client_lr=0.1, defense=mod)
