"""The report as a person sees it: `fedsim run` writes it, and a real headless browser
(Chromium) renders the page from the file system with its verdict and images visible.

Chromium comes from the system's packages (`apt-get install chromium`); CI installs it
(`.ci/run`), so there a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from fedsim.cli import main as cli_main

SCENARIO = {
    "name": "browser",
    "seed": 0,
    "device": "cpu",
    "defenses": ["gaussian:sigma=0.01"],
    "data": {"dataset": "mnist-sample", "eval_samples": 50},
    "federation": {"clients": 2, "rounds": 2},
    "protocol": {"kind": "fedsgd", "lr": 0.02, "batch_size": 2},
    "attacks": [{"name": "l2"}],
    "audit": {"worker": "inline", "budget": {"iterations": 5}},
    "simulation": {"engine": "inprocess"},
}

VERDICT_BACKGROUNDS = np.array([(251, 227, 225), (253, 243, 215), (236, 239, 241)]) / 255
"""The `.verdict` boxes' colours in `fedsim.report.page` (leaks, nothing, unscored)."""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (CI installs it in .ci/run)")
    pytest.skip("chromium not found; `apt-get install chromium` to render the report in a browser")


def _screenshot(page: Path, out: Path, profile: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1280,3200",
        f"--screenshot={out}",
        page.resolve().as_uri(),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return mpimg.imread(out)[:, :, :3]


def _near(pixels: np.ndarray, colour: np.ndarray, tolerance: float = 3 / 255) -> np.ndarray:
    return (np.abs(pixels - colour) <= tolerance).all(axis=-1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    scenario = folder / "browser.toml"
    scenario.write_text(tomli_w.dumps(SCENARIO))
    out = folder / "run"
    assert cli_main(["run", str(scenario), "--out", str(out)]) == 0
    return out


def test_run_ends_by_writing_the_report(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = run_dir / "report" / "index.html"
    html = page.read_text()
    assert html.index("Verdict") < html.index("Leakage per round") < html.index("round-0001")
    assert "l2 against gaussian:sigma=0.01" in html
    assert sorted(p.name for p in (run_dir / "reconstructions").glob("*.png")) == [
        "round-0001.png",
        "round-0002.png",
    ]


def test_the_page_renders_with_its_verdict_and_images(run_dir: Path, tmp_path: Path) -> None:
    pixels = _screenshot(run_dir / "report" / "index.html", tmp_path / "page.png", tmp_path / "p")
    top = pixels[:400]
    verdict = sum(int(_near(top, colour).sum()) for colour in VERDICT_BACKGROUNDS)
    assert verdict > 20_000, f"no verdict box in the first 400 rows ({verdict} pixels)"
    blue = _near(pixels, np.array([31, 119, 180]) / 255, tolerance=8 / 255).sum()
    assert blue > 300, f"the curves did not render ({blue} pixels of their line colour)"
    black = (pixels.max(axis=-1) < 0.05).sum()
    assert black > 5_000, f"the reconstruction strips did not render ({black} black pixels)"
