"""Fuzzing update validation: random shapes, dtypes and values into `AttackTarget` and
into the reply check of the aggregation filter and the auditor. The only outcomes
are the documented ones: AttackError, or a one-line reason (never an exception)."""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from attacks.errors import AttackError
from attacks.target import AttackTarget
from fedsim.flower.runtimes.local_grid import _claim_task_identity
from fedsim.strategies.reply_check import array_specs, reply_problem

MODEL = torch.nn.Linear(3, 2)
SHAPES = [tuple(p.shape) for p in MODEL.parameters()]  # (2, 3), (2,)
DTYPES = [np.float32, np.float64, np.float16, np.int64, np.bool_]

_claim_task_identity()  # Messages built outside Flower's runtimes need one

shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)
arrays = st.one_of(
    st.sampled_from(SHAPES).flatmap(
        lambda s: hnp.arrays(np.float32, s, elements=st.floats(width=32) | st.just(np.nan))
    ),
    st.tuples(st.sampled_from(DTYPES), shapes).flatmap(lambda t: hnp.arrays(t[0], t[1])),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(arrays, max_size=3),
    st.integers(-2, 5),
    st.lists(st.integers(0, 3), max_size=3).map(tuple),
)
def test_attack_target_validation_raises_only_attack_errors(
    update: list[np.ndarray], batch_size: int, input_shape: tuple
) -> None:
    tensors = [torch.from_numpy(np.array(a)) for a in update]
    try:
        AttackTarget(
            model=MODEL,
            update=tensors,
            batch_size=batch_size,
            input_shape=input_shape,
            num_classes=2,
        )
    except AttackError as error:
        assert "\n" not in str(error)


EXPECTED = array_specs({"weight": torch.zeros(2, 3), "bias": torch.zeros(2)})
keys = st.sampled_from(["weight", "bias", "other"])


def _reply(content: RecordDict) -> Message:
    request = Message(RecordDict(), dst_node_id=7, message_type=MessageType.TRAIN)
    return Message(content=content, reply_to=request)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.dictionaries(keys, arrays, max_size=3), max_size=2),
    st.dictionaries(
        st.sampled_from(["num-examples", "loss"]),
        st.integers(-5, 5) | st.floats(allow_nan=True, allow_infinity=True),
        max_size=2,
    ),
)
def test_reply_check_never_raises(records: list[dict], metrics: dict) -> None:
    content = RecordDict(
        {
            f"arrays{i}": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in r.items()})
            for i, r in enumerate(records)
        }  # fmt: skip
    )
    content["metrics"] = MetricRecord(metrics)
    problem = reply_problem(_reply(content), EXPECTED)
    assert problem is None or (isinstance(problem, str) and "\n" not in problem)
    if problem is None:
        (only,) = records
        assert set(only) == {"weight", "bias"}
        assert all(np.isfinite(v).all() for v in only.values())
        assert metrics.get("num-examples", 0) > 0


def test_a_good_reply_passes_and_each_defect_is_named() -> None:
    good = {"weight": np.ones((2, 3), np.float32), "bias": np.ones(2, np.float32)}

    def check(arrays: dict, weight: object = 4) -> str | None:
        content = RecordDict(
            {
                "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                "metrics": MetricRecord({"num-examples": weight}),
            }
        )
        return reply_problem(_reply(content), EXPECTED)

    assert check(good) is None
    assert "NaN" in check({**good, "bias": np.array([np.nan, 1], np.float32)})
    assert "NaN or infinite" in check({**good, "bias": np.array([np.inf, 1], np.float32)})
    assert "shape" in check({**good, "weight": np.ones((3, 2), np.float32)})
    assert "dtype" in check({**good, "bias": np.ones(2, np.float64)})
    assert "missing bias" in check({"weight": good["weight"]})
    assert "num-examples" in check(good, weight=0)
