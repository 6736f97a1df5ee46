"""Runs record what they recorded before: the golden records of `scripts/golden_records.py`.

A change that is not meant to change what a run records (a refactor, a speed-up) must
leave these equal; one that is meant to rewrites them with the script and says so.
Floats are compared to 1e-6 relative (the same code on another core count may sum in
another order); everything else exactly.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("golden", REPO / "scripts" / "golden_records.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)


def _same(a: object, b: object, where: str) -> list[str]:
    """Where `a` and `b` differ (floats to 1e-6 relative)."""
    numbers = isinstance(a, int | float) and isinstance(b, int | float)
    if numbers and (isinstance(a, float) or isinstance(b, float)):
        close = math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        return [] if close else [f"{where}: {a} != {b}"]
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [
            d
            for k in keys
            for d in _same(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{where}.{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _same(x, y, f"{where}[{i}]")
        ]
    return [] if a == b else [f"{where}: {str(a)[:80]} != {str(b)[:80]}"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(golden.RUNS))
def test_a_run_records_what_its_golden_records_hold(name: str, tmp_path: Path) -> None:
    expected = [
        json.loads(line) for line in (golden.GOLDEN / f"{name}.jsonl").read_text().splitlines()
    ]
    found = json.loads(json.dumps(golden.record_run(name, tmp_path / name)))
    assert len(found) == len(expected), f"{len(found)} records, golden {len(expected)}"
    differences = [
        d
        for i, (f, e) in enumerate(zip(found, expected, strict=True))
        for d in _same(f, e, f"record {i}")
    ]
    assert not differences, "\n".join(differences[:10])
