"""The client's half of SecAgg+: Flower's `secaggplus_mod`, only for SecAgg+ messages.

Flower 1.42 runs SecAgg+ on its legacy workflow only: each round the server sends
four TRAIN messages (setup, share keys, collect masked vectors, unmask) that carry a
`secaggplus_configs` ConfigRecord; the third also holds a legacy FitIns, which the
ClientApp's train function answers with a FitRes (`fedsim.flower.apps.client_app`).
`secaggplus_mod` then quantises and masks the weights, so they never leave the
client in the clear. Message-API train messages (no SecAgg+) pass by untouched,
so one ClientApp serves both paths.

Flower's quantiser rounds stochastically with numpy's global generator. For the
collect stage this mod seeds it from (scenario seed, round, partition) and restores
it afterwards, so a run's aggregates repeat (the masks cancel exactly).
"""

from __future__ import annotations

import numpy as np
from flwr.app import Context, Message
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

from fedsim.message_keys import LEGACY_FIT_CONFIG, PARTITION_KEY, SEED_KEY
from fedsim.scenario.build import derived_seed

_ROUNDING_TAG = 0x5EC4


def is_secagg_message(message: Message) -> bool:
    """True for the TRAIN messages of Flower's SecAgg+ workflow."""
    return RECORD_KEY_CONFIGS in message.content.config_records


def rounding_seed(seed: int, server_round: int, partition: int) -> int:
    """The seed of a client's stochastic rounding in one round (a 32-bit numpy seed)."""
    return derived_seed(seed, _ROUNDING_TAG, server_round, partition) % 2**32


def secure_aggregation_mod(
    message: Message, context: Context, call_next: ClientAppCallable
) -> Message:
    """Train mod: SecAgg+ messages through `secaggplus_mod`, the others straight on."""
    if not is_secagg_message(message):
        return call_next(message, context)
    stage = message.content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE)
    if stage != Stage.COLLECT_MASKED_VECTORS:
        return secaggplus_mod(message, context, call_next)
    config = message.content.config_records[LEGACY_FIT_CONFIG]
    seed = rounding_seed(
        int(config[SEED_KEY]), int(config["server-round"]), int(context.node_config[PARTITION_KEY])
    )
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        return secaggplus_mod(message, context, call_next)
    finally:
        np.random.set_state(saved)
