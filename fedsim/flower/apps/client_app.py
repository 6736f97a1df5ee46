"""The fedsim ClientApp: trains the scenario's model on its partition, applies the defenses.

The server sends the resolved scenario (TOML text) in every train/evaluate config, so
one stateless ClientApp serves the simulation engine and the deployment engine alike;
the node's `partition-id` (from its `node_config`) says which client it is, and the
reply carries it back in a ConfigRecord because node ids are random (with the Ray node
it ran on, when an actor of Flower's Ray engine runs it). Under secure aggregation the
train messages are Flower's legacy SecAgg+ ones: `secure_aggregation_mod` runs the
protocol and `legacy_fit` trains (see `fedsim.flower.apps.secagg_client`).

Two apps share every function and differ in one thing, where a client's defense
randomness comes from. `app` — what `flwr run .` and the deployment engine load — draws
it from the operating system's entropy: the scenario (seed included) comes from the
server, so a client that derived its noise from it would hand the server the noise. No
message can switch it to a seed. `simulation_app` — what `fedsim run` launches — derives
it from the scenario seed so that runs repeat; its runs record that the seed in the run
directory regenerates the noise (`fedsim.scenario.build.SEEDED_NOISE`).
"""

from __future__ import annotations

import sys
from functools import partial

import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from fedsim.flower.apps.local_update import local_update
from fedsim.flower.apps.secagg_client import secure_aggregation_mod
from fedsim.flower.runtimes.faults import inject_faults
from fedsim.message_keys import (
    FEDSIM_RECORD,
    LEGACY_FIT_PARAMETERS,
    PARTITION_KEY,
    RAY_NODE_KEY,
    SCENARIO_KEY,
    TORCH_THREADS_KEY,
)
from fedsim.scenario.build import Federation, build_federation
from fedsim.scenario.loading import scenario_from_resolved


def _federation(message: Message) -> Federation:
    return _federation_from(message.content.config_records["config"])


def _federation_from(config: ConfigRecord | dict) -> Federation:
    threads = int(config.get(TORCH_THREADS_KEY, 0))
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return build_federation(scenario_from_resolved(str(config[SCENARIO_KEY])))


def _partition(context: Context, federation: Federation) -> int:
    partition = int(context.node_config[PARTITION_KEY])
    if not 0 <= partition < federation.num_clients:
        raise ValueError(
            f"partition-id {partition} outside the scenario's {federation.num_clients} clients"
        )
    return partition


def ray_node() -> str | None:
    """The id of the Ray node when a Ray actor runs this client, else None (in-process
    clients stay unmarked even when the process also drives Ray for its audits)."""
    ray = sys.modules.get("ray")  # a Ray worker has imported it; nothing else need
    if ray is None or not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    return context.get_node_id() if context.get_actor_id() is not None else None


def _fedsim_record(client: int) -> ConfigRecord:
    """Which partition replies, and where it ran under Ray."""
    node = ray_node()
    values: dict[str, int | str] = {PARTITION_KEY: client}
    if node is not None:
        values[RAY_NODE_KEY] = node
    return ConfigRecord(values)


def _model(federation: Federation, message: Message) -> torch.nn.Module:
    model = federation.build_model()
    model.load_state_dict(message.content.array_records["arrays"].to_torch_state_dict())
    return model


def train(message: Message, context: Context, *, seeded: bool) -> Message:
    """One round of local training on this partition's seeded batch; `seeded`: defense
    randomness from the scenario seed (simulation) or the OS (deployable)."""
    if LEGACY_FIT_PARAMETERS in message.content.array_records:
        return legacy_fit(message, context, seeded=seeded)
    federation = _federation(message)
    client = _partition(context, federation)
    server_round = int(message.content.config_records["config"]["server-round"])
    model = _model(federation, message)
    result = local_update(federation, model, client, server_round, seeded=seeded)
    content = RecordDict(
        {
            "arrays": ArrayRecord(result.state),
            "metrics": MetricRecord(
                {"num-examples": result.num_examples, "train-loss": result.loss}
            ),
            FEDSIM_RECORD: _fedsim_record(client),
        }
    )
    return Message(content=content, reply_to=message)


def legacy_fit(message: Message, context: Context, *, seeded: bool) -> Message:
    """The same training for a legacy FitIns (SecAgg+): weights in state-dict order in a FitRes.

    The partition id and the training loss travel as FitRes metrics, which SecAgg+
    does not hide; the weights go to `secaggplus_mod`, which masks them.
    """
    fitins = compat.recorddict_to_fitins(message.content, keep_input=True)
    federation = _federation_from(fitins.config)
    client = _partition(context, federation)
    model = federation.build_model()
    names = list(model.state_dict())
    arrays = parameters_to_ndarrays(fitins.parameters)
    if len(arrays) != len(names):
        raise ValueError(f"got {len(arrays)} arrays for a model of {len(names)}")
    state = {n: torch.from_numpy(a.copy()) for n, a in zip(names, arrays, strict=True)}
    model.load_state_dict(state)
    server_round = int(fitins.config["server-round"])
    result = local_update(federation, model, client, server_round, seeded=seeded)
    fitres = FitRes(
        status=Status(Code.OK, ""),
        parameters=ndarrays_to_parameters([result.state[n].numpy() for n in names]),
        num_examples=result.num_examples,
        metrics={PARTITION_KEY: client, "train-loss": result.loss},
    )
    return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=message)


def evaluate(message: Message, context: Context) -> Message:
    """Loss and accuracy of the received model on this partition's training data."""
    federation = _federation(message)
    client = _partition(context, federation)
    model = _model(federation, message).eval()
    data = federation.train.subset(federation.partitions[client])
    with torch.no_grad():
        logits = model(data.images)
        loss = float(F.cross_entropy(logits, data.labels))
        accuracy = float((logits.argmax(dim=1) == data.labels).float().mean())
    content = RecordDict(
        {
            "metrics": MetricRecord(
                {"num-examples": len(data), "eval-loss": loss, "eval-acc": accuracy}
            ),
            FEDSIM_RECORD: ConfigRecord({PARTITION_KEY: client}),
        }
    )
    return Message(content=content, reply_to=message)


def query(message: Message, context: Context) -> Message:
    """Which partition this node holds (for seeded client sampling by partition id)."""
    partition = int(context.node_config[PARTITION_KEY])
    content = RecordDict({FEDSIM_RECORD: ConfigRecord({PARTITION_KEY: partition})})
    return Message(content=content, reply_to=message)


def _client_app(*, seeded: bool) -> ClientApp:
    """A ClientApp whose clients draw defense randomness as `seeded` says (module note)."""
    client_app = ClientApp()
    client_app.train(mods=[inject_faults, secure_aggregation_mod])(partial(train, seeded=seeded))
    client_app.evaluate()(evaluate)
    client_app.query()(query)
    return client_app


app = _client_app(seeded=False)
"""The deployable ClientApp (`flwr run`, the deployment engine): noise from OS entropy."""

simulation_app = _client_app(seeded=True)
"""`fedsim run`'s ClientApp: noise derived from the scenario seed, so runs repeat."""
