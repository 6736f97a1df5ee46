"""Proxy audits: clients the server simulates, with the declared protocol, on data it holds.

In a Flower app the server has no ground truth for the replies it attacks, so nothing
says whether their reconstructions show the clients' data. It usually holds data of the
same kind (the test set it evaluates on). Each audited round, `ProxyAudit` simulates
clients like the declared ones on that data: from the round's start parameters, for
each batch size of the cost plan (`fedsim.auditor.cost_plan`; the declared one where the
declared update fits the budget, else 1, 4, 16, … up to what fits), ⌈4 / size⌉ clients,
each on its own batch drawn from the proxy data, trained as declared
(`defenses.client.client_update`: the optimiser and its schedule, the mini-batches —
in a fresh random order each pass where the clients shuffle — and the declared defense).
Batches and the defense's noise come from generators seeded from the audit seed, the
round, the batch size and the client: this is the server's own simulation of its own
clients, so repeating it is no leak, and no real client's randomness is involved. A
smaller client trains as `fedsim.auditor.client_sizes` says.

The attacks then run on those updates with the truth known, and each record is scored
as a simulated run's is — PSNR, SSIM, recovered or not against the guess, label
counts against the true ones — and marked `"proxy": true` with its `batch_size` and
`local_steps`: leakage for a client like yours on proxy data, not a measurement on
your clients' own data. The guess a reconstruction must beat is made from proxy
examples kept out of every batch (`GUESS_EXAMPLES`). A strip of at most `GRID_IMAGES`
images per proxy client is drawn per round.

Proxy clients at the declared batch size (`REFERENCE_CLIENTS` of them) are also the
reference of the protocol check: the real replies' updates, whole and per layer, are
compared with their median (`fedsim.auditor.protocol_check.ProtocolCheck.against_proxy`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from attacks.domain import ImageDomain
from attacks.local_training import client_options
from defenses.client import client_update
from fedsim.auditor.attack_runner import AttackRunner
from fedsim.auditor.client_sizes import smaller_client
from fedsim.auditor.cost_plan import (
    PROXY_IMAGES,
    CostPlan,
    make_plan,
    proxy_budget,
    proxy_clients,
)
from fedsim.auditor.jobs import AttackResult, ClientCase, RoundJob
from fedsim.auditor.protocol_check import ProtocolCheck
from fedsim.auditor.proxy_data import ProxyData
from fedsim.auditor.setup import AuditSetup
from fedsim.image_grid import GRID_IMAGES, ClientImages, save_round_strip
from fedsim.judgement import read_record
from fedsim.metrics.guesses import Guess, image_guess, row_guess
from fedsim.scenario.build import derived_seed

logger = logging.getLogger(__name__)

GUESS_EXAMPLES = 256
"""Proxy examples kept out of every batch, to make the guess from (at most a quarter)."""
REFERENCE_CLIENTS = 3
"""Proxy clients at the declared batch size whose median the real replies are checked
against (those the plan attacks there, and more simulated for the check alone)."""
_PROXY_TAG = 0x9807


def guess_for(setup: AuditSetup, data: ProxyData) -> tuple[Guess, int]:
    """The guess from the held-back proxy examples, and how many were held back."""
    held = min(GUESS_EXAMPLES, len(data) // 4) or 1
    if isinstance(setup.domain, ImageDomain):
        labels = data.labels[:held] if setup.audit.threat.labels == "given" else None
        return image_guess(data.pixels[:held], labels), held
    return row_guess(data.pixels[:held], getattr(setup.domain, "categorical", ())), held


class ProxyAudit:
    """Simulates and attacks the proxy clients of each audited round (module note)."""

    def __init__(
        self, setup: AuditSetup, data: ProxyData, plan: CostPlan, runner: AttackRunner
    ) -> None:
        guess, held = guess_for(setup, data)
        self.setup = setup
        self.data = data
        self.pool = torch.arange(held, len(data))
        self.plan = plan
        self.runners: dict[int, AttackRunner] = {}
        for size in plan.proxy_sizes():
            calls = plan.proxy_calls(size)
            small = smaller_client(setup, size)
            attacks = [(c, a) for c, a in runner.attacks if c.display_name in calls]
            self.runners[size] = AttackRunner(_with_guess(small, guess), runner.device, attacks)
        self.checks_protocol = len(self.pool) >= setup.batch_size

    def audit(
        self,
        job: RoundJob,
        check: ProtocolCheck | None = None,
        folder: Path | None = None,
    ) -> list[tuple[ClientCase, AttackResult]]:
        """Every proxy client of `job`'s round, attacked: its (case, result) pairs. The
        real replies of `job` are checked against the declared batch size's proxy
        clients, and a strip is drawn into `folder`. Never raises."""
        outcomes: list[tuple[ClientCase, AttackResult]] = []
        try:
            reference = None
            for size, runner in self.runners.items():
                cases = self._clients(job, size)
                if size == self.setup.batch_size:
                    reference = [c.update for c in cases]
                calls = self.plan.proxy_calls(size)
                proxy_job = RoundJob(
                    job.server_round,
                    job.start_state,
                    cases=cases,
                    budgets={a: proxy_budget(self.setup, a, c) for a, c in calls.items()},
                )
                outcomes += runner.run(proxy_job)
            if check is not None and self.checks_protocol and job.cases:
                reference = reference or []
                size = self.setup.batch_size
                for client in range(len(reference), REFERENCE_CLIENTS):
                    reference.append(self._update(job, size, client)[0])
                names = [n for n, _ in self.setup.build_model().named_parameters()]
                for case in job.cases:
                    check.against_proxy(
                        job.server_round, case.client, case.update, reference, names
                    )
        except Exception:  # noqa: BLE001 - the audit never fails the round
            logger.exception("round %d: the proxy audit failed", job.server_round)
        if folder is not None and outcomes:
            self._draw(job.server_round, outcomes, folder)
        return outcomes

    def _batch(self, server_round: int, size: int, client: int) -> torch.Tensor:
        """Indices of a proxy client's batch: disjoint from its round's other clients'."""
        generator = torch.Generator().manual_seed(
            derived_seed(self.setup.seed, _PROXY_TAG, server_round, size)
        )
        order = self.pool[torch.randperm(len(self.pool), generator=generator)]
        start = (client * size) % max(1, len(order) - size + 1)
        return order[start : start + size]

    def _update(self, job: RoundJob, size: int, client: int) -> tuple[list[torch.Tensor], Any]:
        """A proxy client's update (as the declared clients make it) and its batch."""
        setup = smaller_client(self.setup, size)
        chosen = self._batch(job.server_round, size, client)
        x, y = self.data.inputs[chosen], self.data.labels[chosen]
        model = setup.build_model()
        model.load_state_dict(job.start_state)
        seed = derived_seed(self.setup.seed, _PROXY_TAG, job.server_round, size, client)
        shuffle = torch.Generator().manual_seed(seed + 1) if setup.protocol.shuffled else None
        result = client_update(
            self.setup.defense,
            model,
            x.to(next(model.parameters()).dtype),
            y,
            torch.Generator().manual_seed(seed),
            **client_options(setup.protocol),
            shuffle=shuffle,
        )
        return [u.detach() for u in result.update], chosen

    def _clients(self, job: RoundJob, size: int) -> list[ClientCase]:
        cases = []
        steps = self.runners[size].setup.protocol.local_steps
        for client in range(proxy_clients(size)):
            update, chosen = self._update(job, size, client)
            case = ClientCase(client, update)
            case.originals = self.data.pixels[chosen]
            case.true_labels = self.data.labels[chosen]
            case.fields = {"proxy": True, "local_steps": steps}
            cases.append(case)
        return cases

    def _draw(
        self, server_round: int, outcomes: Sequence[tuple[ClientCase, AttackResult]], folder: Path
    ) -> None:
        """One strip of the round's proxy clients, `GRID_IMAGES` images each at most."""
        domain = self.setup.domain
        if not (self.setup.audit.grids and isinstance(domain, ImageDomain)):
            return
        clients = []
        seen: dict[int, ClientCase] = {}
        for case, _ in outcomes:
            seen.setdefault(id(case), case)
        for case in seen.values():
            rows = []
            for c, outcome in outcomes:
                if c is case and outcome.inputs is not None and case.originals is not None:
                    images = domain.to_unit(outcome.inputs).clamp(0, 1)[:GRID_IMAGES]
                    rows.append((outcome.record["attack"], images, _flags(outcome.record)))
            if rows and case.originals is not None:
                name = f"B{int(case.originals.shape[0])}#{case.client}"
                clients.append(ClientImages(name, case.originals[:GRID_IMAGES], rows))
        if not clients:
            return
        try:
            path = folder / f"round-{server_round:04d}-proxy.png"
            save_round_strip(path, clients, f"round {server_round}, proxy clients")
        except Exception:  # noqa: BLE001
            logger.exception("round %d: drawing the proxy clients failed", server_round)


