"""A client's defense randomness stays the client's.

Deployment: a curious server that knows everything a server knows — the scenario, the
node ids, the rounds and the Flower mod's defaults — cannot regenerate a client's noise
or mask; subtracting its best guess leaves the update as noisy as before. Simulation: the
generator a client's defenses draw from (seeded from the scenario) never reaches an
attack: no object an attack is handed leads to it.
"""

from __future__ import annotations

import functools
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

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
    RecordDict,
)

from defenses.flower import _generator, mod
from defenses.registry import parse_defense

REPO = Path(__file__).resolve().parents[1]
NODE, ROUND = 7, 3
SHAPES = {"w": (64, 48), "b": (48,)}
SENT = {k: np.zeros(s, dtype=np.float32) for k, s in SHAPES.items()}
DELTA = {
    k: np.random.default_rng(5).normal(0.0, 1.0, s).astype(np.float32) for k, s in SHAPES.items()
}
CONTEXT = Context(run_id=1, node_id=NODE, node_config={}, state=RecordDict(), run_config={})

GUESSED_SEEDS = [*range(32), 42, 1234, 2**31 - 1]
"""Seeds a server would try: the old default 0, small integers, the usual favourites."""


def _message(node: int = NODE, round_: int = ROUND) -> Message:
    metadata = Metadata(
        run_id=1, message_id="m", src_node_id=0, dst_node_id=node, reply_to_message_id="",
        group_id=str(round_), created_at=0.0, ttl=3600.0, message_type=MessageType.TRAIN,
    )  # fmt: skip
    record = ArrayRecord(array_dict={k: Array(v) for k, v in SENT.items()})
    return Message(RecordDict({"arrays": record, "config": ConfigRecord({})}), metadata=metadata)


def _trainer(msg: Message, context: Context) -> Message:
    sent = msg.content["arrays"]
    new = {k: Array(sent[k].numpy() + DELTA[k]) for k in sent}
    return Message(RecordDict({"arrays": ArrayRecord(array_dict=new)}), reply_to=msg)


def _defended_delta(defense_mod) -> np.ndarray:  # noqa: ANN001
    reply = defense_mod(_message(), CONTEXT, _trainer)
    arrays = reply.content["arrays"]
    return np.concatenate([(arrays[k].numpy() - SENT[k]).ravel() for k in SHAPES])


def _server_guesses(spec: str) -> Iterator[np.ndarray]:
    """Every defended delta the server can produce itself: the code's fixed-seed
    derivation for each guessed seed (it knows node and round), and the mod run again
    with its defaults."""
    defense = parse_defense(spec)
    clean = [torch.from_numpy(DELTA[k]) for k in SHAPES]
    for seed in GUESSED_SEEDS:
        out = defense.transform_update(clean, _generator(seed, _message()))
        yield np.concatenate([o.numpy().ravel() for o in out])
    yield _defended_delta(mod(spec))


NOISY = [
    ("gaussian:sigma=0.1", "none"),
    ("laplacian:b=0.1", "none"),
    ("prune+gaussian:p=0.5,sigma=0.1", "prune:p=0.5"),  # the mask is public, the noise is not
    ("prune+laplacian:p=0.5,b=0.1", "prune:p=0.5"),
]
"""(defense, its noise-free twin): what the server would see without the noise."""


@pytest.mark.parametrize("spec, twin", NOISY)
def test_a_curious_server_cannot_regenerate_the_mods_noise(spec: str, twin: str) -> None:
    observed = _defended_delta(mod(spec))
    clean = _defended_delta(mod(twin))
    noise = np.linalg.norm(observed - clean)
    left = min(np.linalg.norm(observed - guess) for guess in _server_guesses(spec))
    # Subtracting nothing leaves `noise`; any regenerated guess is independent noise.
    assert min(left, noise) >= 0.99 * noise


