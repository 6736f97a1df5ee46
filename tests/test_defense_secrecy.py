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
    from fedsim.auditor.engine import AuditEngine, ClientCase
    from fedsim.auditor.setup import AuditSetup
    from fedsim.flower.local_update import local_update
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
    engine = AuditEngine(AuditSetup.from_federation(federation), torch.device("cpu"))
    case = ClientCase(0, engine.setup.recover_update(start, sent, names))
    case.originals, case.true_labels = engine.setup.ground_truth(0, 1)
    case.trained_on = engine.setup.trained_batch(0, 1)[0]  # scoring has it; attacks must not
    target = engine.target(federation.build_model(), case)
    attacks = [attack for _, attack in engine.attacks]
    assert _forbidden(_reachable(target, *attacks)) == []
    # The walk does find a generator where one is held: the scoring side's setup.
    assert "Federation" in _forbidden(_reachable(engine.setup))


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
    assert callers == ["fedsim/flower/local_update.py", "fedsim/scenario/build.py"]