def _with_guess(setup: AuditSetup, guess: Guess) -> AuditSetup:
    import dataclasses

    return dataclasses.replace(setup, guess=guess)


def _flags(record: dict[str, Any]) -> list[bool] | None:
    reading = next((r for r in read_record(record) if r.domain == "images"), None)
    return None if reading is None else list(reading.recovered)[:GRID_IMAGES]


def plan_audit(
    setup: AuditSetup, runner: AttackRunner, proxy_data: Any, refusal: str | None = None
) -> tuple[CostPlan, ProxyAudit | None]:
    """The cost plan of `setup`'s attacks and, given `proxy_data`, the proxy audit it
    plans for; `refusal`: why proxy clients cannot be simulated here (ConfigError)."""
    from fedsim.auditor.proxy_data import read_proxy_data
    from fedsim.errors import ConfigError

    model = setup.build_model()
    if proxy_data is None:
        return make_plan(setup, runner, model), None
    if refusal is not None:
        raise ConfigError(f"proxy_data: {refusal}")
    data = read_proxy_data(
        proxy_data,
        input_shape=setup.input_shape,
        num_classes=setup.num_classes,
        domain=setup.domain,
        limit=max(setup.batch_size, PROXY_IMAGES) + GUESS_EXAMPLES,
    )
    _, held = guess_for(setup, data)
    plan = make_plan(
        setup, runner, model, proxy_examples=len(data) - held, proxy_source=data.source
    )
    return plan, ProxyAudit(setup, data, plan, runner)


def proxy_refusal(privacy: Any, mechanism: object | None) -> str | None:
    """Why proxy clients cannot train as the real ones do (`privacy`: Flower's DP tool
    `for_model` recognised; `mechanism`: a likelihood given without its defense), or None."""
    if privacy is not None:
        return (
            f"proxy clients cannot apply Flower's {privacy.label} yet; give the clients' defense"
            " as a fedsim spec (defenses.flower.mod) to audit on proxy data"
        )
    if mechanism is not None:
        return (
            "the clients' defense is given as a mechanism only; proxy clients need the defense"
            " itself (defense=...)"
        )
    return None