@pytest.mark.parametrize("spec, twin", NOISY)
def test_with_a_known_seed_the_same_server_undoes_the_noise(spec: str, twin: str) -> None:
    """The check above can fail: a fixed seed (tests only) hands the server the noise."""
    with pytest.warns(UserWarning, match="undoes the defense"):
        seeded = mod(spec, seed=0)
    observed = _defended_delta(seeded)
    noise = np.linalg.norm(observed - _defended_delta(mod(twin)))
    left = min(np.linalg.norm(observed - guess) for guess in _server_guesses(spec))
    assert left < 1e-6 * noise


MIXTURE = "random-prune:p=0.5 | gaussian:sigma=0.01"
"""A fresh random mask per update, hidden under noise on every coordinate."""


def _kept(delta: np.ndarray) -> np.ndarray:
    # |DELTA| is ≥ 0.05 almost everywhere, 5 σ above the noise: kept is readable here.
    clean = np.concatenate([DELTA[k].ravel() for k in SHAPES])
    return np.abs(delta - clean) < np.abs(delta)


def test_a_curious_server_cannot_regenerate_a_random_mask() -> None:
    truth = _kept(_defended_delta(mod(MIXTURE)))
    agreement = max(np.mean(_kept(guess) == truth) for guess in _server_guesses(MIXTURE))
    assert agreement < 0.6  # chance is 0.5; a regenerated mask would agree everywhere
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seeded = _kept(_defended_delta(mod(MIXTURE, seed=5)))
    assert max(np.mean(_kept(guess) == seeded) for guess in _server_guesses(MIXTURE)) > 0.99


# ---------------------------------------------------------------- simulation: the contract


def _reachable(*roots: object) -> Iterator[object]:
    """Every object reachable from `roots` through instance attributes, containers,
    bound methods and closures (not through modules or classes: those are code)."""
    seen: set[int] = set()
    stack = list(roots)
    leaves = (str, bytes, int, float, bool, type(None), torch.Tensor, type, types.ModuleType)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, leaves):
            continue
        if isinstance(obj, dict):
            stack.extend([*obj.keys(), *obj.values()])
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif isinstance(obj, types.MethodType):
            stack.extend([obj.__self__, obj.__func__])
        elif isinstance(obj, types.FunctionType):
            stack.extend(c.cell_contents for c in obj.__closure__ or () if _filled(c))
            stack.extend(obj.__defaults__ or ())
        elif isinstance(obj, functools.partial):
            stack.extend([obj.func, *obj.args, *obj.keywords.values()])
        else:
            if hasattr(obj, "__dict__"):
                stack.append(vars(obj))
            for name in getattr(type(obj), "__slots__", ()):
                if hasattr(obj, name):
                    stack.append(getattr(obj, name))


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def _forbidden(objects: Iterator[object]) -> list[str]:
    from fedsim.auditor.setup import AuditSetup
    from fedsim.scenario.build import Federation

    found = []
    for obj in objects:
        if isinstance(obj, torch.Generator | Federation | AuditSetup):
            found.append(type(obj).__name__)
        elif getattr(obj, "__name__", "") in ("defense_generator", "trained_batch"):
            found.append(obj.__name__)
    return found


def test_no_attack_target_or_attack_of_the_auditor_leads_to_a_defense_generator() -> None:
    from fedsim.auditor.attack_runner import AttackRunner, ClientCase
    from fedsim.auditor.setup import AuditSetup
    from fedsim.flower.apps.local_update import local_update
    from fedsim.scenario.build import build_federation
    from fedsim.scenario.loading import load_scenario

    scenario = load_scenario(
        REPO / "scenarios" / "quickstart.toml",
        [
            "defenses=['ats:policy=hybrid', 'gaussian:sigma=0.1']",
            "attacks=[{name = 'bayes'}, {name = 'adapted'}, {name = 'l2'}]",
            "federation.clients=2",
            "audit.clients.sample=2",
        ],
    )
    federation = build_federation(scenario)
    model = federation.build_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    sent = local_update(federation, model, 0, 1).state
    names = [n for n, _ in model.named_parameters()]
    runner = AttackRunner(AuditSetup.from_federation(federation), torch.device("cpu"))
    case = ClientCase(0, runner.setup.recover_update(start, sent, names))
    case.originals, case.true_labels = runner.setup.ground_truth(0, 1)
    case.trained_on = runner.setup.trained_batch(0, 1)[0]  # scoring has it; attacks must not
    target = runner.target(federation.build_model(), case)
    attacks = [attack for _, attack in runner.attacks]
    assert _forbidden(_reachable(target, *attacks)) == []
    # The walk does find a generator where one is held: the scoring side's setup.
    assert "Federation" in _forbidden(_reachable(runner.setup))


