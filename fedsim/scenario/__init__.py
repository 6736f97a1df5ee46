"""Scenarios: a TOML file validated into a typed configuration, with `--set` overrides."""

from __future__ import annotations

from fedsim.scenario.audit import AttackConfig, AuditConfig, BudgetConfig
from fedsim.scenario.config import DataConfig, ModelConfig, Scenario
from fedsim.scenario.federation import FederationConfig
from fedsim.scenario.loading import (
    load_scenario,
    parse_override,
    scenario_from_resolved,
    scenario_to_toml,
    validate_scenario,
)
from fedsim.scenario.protocol import ProtocolConfig

__all__ = [
    "AttackConfig",
    "AuditConfig",
    "BudgetConfig",
    "DataConfig",
    "FederationConfig",
    "ModelConfig",
    "ProtocolConfig",
    "Scenario",
    "load_scenario",
    "parse_override",
    "scenario_from_resolved",
    "scenario_to_toml",
    "validate_scenario",
]
