"""Untrusted input and private output: no unpickling of untrusted files, owner-only run
directories, escaped HTML, run directories that stay under the output root."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import torch

from fedsim.checkpoints import Checkpoints
from fedsim.image_grid import ClientImages
from fedsim.records import RunRecorder
from fedsim.report import load_run, write_page

REPO = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("fedsim", "attacks", "defenses") for p in (REPO / d).rglob("*.py")]


def test_no_unsafe_deserialisation_in_the_sources() -> None:
    for path in SOURCES:
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert not re.search(r"pickle\.loads?\(", text), path
        assert "allow_pickle=True" not in text, path
        if "pickle.Unpickler" in text:
            assert path.name == "safe_pickle.py", path


def test_checkpoints_refuse_anything_but_tensors(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(1, {"w": torch.ones(2)})
    assert torch.equal(checkpoints.load(1)["w"], torch.ones(2))

    class Payload:
        def __reduce__(self) -> tuple:
            return (print, ("code ran",))

    torch.save({"w": Payload()}, checkpoints.path(2))
    try:
        checkpoints.load(2)
    except Exception as error:  # noqa: BLE001
        assert "unreadable" in str(error)
    else:
        raise AssertionError("a pickled object was loaded")


def test_run_directory_is_owner_only(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path / "run")
    recorder.write_scenario("name = 'x'\n")
    recorder.append_round({"round": 0})
    recorder.append_leakage({"round": 1, "attack": "l2", "status": "ok"})
    images = torch.rand(1, 1, 4, 4)
    recorder.save_strip(1, [ClientImages(0, images, [("l2", images, [True])])])
    recorder.checkpoints.save(1, {"w": torch.zeros(1)})
    recorder.checkpoints.mark("trained", 1)
    for path in [recorder.run_dir, *recorder.run_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_html_page_escapes_every_recorded_string(tmp_path: Path) -> None:
    evil = '<script>alert("x")</script>'
    run_dir = tmp_path / "run"
    recorder = RunRecorder(run_dir)
    recorder.write_scenario(f"name = '{evil}'\n[federation]\nrounds = 2\n")
    recorder.append_round({"round": 1, "accuracy": 0.5, "loss": 1.0})
    recorder.append_leakage(
        {"round": 1, "attack": evil, "defense": evil, "status": evil, "psnr": None}
    )
    curves = tmp_path / "curves.png"
    curves.write_bytes(b"\x89PNG\r\n")
    page = write_page(
        [load_run(run_dir)], [("curves", curves)], tmp_path / "index.html"
    ).read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "Partial run" in page


def test_two_writers_of_one_file_each_replace_it_whole(tmp_path: Path) -> None:
    """Two runs that train the same kept state write the same files at once: neither may
    find its temporary file taken by the other, and the file ends whole and owner-only."""
    from concurrent.futures import ThreadPoolExecutor

    from fedsim.private_files import write_atomic

    target = tmp_path / "recipe.json"
    payloads = [bytes([65 + i]) * 100_000 for i in range(2)]

    def write(payload: bytes) -> None:
        for _ in range(50):
            write_atomic(target, payload)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(write, payloads))  # re-raises what either writer raised
    assert target.read_bytes() in payloads
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["recipe.json"]