def test_no_target_of_fedsim_attack_leads_to_a_defense_generator() -> None:
    from fedsim.attack_matrix.cells import MatrixSettings, defended_batches, image_batches

    settings = MatrixSettings(images=2, defenses=("gaussian:sigma=0.1",))
    info, images, labels = image_batches(settings)
    batches = defended_batches(
        settings, "gaussian:sigma=0.1", info, images, labels, torch.device("cpu")
    )
    assert _forbidden(_reachable(*batches.targets)) == []


def test_only_the_client_and_ground_truth_scoring_call_the_defense_generator() -> None:
    callers = sorted(
        str(path.relative_to(REPO))
        for package in ("attacks", "defenses", "fedsim")
        for path in (REPO / package).rglob("*.py")
        if "defense_generator" in path.read_text(encoding="utf-8")
    )
    assert callers == ["fedsim/flower/apps/local_update.py", "fedsim/scenario/build.py"]


# ------------------------------------------- fedsim's own ClientApp, on the deployment path


def _train_reply(client_app, scenario, state: dict[str, torch.Tensor]) -> dict:  # noqa: ANN001
    """What `client_app` sends back for partition 0 in round 1, as the server sends it."""
    from flwr.app import ArrayRecord

    from fedsim.flower.runtimes.local_grid import LocalGrid
    from fedsim.message_keys import SCENARIO_KEY
    from fedsim.scenario.loading import scenario_to_toml

    grid = LocalGrid(client_app, num_nodes=2, seed=0)
    node = next(iter(grid.get_node_ids()))  # partition 0
    config = ConfigRecord({SCENARIO_KEY: scenario_to_toml(scenario), "server-round": 1})
    content = RecordDict({"arrays": ArrayRecord(state), "config": config})
    (reply,) = grid.send_and_receive([grid.create_message(content, MessageType.TRAIN, node, "1")])
    return reply.content["arrays"].to_torch_state_dict()


def _server_replays(
    federation,  # noqa: ANN001
    state: dict[str, torch.Tensor],
) -> Iterator[torch.Tensor]:
    """Every update of partition 0 in round 1 a server holding the scenario can compute: the
    client's from the scenario seed (what fedsim's ClientApp once drew), then with each
    guessed seed for the defense's generator."""
    from defenses.client import client_update
    from fedsim.flower.apps.local_update import local_update

    names = [n for n, _ in federation.build_model().named_parameters()]
    model = federation.build_model()
    model.load_state_dict(state)
    yield _flat(local_update(federation, model, 0, 1, seeded=True).state, names)
    x, y = federation.client_batch(0, 1)
    lr = federation.scenario.protocol.lr
    for seed in GUESSED_SEEDS[:4] + GUESSED_SEEDS[-3:]:
        model.load_state_dict(state)
        generator = torch.Generator().manual_seed(seed)
        update = client_update(federation.defense, model, x, y, generator, kind="fedsgd").update
        yield torch.cat(
            [(state[n] - lr * u).reshape(-1).double() for n, u in zip(names, update, strict=True)]
        )


def _flat(state: dict, names: list[str]) -> torch.Tensor:
    return torch.cat([state[n].reshape(-1).double() for n in names])


