"""Run a scenario: a Flower simulation with the leakage auditor, records written as it goes.

The run directory (default `<output>/<name>-<time>`, or exactly `--out`) receives the
resolved `scenario.toml`, `rounds.jsonl`, `leakage.jsonl`, `reconstructions/` and, once
the run is done, `report/` (what `fedsim report RUN` writes; the verdict is printed).
While it runs, one line per round shows the global accuracy and, per attack under the
scenario's defense, the best PSNR and how many images were recovered recognisably.

`fedsim run --resume RUN` continues an interrupted run from its last complete round
(trained, checkpointed and, where scheduled, audited) with the scenario stored in
RUN/scenario.toml; the rounds after it are redone and give the records an
uninterrupted run would have. Only settings that do not change results may be
overridden then (`simulation.*`, `data.root`, `data.download`).

When the run fails — the simulation runtime raises, a client's worker process dies,
Ctrl-C — it stops with one line naming the cause (status 1; 130 for Ctrl-C), keeps
every finished record and prints the `--resume` command; `--debug` shows the
traceback and Flower's and Ray's own logs. A Ray cluster address that does not answer
is refused before the run directory is made.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from fedsim.commands import add_scenario_options
from fedsim.errors import ConfigError, FedsimError
from fedsim.flower.bookkeeping.progress import RunProgress
from fedsim.flower.bookkeeping.what_runs import runs_line, what_runs
from fedsim.flower.runtimes.runtime_guard import RuntimeCrashed
from fedsim.records import SCENARIO_FILE, RunRecorder, run_header
from fedsim.scenario.config import Scenario
from fedsim.scenario.loading import (
    apply_override,
    apply_soft,
    load_scenario,
    parse_override,
    scenario_to_toml,
    settle_stored,
)

if TYPE_CHECKING:
    from fedsim.scenario.build import Federation

NAME = "run"
HELP = "run a scenario: simulated federation, auditor, records"
READS_DATA = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario", metavar="SCENARIO", nargs="?", help="scenario TOML file (see scenarios/)"
    )
    parser.add_argument(
        "--resume",
        metavar="RUN",
        default=None,
        help="continue the interrupted run in directory RUN from its last complete round",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on a failure show the traceback, and Flower's and Ray's logs as the run goes",
    )
    add_scenario_options(parser, "protocol.lr=0.05, attacks.0.name='l2'")


def run_directory(scenario: Scenario, out: str | None, started: dt.datetime) -> Path:
    if out is not None:
        return Path(out)
    return Path(scenario.output) / f"{scenario.name}-{started.strftime('%Y%m%d-%H%M%S')}"


RESUMABLE_SETTINGS = ("simulation.", "data.root", "data.download")
"""Overrides `--resume` accepts: they change where and how fast a run goes, not its numbers."""


def _resumed_scenario(
    run_dir: Path, overrides: list[str], soft: list[str] = ()
) -> tuple[Scenario, dict, list[str]]:
    """The scenario stored in a run directory, with result-neutral overrides; its [run];
    and why each stored setting the overrides leave without effect is dropped.

    An override that would do nothing is refused; a stored setting that does nothing
    after the overrides (`simulation.address` of a run resumed with `simulation.engine =
    "inprocess"`) is dropped, and said so."""
    import tomllib

    path = run_dir / SCENARIO_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--resume: {run_dir} holds no {SCENARIO_FILE}; is it a run?") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"--resume: cannot read {path} ({error})") from None
    header = raw.pop("run", {})
    changed = []
    for text in overrides:
        keys, value = parse_override(text)
        dotted = ".".join(keys)
        if not any(dotted == p or dotted.startswith(p) for p in RESUMABLE_SETTINGS):
            raise ConfigError(
                f"--set {dotted}: a resumed run keeps its scenario; only"
                f" {', '.join(p.rstrip('.') for p in RESUMABLE_SETTINGS)} may change"
            )
        apply_override(raw, keys, value)
        changed.append(dotted)
    scenario, dropped = settle_stored(raw, changed)
    scenario = apply_soft(raw, scenario, soft)
    return scenario, header if isinstance(header, dict) else {}, dropped


def data_options(args: argparse.Namespace) -> list[str]:
    """`--data-root` and `--download` as overrides, for data sets read from files only."""
    options = []
    if getattr(args, "data_root", None):
        options.append(f"data.root={json.dumps(str(Path(args.data_root).resolve()))}")
    if getattr(args, "download", False):
        options.append("data.download=true")
    return options


def main(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    resume = getattr(args, "resume", None)
    debug = bool(getattr(args, "debug", False))
    if (args.scenario is None) == (resume is None):
        raise ConfigError("give a SCENARIO file, or --resume RUN (not both)")
    if resume is not None:
        return _resume(Path(resume), overrides, debug, data_options(args))
    scenario = _absolute_checkpoint(load_scenario(args.scenario, overrides, data_options(args)))
    started = dt.datetime.now(dt.UTC)
    federation = _check_before_start(scenario)
    run_dir = run_directory(scenario, args.out, started.astimezone())
    recorder = RunRecorder(run_dir)
    header = run_header(scenario.seed, started)
    header["runs"] = what_runs(scenario)
    # A data set may be a subset (a partial download): say which sizes the run used.
    header["data"] = {"train_size": len(federation.train), "test_size": len(federation.test)}
    console = Console()
    console.print(
        f"fedsim run: {scenario.name} → {run_dir}; {runs_line(header['runs'])}",
        highlight=False,
        soft_wrap=True,
    )
    if scenario.model.checkpoint is not None:
        header["checkpoint_sha256"] = file_sha256(Path(scenario.model.checkpoint))
        if federation.privacy_spent(1) is not None:
            console.print(
                "fedsim run: no ε is recorded for a run started from a checkpoint; what the"
                " training before it spent is not known to this run",
                highlight=False,
            )
    recorder.write_scenario(scenario_to_toml(scenario, header, acting=True))

    return _simulate(scenario, recorder, run_dir, resume_after=-1, console=console, debug=debug)


def _absolute_checkpoint(scenario: Scenario) -> Scenario:
    """`model.checkpoint` as an absolute path, so the stored scenario names one file."""
    path = scenario.model.checkpoint
    if path is None:
        return scenario
    model = scenario.model.model_copy(update={"checkpoint": str(Path(path).resolve())})
    return scenario.model_copy(update={"model": model})


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file (the run header names the checkpoint it started from)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_before_start(scenario: Scenario) -> Federation:
    """Build data, partitions, defenses and attacks now, and knock at the Ray cluster, so a
    bad name or a dead address fails before Ray starts."""
    from fedsim.auditor.attack_runner import AttackRunner
    from fedsim.auditor.setup import AuditSetup
    from fedsim.device import resolve_device
    from fedsim.flower.runtimes.faults import active_faults
    from fedsim.flower.runtimes.ray_cluster import probe
    from fedsim.scenario.build import build_federation

    active_faults()
    simulation = scenario.simulation
    if simulation.address is not None and "ray" in (simulation.engine, scenario.audit.worker):
        probe(simulation.address, simulation.connect_timeout)
    federation = build_federation(scenario)
    federation.initial_state()  # a checkpoint that does not fit the model is refused now
    AttackRunner(AuditSetup.from_federation(federation), resolve_device(scenario.device))
    return federation


def _resume(run_dir: Path, overrides: list[str], debug: bool = False, soft: list[str] = ()) -> int:
    from fedsim.flower.apps.server_app import audited_round_of

    scenario, header, dropped = _resumed_scenario(run_dir, overrides, soft)
    _check_before_start(scenario)
    recorder = RunRecorder(run_dir, resume=True)
    done = recorder.checkpoints.complete_through(audited_round_of(scenario))
    console = Console()
    for reason in dropped:
        console.print(
            f"fedsim run: dropped from the stored scenario: {reason}",
            highlight=False,
            soft_wrap=True,
        )
    if done >= scenario.federation.rounds:
        console.print(f"fedsim run: {run_dir} is complete; nothing to resume", highlight=False)
        return 0
    recorder.keep_through(done)
    recorder.checkpoints.keep_through(done)
    resumed = [*header.get("resumed", []), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")]
    runs = what_runs(scenario)
    recorder.write_scenario(
        scenario_to_toml(scenario, {**header, "resumed": resumed, "runs": runs}, acting=True)
    )
    console.print(
        f"fedsim run: resuming {scenario.name} in {run_dir} after round {max(done, 0)};"
        f" {runs_line(runs)}",
        highlight=False,
        soft_wrap=True,
    )
    return _simulate(scenario, recorder, run_dir, resume_after=done, console=console, debug=debug)


def _simulate(
    scenario: Scenario,
    recorder: RunRecorder,
    run_dir: Path,
    resume_after: int,
    console: Console | None = None,
    debug: bool = False,
) -> int:
    from fedsim.flower.runtimes.runtime_guard import one_line
    from fedsim.flower.simulation import simulate

    console = console or Console()
    resume = f"continue with `fedsim run --resume {run_dir}`"
    try:
        with RunProgress(scenario, console, resume_after) as progress:
            timing = simulate(scenario, recorder, progress, resume_after=resume_after, debug=debug)
    except KeyboardInterrupt:
        console.print(
            f"interrupted; finished rounds are in {run_dir}; {resume},"
            f" or report them with `fedsim report {run_dir}`",
            highlight=False,
        )
        raise
    except FedsimError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of the run: one line, records kept
        if debug:
            console.print_exception()
        cause = str(error) if isinstance(error, RuntimeCrashed) else one_line(error)
        print(
            f"fedsim run: {cause}; finished rounds are in {run_dir}; {resume}",
            file=sys.stderr,
        )
        return 1
    startup = "" if timing.startup is None else f", first round after {timing.startup:.1f} s"
    console.print(f"done in {timing.total:.1f} s{startup}; records in {run_dir}", highlight=False)
    _report(run_dir, console)
    return 0


def _report(run_dir: Path, console: Console) -> None:
    """Write RUN/report/ (verdict, curves, page); if that fails, say which command does."""
    from fedsim.report import load_run, verdict_line, write_report

    try:
        run = load_run(run_dir)
        written = write_report([run], run_dir / "report")
    except Exception as error:  # noqa: BLE001 - the records are safe; only the report is missing
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        console.print(
            f"the report was not written ({reason}); write it with `fedsim report {run_dir}`",
            highlight=False,
        )
        return
    for verdict in run.verdicts():
        console.print(verdict_line(verdict), highlight=False, markup=False)
    console.print(f"report: {written[-1]}", highlight=False)
