"""The README's Python example runs as written, its Flower app fragments are those of the
app the tests run, and its test command is what CI runs.

`python` blocks are run; `py` blocks are fragments of a Flower app (they need a grid and a
context), so every line of them must appear in `tests/quickstart_app.py`, which runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_python_example_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = _python_blocks((REPO / "README.md").read_text())
    assert blocks, "README has no python example"
    import attacks.registry

    real_build = attacks.registry.build_attack
    # A short budget keeps the test fast; everything else runs as a user would run it.
    monkeypatch.setattr(
        attacks.registry,
        "build_attack",
        lambda name, **kw: real_build(name, **{"iterations": 20, **kw}),
    )
    monkeypatch.setattr("attacks.build_attack", attacks.registry.build_attack)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip()
    assert float(printed.replace("tensor(", "").rstrip(")").split(",")[0]) > 5.0


def test_readme_flower_app_fragments_are_the_tested_apps_lines() -> None:
    fragments = re.findall(r"```py\n(.*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)
    assert len(fragments) >= 2, "README has no Flower app fragments"
    app_lines = {
        line.strip() for line in (REPO / "tests" / "quickstart_app.py").read_text().splitlines()
    }
    for fragment in fragments:
        for line in fragment.splitlines():
            code = line.strip()
            if code and not code.startswith("#"):
                assert code in app_lines, f"README line not in tests/quickstart_app.py: {code}"


def test_ci_runs_the_readme_test_commands() -> None:
    """Every command of `.ci/run` after its `cd` is a line of one README code block, in order."""
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    commands = ci[ci.index('cd "$(dirname "$0")/.."') + 1 :]
    commands = [line for line in commands if line.strip() and not line.startswith("#")]
    assert any(line.startswith("python3 -m venv") for line in commands)
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL)
    assert any(block.splitlines() == commands for block in blocks), commands
    assert Path(REPO / ".ci" / "run").stat().st_mode & 0o111