@pytest.mark.parametrize(
    "spec, twin",
    [("dpsgd:clip=1,sigma=0.5", "dpsgd:clip=1,sigma=0"), ("gaussian:0.1", "gaussian:1e-12")],
)
def test_a_curious_server_cannot_replay_the_noise_of_fedsims_deployable_client_app(
    spec: str, twin: str
) -> None:
    """`app` (what `flwr run` loads) draws from OS entropy; `simulation_app` from the seed."""
    from fedsim.flower.apps.client_app import app, simulation_app
    from fedsim.scenario.build import build_federation
    from fedsim.scenario.loading import load_scenario

    def scenario_with(defense: str):  # noqa: ANN202
        overrides = [
            f"defenses=['{defense}']",
            "federation.clients=2",
            "audit.clients.sample=2",
            "model.name='mlp'",
            "protocol={kind='fedsgd', lr=0.1, batch_size=4}",
        ]
        return load_scenario(REPO / "scenarios" / "quickstart.toml", overrides)

    scenario = scenario_with(spec)
    federation = build_federation(scenario)
    state = federation.initial_state()
    names = [n for n, _ in federation.build_model().named_parameters()]
    sent = _flat(_train_reply(app, scenario, state), names)
    clean = _flat(_train_reply(simulation_app, scenario_with(twin), state), names)
    noise = float((sent - clean).norm())
    assert noise > 0
    replays = list(_server_replays(federation, state))
    left = min(float((sent - r).norm()) for r in replays)
    assert left >= 0.99 * noise  # no replay removes any of the noise
    # The check can fail: the simulation's client is replayed bit for bit.
    simulated = _flat(_train_reply(simulation_app, scenario, state), names)
    assert float((simulated - replays[0]).norm()) == 0.0


# ----------------------------------- `fedsim attack`: the attack's streams and the defense's


def _rounding_decisions(
    spec: str,
    settings,  # noqa: ANN001
    index: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For batch `index` under `quantize`: whether each coordinate of the first tensor was
    rounded up, and the probability it had to be (its position inside its cell)."""
    from fedsim.attack_matrix.cells import defended_batches, image_batches

    info, images, labels = image_batches(settings)
    cpu = torch.device("cpu")
    made = defended_batches(settings, spec, info, images, labels, cpu).targets[index]
    clean = defended_batches(settings, "none", info, images, labels, cpu).targets[index]
    observed, true = made.update[0].reshape(-1), clean.update[0].reshape(-1)
    step = (true.max() - true.min()) / (2 ** int(spec.split("=")[1]) - 1)
    position = (true - true.min()) / step
    return observed > true.min() + position.floor() * step + step / 2, position - position.floor()


def _agreement(up: torch.Tensor, chance: torch.Tensor, uniforms: torch.Tensor) -> float:
    """The share of rounding decisions that `uniforms` predict (up where u < chance)."""
    n = min(len(up), len(uniforms))
    return float(((uniforms[:n] < chance[:n]) == up[:n]).double().mean())


def test_no_restart_of_an_attack_can_predict_the_defense_of_fedsim_attack() -> None:
    """Each target's defense and each restart's starting point draw from streams of one
    seed derived under different names; their draws are unrelated for every pair."""
    from attacks.registry import build_attack
    from attacks.seeding import stream_seed
    from fedsim.attack_matrix.cells import (
        DEFENSE_STREAM,
        MatrixSettings,
        defended_batches,
        image_batches,
    )

    spec = "quantize:bits=2"
    settings = MatrixSettings(images=2, defenses=(spec,))
    info, images, labels = image_batches(settings)
    target = defended_batches(settings, spec, info, images, labels, torch.device("cpu")).targets[0]
    attack = build_attack("bayes", seed=settings.seed)
    for index in range(2):
        up, chance = _rounding_decisions(spec, settings, index)
        # The measure finds a shared stream: the defense's own generator predicts every decision.
        own = torch.Generator().manual_seed(stream_seed(settings.seed, DEFENSE_STREAM, 0, index))
        assert _agreement(up, chance, torch.rand(len(up), generator=own)) == 1.0
        for restart in range(3):
            start = attack._initial(target, restart).reshape(-1)
            assert _agreement(up, chance, start) < 0.9, (index, restart)
