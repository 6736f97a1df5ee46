"""Where an audited round's records go: the console, the run's files, the observer.

Each audited round is logged in one line, a round where nothing could be attacked as a
warning (`fedsim.auditor.console`). With a run recorder, its leakage lines are appended
and synced and the round is journalled for `fedsim run --resume`; with ground truth the
round is drawn as one strip of PNG images (originals over each attack's matched
reconstructions), in deployment mode every reconstruction is kept (tensors, and PNGs for
images). Then the observer is told.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from attacks.domain import ImageDomain
from fedsim.auditor.console import AuditLog
from fedsim.auditor.jobs import AttackResult, ClientCase, RoundJob
from fedsim.auditor.setup import AuditSetup
from fedsim.image_grid import GRID_IMAGES, ClientImages, load_figures, save_image_grid
from fedsim.judgement import read_record
from fedsim.private_files import make_private
from fedsim.records import RECONSTRUCTIONS_DIR, RunRecorder

logger = logging.getLogger(__name__)

RoundCallback = Callable[[int, list[dict[str, Any]]], None]


def _recovered_flags(record: dict[str, Any]) -> list[bool] | None:
    """Per image of a scored record: recovered or not (`fedsim.judgement`; None unscored)."""
    if record.get("ssim_images") is None:
        return None
    reading = next((r for r in read_record(record) if r.domain == "images"), None)
    return None if reading is None else list(reading.recovered)


class AuditOutput:
    """Publishes each audited round: log line, leakage lines, images, journal, observer."""

    def __init__(
        self,
        setup: AuditSetup,
        recorder: RunRecorder | None,
        on_round_audited: RoundCallback | None,
        *,
        ground_truth: bool,
    ) -> None:
        self.setup = setup
        self.recorder = recorder
        self.on_round_audited = on_round_audited
        self.ground_truth = ground_truth
        if recorder is not None and self.draws_images:
            load_figures()
        where = None if recorder is None else str(recorder.run_dir / RECONSTRUCTIONS_DIR)
        self.log = AuditLog(reconstructions=where)

    @property
    def draws_images(self) -> bool:
        """Whether audited rounds are drawn as PNG grids (asked for, and the data are images)."""
        return self.setup.audit.grids and isinstance(self.setup.domain, ImageDomain)

    def publish(
        self,
        server_round: int,
        records: list[dict[str, Any]],
        seconds: float | None = None,
        job: RoundJob | None = None,
        outcomes: Sequence[tuple[ClientCase, AttackResult]] = (),
    ) -> None:
        """The round's records (and, given its `job`, the reconstructions in `outcomes`);
        `seconds`: how long the round's audit took, for the log line."""
        self.log.round(server_round, records, seconds)
        if self.recorder is not None:
            for record in records:
                self.recorder.append_leakage(record)
            if job is not None and not self.ground_truth:
                self.save_reconstructions(job, outcomes)
            elif job is not None and self.draws_images:
                self.save_grids(job, outcomes)
            self.mark_audited(server_round)
        if self.on_round_audited is not None:
            self.on_round_audited(server_round, records)

    def mark_audited(self, server_round: int) -> None:
        """Every leakage line of the round is written: fsync, and journal it for --resume."""
        assert self.recorder is not None
        self.recorder.sync()
        self.recorder.checkpoints.mark("audited", server_round)

    def save_reconstructions(
        self, job: RoundJob, outcomes: Sequence[tuple[ClientCase, AttackResult]]
    ) -> None:
        """Deployment mode: per case, a tensor file of every attack's reconstruction and,
        for images, a PNG grid of its first `GRID_IMAGES` (a few kB, whatever the batch)."""
        assert self.recorder is not None
        folder = self.recorder.run_dir / RECONSTRUCTIONS_DIR
        for case in job.cases:
            rows = [
                (o.record["attack"], o.inputs)
                for c, o in outcomes
                if c is case and o.inputs is not None
            ]
            if not rows:
                continue
            stem = f"round-{job.server_round:04d}-client-{case.client}"
            domain = self.setup.domain
            try:
                torch.save(dict(rows), folder / f"{stem}.pt")
                make_private(folder / f"{stem}.pt")
                if self.setup.audit.grids and isinstance(domain, ImageDomain):
                    pictures = [
                        (name, domain.to_unit(x[:GRID_IMAGES]).clamp(0, 1)) for name, x in rows
                    ]
                    title = f"round {job.server_round}, {case.client}"
                    save_image_grid(folder / f"{stem}.png", pictures, title, GRID_IMAGES)
                    make_private(folder / f"{stem}.png")
            except Exception:  # noqa: BLE001
                logger.exception("round %d: saving reconstructions failed", job.server_round)

    def save_grids(
        self, job: RoundJob, outcomes: Sequence[tuple[ClientCase, AttackResult]]
    ) -> None:
        """One strip per round: each client's originals over every attack's matched images."""
        assert self.recorder is not None
        cases = []
        for case in job.cases:
            rows = [
                (o.record["attack"], o.inputs, _recovered_flags(o.record))
                for c, o in outcomes
                if c is case and o.inputs is not None
            ]
            if case.originals is not None and rows:
                cases.append(ClientImages(case.client, case.originals, rows))
        if not cases:
            return
        try:
            self.recorder.save_strip(job.server_round, cases)
        except Exception:  # noqa: BLE001
            logger.exception("round %d: saving the reconstructions' strip failed", job.server_round)
