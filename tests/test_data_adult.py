"""The packaged UCI Adult sample: real rows, standardised continuous columns, one-hot groups,
a federation and an attack on it."""

from __future__ import annotations

import pytest
import torch

from attacks.domain import FeatureDomain
from fedsim.data import load_dataset
from fedsim.data.adult import ADULT_SAMPLE_INFO, CATEGORY_SIZES, CONTINUOUS, FEATURES
from fedsim.errors import ConfigError
from fedsim.models import build_model
from fedsim.scenario.build import build_federation
from fedsim.scenario.loading import validate_scenario


def test_rows_are_standardised_continuous_columns_then_one_hot_groups() -> None:
    train, test = load_dataset("adult-sample", "train"), load_dataset("adult-sample", "test")
    assert train.images.shape == (2000, FEATURES) and test.images.shape == (500, FEATURES)
    assert FEATURES == 6 + 8 + 16 + 7 + 14 + 6 + 5 + 2 + 41
    continuous = train.images[:, : len(CONTINUOUS)].double()
    assert continuous.mean(0).abs().max() < 1e-6 and (continuous.std(0) - 1).abs().max() < 1e-3
    for (start, stop), size in zip(
        ADULT_SAMPLE_INFO.categorical, CATEGORY_SIZES.values(), strict=True
    ):
        group = train.images[:, start:stop]
        assert stop - start == size and torch.equal(group.sum(1), torch.ones(2000))
    # the first row of adult.data: 39, State-gov, ..., Bachelors, ..., Male, <=50K
    first = train.images[0]
    sex = ADULT_SAMPLE_INFO.categorical[6]
    assert first[sex[0] : sex[1]].tolist() == [0.0, 1.0] and int(train.labels[0]) == 0
    assert 0.2 < float(train.labels.float().mean()) < 0.3  # about a quarter earn > 50K
    assert isinstance(ADULT_SAMPLE_INFO.domain(), FeatureDomain)


def test_image_models_refuse_feature_rows_with_one_line() -> None:
    with pytest.raises(ConfigError, match="'cnn' needs images.*adult-sample.*mlp"):
        build_model("cnn", ADULT_SAMPLE_INFO)
    logits = build_model("mlp", ADULT_SAMPLE_INFO)(load_dataset("adult-sample", "test").images[:3])
    assert logits.shape == (3, 2)


def test_federation_grants_feature_statistics_only_where_the_threat_model_does() -> None:
    raw = {
        "name": "adult",
        "data": {"dataset": "adult-sample"},
        "model": {"name": "mlp"},
        "federation": {"clients": 2, "rounds": 1},
        "protocol": {"kind": "fedavg", "batch_size": 4, "local_steps": 2},
    }
    plain = build_federation(validate_scenario(raw)).domain()
    assert isinstance(plain, FeatureDomain) and not plain.has_statistics
    assert plain.categorical == ADULT_SAMPLE_INFO.categorical
    raw["audit"] = {"threat": {"feature_stats_known": True}}
    granted = build_federation(validate_scenario(raw)).domain()
    assert granted.has_statistics and abs(granted.mean[0]) < 1e-6 and len(granted.std) == FEATURES
