"""Names of the records fedsim's server and clients exchange (besides Flower's own)."""

from __future__ import annotations

from flwr.app import Message

FEDSIM_RECORD = "fedsim"
"""ConfigRecord in every fedsim reply: which partition the client is (node ids are random)."""

PARTITION_KEY = "partition-id"
"""The client's partition id, as in Flower's `node_config`."""

RAY_NODE_KEY = "ray-node"
"""The Ray node a client ran on (its hex id), in the fedsim record of replies from Ray workers."""

SCENARIO_KEY = "fedsim-scenario"
"""Train/evaluate config entry holding the resolved scenario as TOML text."""

TORCH_THREADS_KEY = "fedsim-torch-threads"
"""Train/evaluate config entry: intra-op threads a client may use (0: leave as is)."""

SEED_KEY = "fedsim-seed"
"""SecAgg+ fit config entry: the scenario seed (seeds the clients' stochastic rounding)."""

LEGACY_FIT_PARAMETERS = "fitins.parameters"
"""ArrayRecord of a legacy FitIns (Flower's SecAgg+ workflow): the weights, unnamed, in order."""

LEGACY_FIT_CONFIG = "fitins.config"
"""ConfigRecord of a legacy FitIns: the fit config."""


def reply_partition(message: Message) -> int | None:
    """The partition id a fedsim client put in its reply, or None for other clients."""
    record = message.content.config_records.get(FEDSIM_RECORD)
    if record is None or PARTITION_KEY not in record:
        return None
    return int(record[PARTITION_KEY])


def reply_ray_node(message: Message) -> str | None:
    """The Ray node a fedsim client reported running on, or None (not under Ray)."""
    record = message.content.config_records.get(FEDSIM_RECORD)
    if record is None or RAY_NODE_KEY not in record:
        return None
    return str(record[RAY_NODE_KEY])
