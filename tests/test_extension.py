"""A defense and an attack defined outside the packages, as a researcher adds them
(CONTRIBUTING.md): registered by name, each works in `fedsim attack`, in a scenario run
and in the auditor; the defense composes with the package's noise and states its own
privacy claim, the attack brings its own objective and inherits its base class's prior.

The defense below is a client-level Gaussian mechanism (as Flower's LocalDpMod): the
whole update clipped to norm C, then Gaussian noise σ·C. Any change to a client's
records moves the clipped update by at most 2C, so each round is a Gaussian mechanism
of noise multiplier σ/2, composed over the rounds (user-level, q = 1).

The attack below is Inverting Gradients (`cos`) with an L2 term added to its cosine
distance: a data term registered as an objective, with an option, and an attack that
subclasses `cos` and so runs with its optimiser and its total-variation prior.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from attacks import CosineAttack, register_attack, register_objective
from attacks.objectives import CosineDistance, L2Distance, Objective, Observed
from attacks.updates import CandidateUpdates
from defenses import Defense, Parameter, PrivacyClaim, RoundSchedule, register_defense
from defenses.accounting import check_delta, dp_epsilon
from defenses.base import TrainingProtocol, added_gaussian_variance, draw_normal
from defenses.mechanisms import ClippedGaussianMechanism, Mechanism, NoiseKind
from defenses.reconstruction import Kappa, gaussian_steps_bound

NAME = "test-clip-noise"


@register_defense
class ClipAndNoise(Defense):
    """Update stage: the whole update clipped to norm C, then N(0, (σC)² I)."""

    name = NAME
    reference = "this test (after Flower's LocalDpMod)"
    effect = "clips the whole update to norm C and adds Gaussian noise σ·C"
    parameters = (
        Parameter("clip", float, 1.0, "norm bound C of the update", low=0.0, low_open=True),
        Parameter("sigma", float, 0.5, "noise multiplier σ", low=0.0, low_open=True),
        Parameter("delta", float, 1e-5, "δ of the claim", low=0.0, high=1.0, low_open=True),
    )
    stages = frozenset({"update"})
    perturbs_update = True
    randomised = True
    states_privacy = True
    examples = (f"{NAME}:clip=2,sigma=0.3",)
    clip: float
    sigma: float
    delta: float

    @property
    def mechanism(self) -> Mechanism:
        return ClippedGaussianMechanism(self.clip, self.sigma * self.clip)

    @property
    def mechanism_note(self) -> str:
        return "exact: the candidate clipped as a whole, then Gaussian with std σ·C"

    def mechanism_with_noise(
        self,
        noise: Sequence[tuple[NoiseKind, float]],
        batch_size: int,
        protocol: TrainingProtocol | None = None,
    ) -> tuple[Mechanism, str] | None:
        extra = added_gaussian_variance(noise)
        if extra is None:
            return None
        std = math.sqrt((self.sigma * self.clip) ** 2 + extra)
        return ClippedGaussianMechanism(self.clip, std), "clipped Gaussian, variances added"

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        norm = float(torch.cat([u.reshape(-1) for u in update]).norm())
        factor = min(1.0, self.clip / (norm + 1e-12))
        return [u * factor + self.sigma * self.clip * draw_normal(u, generator) for u in update]

    def privacy_claims(
        self,
        schedule: RoundSchedule,
        rounds: int,
        *,
        noise_known_to_server: str = "",
        seeded_noise: str = "",
        kappa: Kappa | None = None,
        **_: Any,
    ) -> list[PrivacyClaim]:
        check_delta(self.delta, schedule.partition_size)
        multiplier = self.sigma / 2
        bound = None if kappa is None else gaussian_steps_bound(kappa, multiplier, rounds, 1.0)
        return [
            PrivacyClaim(
                "user",
                dp_epsilon(multiplier, 1.0, rounds, self.delta),
                self.delta,
                "user-level: the whole update clipped to C (sensitivity 2C), q = 1",
                holds=not noise_known_to_server,
                why_not=noise_known_to_server,
                reconstruction_bound=bound,
                caveat=seeded_noise,
            )
        ]


SPEC = f"{NAME}:clip=1,sigma=0.5"


def test_it_is_listed_parsed_and_composed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from defenses import DEFENSES, parse_defense, update_stage_defenses
    from fedsim.cli import main

    monkeypatch.setenv("COLUMNS", "250")
    assert DEFENSES[NAME] is ClipAndNoise and NAME in update_stage_defenses()
    assert main(["list", "defenses"]) == 0
    assert NAME in capsys.readouterr().out
    stacked = parse_defense(f"{SPEC} | gaussian:0.2").mechanism_for(4)
    assert stacked == ClippedGaussianMechanism(1.0, math.sqrt(0.5**2 + 0.2**2))
    schedule = RoundSchedule(partition_size=100, batch_size=4)
    (claim,) = parse_defense(f"ats | {SPEC}").privacy_claims(schedule, 3)
    assert claim.epsilon == dp_epsilon(0.25, 1.0, 3, 1e-5) and claim.holds


def test_fedsim_attack_runs_it_by_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from fedsim.cli import main

    out = tmp_path / "attack.json"
    argv = ["attack", "--images", "1", "--attack", "bayes:iterations=3", "--defense", SPEC]
    assert main([*argv, "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["defense"] == f"{NAME}:clip=1.0,sigma=0.5,delta=1e-05"
    assert result["mechanism"]["name"] == "clipped-gaussian"
    assert main(["attack", "--defense", f"{NAME}:clip=-1"]) == 2
    assert "'clip'" in capsys.readouterr().err


def test_a_scenario_runs_it_and_records_its_claim(tmp_path: Path) -> None:
    from fedsim.cli import main
    from fedsim.errors import ConfigError
    from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, read_jsonl
    from fedsim.scenario.build import SEEDED_NOISE, build_federation
    from fedsim.scenario.loading import load_scenario

    quickstart = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml"
    settings = [
        f"defenses=['{SPEC}']", "attacks=[{name = 'bayes'}]", "federation.rounds=1",
        "federation.clients=2", "audit.clients={}", "audit.budget.iterations=2",
        "audit.worker='inline'", "data.eval_samples=20", "simulation.engine='inprocess'",
    ]  # fmt: skip
    out = tmp_path / "run"
    argv = ["run", str(quickstart), *[a for s in settings for a in ("--set", s)]]
    assert main([*argv, "--out", str(out)]) == 0
    leakage = read_jsonl(out / LEAKAGE_FILE)
    assert leakage and all(r["status"] == "ok" and r["defense"] == SPEC for r in leakage)
    assert all(r["mechanism"]["name"] == "clipped-gaussian" for r in leakage)
    rounds = read_jsonl(out / ROUNDS_FILE)
    (claim,) = rounds[-1]["privacy"]
    assert claim["epsilon"] == dp_epsilon(0.25, 1.0, 1, 1e-5) and claim["caveat"] == SEEDED_NOISE
    assert claim["reconstruction_bound"]["kappa"] is not None
    # a setting that acts only where a defense states a DP claim (with a bound) acts here
    load_scenario(quickstart, [*settings, "audit.threat.kappa=0.02"])
    too_large = load_scenario(quickstart, [*settings, f"defenses=['{NAME}:delta=0.5']"])
    with pytest.raises(
        ConfigError, match=r"^defenses: accounting: parameter 'delta' must be below"
    ):
        build_federation(too_large)


def test_the_auditor_attacks_it_with_its_mechanism() -> None:
    from defenses.client import client_update
    from fedsim.auditor.attack_runner import AttackRunner, ClientCase, RoundJob
    from fedsim.auditor.setup import AuditSetup
    from fedsim.models.cnn import PaperCNN

    def model() -> torch.nn.Module:
        return PaperCNN((1, 8, 8), 4, [0.5], [0.25])

    setup = AuditSetup.for_model(
        model, input_shape=(1, 8, 8), num_classes=4, batch_size=1, domain="image",
        protocol="fedavg", lr=0.1, local_steps=1, attacks=("bayes",), defense=SPEC,
        audit={"worker": "inline", "grids": False, "budget": {"iterations": 2}},
    )  # fmt: skip
    assert setup.mechanism == ClippedGaussianMechanism(1.0, 0.5)
    start = model()
    x, y = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([2])
    made = client_update(
        setup.defense, start, x, y, torch.Generator().manual_seed(2), kind="fedavg", local_lr=0.1
    )
    job = RoundJob(1, start.state_dict(), cases=[ClientCase(0, made.update)])
    ((_, outcome),) = AttackRunner(setup, torch.device("cpu")).run(job)
    assert outcome.record["status"] == "ok" and outcome.record["defense"] == SPEC
    assert outcome.record["mechanism"]["name"] == "clipped-gaussian"


ATTACK = "test-cos-l2"
OBJECTIVE = "test-cos-plus-l2"


@register_objective
class CosinePlusL2(Objective):
    """(1 − cos(g, g_obs)) + λ ‖g − g_obs‖² over the parameters the data term keeps."""

    name = OBJECTIVE
    options = ("l2_weight",)
    l2_weight = 1e-3

    def __call__(self, candidate: CandidateUpdates, observed: Observed) -> torch.Tensor:
        cosine = CosineDistance()(candidate, observed)
        return cosine + self.l2_weight * L2Distance()(candidate, observed)


@register_attack
@dataclass(frozen=True)
class CosineL2Attack(CosineAttack):
    """Inverting Gradients with an L2 term added to its cosine distance."""

    name: ClassVar[str] = ATTACK
    reference: ClassVar[str] = "this test (after Inverting Gradients)"

    objective: str = OBJECTIVE
    objective_options: dict[str, object] = field(default_factory=lambda: {"l2_weight": 1e-2})


INHERITED = "; defaults of cos (inherited)"


def test_the_attack_is_listed_and_builds_its_objective_with_options(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from attacks import ATTACKS, OBJECTIVES, build_attack
    from fedsim.cli import main

    monkeypatch.setenv("COLUMNS", "250")
    assert ATTACKS[ATTACK] is CosineL2Attack and OBJECTIVES[OBJECTIVE] is CosinePlusL2
    assert main(["list", "attacks"]) == 0
    assert ATTACK in capsys.readouterr().out
    attack = build_attack(ATTACK, objective_options={"l2_weight": 0.5}, iterations=3)
    assert attack.data_term(None).l2_weight == 0.5 and attack.signed  # cos's optimiser
    assert main(["attack", "--attack", f"{ATTACK}:objective_options={{l2=1}}"]) == 2
    assert "unknown option l2; valid: l2_weight" in capsys.readouterr().err


def test_fedsim_attack_runs_the_attack_by_name(tmp_path: Path) -> None:
    from fedsim.cli import main

    out = tmp_path / "attack.json"
    spec = f"{ATTACK}:iterations=3,objective_options={{l2_weight=0.5}}"
    argv = ["attack", "--images", "1", "--attack", spec]
    assert main([*argv, "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["attack"] == spec and result["statuses"] == ["ok"]
    assert result["psnr_mean"] is not None and math.isfinite(result["psnr_mean"])
    assert result["priors"] == {"tv": 0.01} and result["priors_source"].endswith(INHERITED)


def test_a_scenario_runs_the_attack(tmp_path: Path) -> None:
    from fedsim.cli import main
    from fedsim.records import LEAKAGE_FILE, read_jsonl

    quickstart = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml"
    settings = [
        f"attacks=[{{name = '{ATTACK}'}}]", "federation.rounds=1", "federation.clients=2",
        "audit.clients={}", "audit.budget.iterations=2", "audit.worker='inline'",
        "data.eval_samples=20", "simulation.engine='inprocess'",
    ]  # fmt: skip
    out = tmp_path / "run"
    argv = ["run", str(quickstart), *[a for s in settings for a in ("--set", s)]]
    assert main([*argv, "--out", str(out)]) == 0
    leakage = read_jsonl(out / LEAKAGE_FILE)
    assert leakage and all(r["status"] == "ok" and r["attack"] == ATTACK for r in leakage)
    assert all(r["psnr"] is not None and r["priors_source"].endswith(INHERITED) for r in leakage)


def test_the_auditor_runs_the_attack() -> None:
    from fedsim.auditor.attack_runner import AttackRunner, ClientCase, RoundJob
    from fedsim.auditor.setup import AuditSetup
    from fedsim.models.cnn import PaperCNN

    def model() -> torch.nn.Module:
        return PaperCNN((1, 12, 12), 4, [0.5], [0.25])

    setup = AuditSetup.for_model(
        model, input_shape=(1, 12, 12), num_classes=4, batch_size=1, domain="image",
        protocol="fedsgd", lr=0.1, attacks=(ATTACK,),
        audit={"worker": "inline", "grids": False, "budget": {"iterations": 2}},
    )  # fmt: skip
    start = model()
    x, y = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(1)), torch.tensor([2])
    loss = torch.nn.functional.cross_entropy(start(x), y)
    update = [g.detach() for g in torch.autograd.grad(loss, list(start.parameters()))]
    case = ClientCase(0, update, originals=x, true_labels=y)
    ((_, outcome),) = AttackRunner(setup, torch.device("cpu")).run(
        RoundJob(1, start.state_dict(), cases=[case])
    )
    assert outcome.record["status"] == "ok" and outcome.record["attack"] == ATTACK
    assert outcome.record["psnr"] is not None and math.isfinite(outcome.record["psnr"])
    assert outcome.record["priors_source"].endswith(INHERITED)  # untuned for 12×12: said first
    assert outcome.record["priors_source"].startswith("untuned: cos's prior weights")


def test_the_contributing_guide_shows_lines_of_this_module() -> None:
    """CONTRIBUTING.md's fragments are this module's lines, so the guide shows what runs."""
    guide = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
    fragments = re.findall(r"```py\n(.*?)```", guide, flags=re.DOTALL)
    here = {line.strip() for line in Path(__file__).read_text().splitlines()}
    shown = [line.strip() for block in fragments for line in block.splitlines() if line.strip()]
    assert shown and [line for line in shown if line not in here] == []
