"""Update-stage defenses as Flower client mods, called directly with hand-built messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    Metadata,
    MetricRecord,
    RecordDict,
)

from defenses import DefenseError, parse_defense
from defenses.flower import KnownSeedWarning, mod

SENT = {
    "w": np.ones((3, 4), dtype=np.float32),
    "b": np.zeros(4, dtype=np.float32),
    "steps": np.array([5], dtype=np.int64),
}
DELTA = {
    "w": np.full((3, 4), 0.5, dtype=np.float32),
    "b": np.arange(4, dtype=np.float32),
    "steps": np.array([1], dtype=np.int64),
}


def message(message_type: str = MessageType.TRAIN, node: int = 7, round_: int = 3) -> Message:
    metadata = Metadata(
        run_id=1, message_id="m", src_node_id=0, dst_node_id=node, reply_to_message_id="",
        group_id=str(round_), created_at=0.0, ttl=3600.0, message_type=message_type,
    )  # fmt: skip
    record = ArrayRecord(array_dict={k: Array(v) for k, v in SENT.items()})
    return Message(
        RecordDict({"arrays": record, "config": ConfigRecord({"lr": 0.1})}), metadata=metadata
    )


def trainer(msg: Message, context: Context) -> Message:
    """A FedAvg client: replies with sent + DELTA."""
    sent = msg.content["arrays"]
    new = {k: Array(sent[k].numpy() + DELTA[k]) for k in sent}
    return Message(
        RecordDict({"arrays": ArrayRecord(array_dict=new), "metrics": MetricRecord({"n": 1})}),
        reply_to=msg,
    )


CONTEXT = Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})


def reply_arrays(reply: Message) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in reply.content["arrays"].items()}


def test_mod_defends_the_delta_not_the_weights() -> None:
    out = reply_arrays(mod("prune", p=0.5)(message(), CONTEXT, trainer))
    for k in ("w", "b"):
        update = out[k] - SENT[k]
        # each coordinate of the update is either kept (the delta) or pruned (zero): weights stay near sent
        assert np.all((update == 0) | np.isclose(update, DELTA[k]))
    assert out["steps"][0] == 6  # integer arrays pass through as the app replied
    assert reply_arrays(mod("none")(message(), CONTEXT, trainer))["w"][0, 0] == 1.5


def test_mod_draws_fresh_noise_from_os_entropy_by_default() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default is silent: nothing to warn about
        defended = mod("gaussian", sigma=0.1)
    first = reply_arrays(defended(message(), CONTEXT, trainer))
    again = reply_arrays(defended(message(), CONTEXT, trainer))
    assert not np.array_equal(first["w"], again["w"])  # same node, same round, new noise
    noise = first["w"] - SENT["w"] - DELTA["w"]
    assert 0 < np.abs(noise).max() < 1.0


def test_a_fixed_seed_is_reproducible_and_warns_that_it_voids_the_defense() -> None:
    with pytest.warns(KnownSeedWarning, match="undoes the defense"):
        seeded = mod("gaussian", sigma=0.1, seed=3)
    with pytest.warns(KnownSeedWarning):
        twin = mod("gaussian:sigma=0.1", seed=3)
    first = reply_arrays(seeded(message(), CONTEXT, trainer))
    again = reply_arrays(twin(message(), CONTEXT, trainer))
    other_round = reply_arrays(seeded(message(round_=4), CONTEXT, trainer))
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["w"], other_round["w"])


def test_mod_ignores_other_messages_and_refuses_non_update_defenses() -> None:
    evaluate = message(MessageType.EVALUATE)
    assert mod("gaussian", sigma=10.0)(evaluate, CONTEXT, lambda m, c: m) is evaluate
    for spec in ("dpsgd", "ats", "soteria", "precode", "ats | gaussian"):
        with pytest.raises(DefenseError, match="accepted: .*gaussian"):
            mod(spec)


def test_mod_on_replies_that_are_the_update() -> None:
    defense = parse_defense("topk:p=0.25")
    out = reply_arrays(mod(defense, update="reply")(message(), CONTEXT, trainer))
    expected = defense.transform_update(
        [torch.from_numpy(SENT[k] + DELTA[k]) for k in ("w", "b")], torch.Generator()
    )
    assert np.array_equal(out["w"], expected[0].numpy()) and np.array_equal(
        out["b"], expected[1].numpy()
    )


def test_mod_inside_a_client_app() -> None:
    """The mod as users add it: ClientApp(mods=[...]) around a @app.train() function."""
    from flwr.clientapp import ClientApp

    app = ClientApp(mods=[mod("laplacian", b=0.01)])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return trainer(msg, context)

    out = reply_arrays(app(message(), CONTEXT))
    noise = out["w"] - SENT["w"] - DELTA["w"]
    assert 0 < np.abs(noise).max() < 0.5
    assert out["steps"][0] == 6
