"""The project as a Flower app: what `flwr run .` bundles and how its ServerApp reads its config."""

from __future__ import annotations

import io
import tomllib
import zipfile
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from fedsim.flower.apps.server_app import resolve_scenario_path, split_overrides

REPO = Path(__file__).resolve().parents[1]


def test_fab_carries_the_app_config_and_scenarios_only() -> None:
    """Code comes from the installed fedsim (with its data files), not from a FAB copy."""
    fab = zipfile.ZipFile(io.BytesIO(build_fab_from_disk(REPO)))
    names = set(fab.namelist()) - {".info/CONTENT"}
    assert "pyproject.toml" in names and "scenarios/quickstart.toml" in names
    assert all(n == "pyproject.toml" or n.startswith("scenarios/") for n in names), names
    config = tomllib.loads(fab.read("pyproject.toml").decode())
    app = config["tool"]["flwr"]["app"]
    assert app["components"] == {
        "serverapp": "fedsim.flower.apps.server_app:app",
        "clientapp": "fedsim.flower.apps.client_app:app",
    }
    assert (REPO / app["config"]["scenario"]).is_file()


def test_scenario_path_prefers_the_app_directory(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    (app_dir / "scenarios").mkdir(parents=True)
    (app_dir / "scenarios" / "q.toml").write_text("")
    assert resolve_scenario_path("scenarios/q.toml", app_dir) == app_dir / "scenarios" / "q.toml"
    assert resolve_scenario_path("other.toml", app_dir) == Path("other.toml")
    assert resolve_scenario_path("scenarios/q.toml", None) == Path("scenarios/q.toml")


def test_run_config_overrides_split_on_semicolons() -> None:
    assert split_overrides("") == []
    assert split_overrides("federation.rounds=1; defenses=['prune+gaussian:p=0.5,sigma=0.1']") == [
        "federation.rounds=1",
        "defenses=['prune+gaussian:p=0.5,sigma=0.1']",
    ]


def test_flwr_runs_record_that_the_clients_noise_is_their_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`flwr run` loads `client_app:app`, whose noise comes from OS entropy: its ServerApp
    tells the records so (the informed and user claims then hold)."""
    from flwr.app import Context, RecordDict

    from fedsim.flower.apps import server_app
    from fedsim.flower.runtimes.local_grid import LocalGrid

    seen: dict = {}
    monkeypatch.setattr(server_app, "run_federation", lambda *args, **kwargs: seen.update(kwargs))
    config = {"scenario": str(REPO / "scenarios" / "quickstart.toml"), "out": str(tmp_path / "r")}
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config)
    server_app.main(LocalGrid(lambda m, c: m, num_nodes=1), context)
    assert seen == {"noise_from_seed": False}
