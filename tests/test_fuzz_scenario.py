"""Fuzzing the scenario parser: random trees and `--set` overrides never raise anything
but ConfigError, and a ConfigError is always one line that names a field (also where a
valid tree sets something that would do nothing, `fedsim.scenario.acts`)."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedsim.errors import ConfigError
from fedsim.scenario.acts import refuse_ignored
from fedsim.scenario.loading import apply_override, parse_override, validate_scenario

KEYS = [
    "name", "seed", "device", "output", "data", "dataset", "root", "partition", "alpha",
    "eval_samples", "model", "federation", "clients", "clients_per_round", "rounds",
    "round_timeout", "secure_aggregation", "protocol", "kind", "lr", "batch_size",
    "local_steps", "local_batch_size", "defenses", "attacks", "overrides", "budget",
    "iterations", "restarts", "seconds", "label", "audit", "every", "first", "sample",
    "threat", "labels", "worker", "grids", "simulation", "engine", "bogus", "pending",
    "address", "num_cpus", "cpus_per_client", "secagg", "clipping_range",
]  # fmt: skip
NAMES = ["mnist-sample", "cnn", "l2", "bayes", "gaussian:sigma=0.1", "iid", "fedavg", "auto", ""]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NAMES),
    st.text(max_size=12),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=5),
    ),
    max_leaves=25,
)
scenario_trees = st.dictionaries(st.sampled_from(KEYS), trees, max_size=6)

BASE = {
    "data": {"dataset": "mnist-sample"},
    "federation": {"clients": 4},
    "attacks": [{"name": "l2"}, {"name": "bayes"}],
    "defenses": ["gaussian:sigma=0.01"],
}


def _check(raw: object) -> None:
    try:
        # valid trees also go through the check that every setting given acts
        refuse_ignored(validate_scenario(raw, registered_attacks=True))  # type: ignore[arg-type]
    except ConfigError as error:
        message = str(error)
        assert message.startswith("scenario: ") and "\n" not in message, message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario_trees)
def test_random_scenario_trees_fail_only_with_config_errors(raw: dict) -> None:
    _check(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.lists(
                st.sampled_from(KEYS) | st.sampled_from(["0", "1", "7"]), min_size=1, max_size=4
            ),
            st.text(max_size=16) | st.sampled_from(["1", "0.5", "true", "[1, 2]", "'l2'", "{a=1}"]),
        ),
        max_size=4,
    )
)
def test_random_overrides_fail_only_with_config_errors(overrides: list) -> None:
    raw = copy.deepcopy(BASE)
    try:
        for keys, value in overrides:
            path, parsed = parse_override(f"{'.'.join(keys)}={value}")
            apply_override(raw, path, parsed)
    except ConfigError as error:
        assert str(error).startswith("--set ") and "\n" not in str(error)
        return
    _check(raw)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30))
def test_any_override_text_parses_or_is_refused(text: str) -> None:
    try:
        keys, _ = parse_override(text)
    except ConfigError:
        return
    assert keys and all(keys)


def test_keys_with_line_breaks_are_quoted_in_the_one_line_error() -> None:
    _check({"model": {"\n": None}})
