"""Data root resolution, checksummed downloads (from local file:// URLs) and safe extraction."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from platformdirs import user_cache_dir

from fedsim.data import mnist, resolve_data_root
from fedsim.data.download import RemoteFile, download_file, extract_tar_safely
from fedsim.data.mnist import MNIST, load_mnist
from fedsim.errors import DataError


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_resolve_data_root_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDSIM_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("FEDSIM_DATA")
    assert resolve_data_root() == Path(user_cache_dir("fedsim")) / "data"


def test_download_verifies_md5(tmp_path: Path) -> None:
    source = tmp_path / "published.bin"
    source.write_bytes(b"official bytes")
    remote = RemoteFile("file.bin", _md5(b"official bytes"), (source.as_uri(),))
    target = download_file(remote, tmp_path / "data", "demo")
    assert target.read_bytes() == b"official bytes"
    assert not (tmp_path / "data" / "file.bin.part").exists()


def test_download_checksum_mismatch_deletes_file(tmp_path: Path) -> None:
    source = tmp_path / "published.bin"
    source.write_bytes(b"tampered bytes")
    remote = RemoteFile("file.bin", _md5(b"official bytes"), (source.as_uri(),))
    with pytest.raises(DataError, match="checksum mismatch for file.bin"):
        download_file(remote, tmp_path / "data", "demo")
    assert list((tmp_path / "data").iterdir()) == []


def test_download_tries_mirrors_then_names_folder(tmp_path: Path) -> None:
    good = tmp_path / "mirror2.bin"
    good.write_bytes(b"x")
    missing = (tmp_path / "gone.bin").as_uri()
    remote = RemoteFile("file.bin", _md5(b"x"), (missing, good.as_uri()))
    assert download_file(remote, tmp_path / "a", "demo").read_bytes() == b"x"
    offline = dataclasses.replace(remote, urls=(missing,))
    with pytest.raises(DataError) as err:
        download_file(offline, tmp_path / "b", "demo")
    assert "download failed" in str(err.value) and str(tmp_path / "b") in str(err.value)
    assert "file.bin" in str(err.value)


def test_offline_mnist_download_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DataError) as err:
        load_mnist("test", tmp_path, download=True)
    message = str(err.value)
    assert "no network" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "t10k-images-idx3-ubyte.gz" in message


def test_mnist_download_from_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    published = tmp_path / "published"
    published.mkdir()
    rng = np.random.default_rng(1)
    contents = {
        "t10k-images-idx3-ubyte.gz": b"\x00\x00\x08\x03"
        + b"".join(d.to_bytes(4, "big") for d in (3, 28, 28))
        + rng.integers(0, 256, 3 * 784, dtype=np.uint8).tobytes(),
        "t10k-labels-idx1-ubyte.gz": b"\x00\x00\x08\x01"
        + (3).to_bytes(4, "big")
        + bytes([7, 2, 1]),
    }
    files = {}
    for name, raw in contents.items():
        data = gzip.compress(raw)
        (published / name).write_bytes(data)
        files[name] = RemoteFile(name, _md5(data), ((published / name).as_uri(),))
    spec = dataclasses.replace(
        MNIST,
        files={
            **MNIST.files,
            "test": (files["t10k-images-idx3-ubyte.gz"], files["t10k-labels-idx1-ubyte.gz"]),
        },
    )
    monkeypatch.setattr(mnist, "MNIST", spec)
    root = tmp_path / "root"
    test = load_mnist("test", root, download=True)
    assert test.labels.tolist() == [7, 2, 1]
    assert (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    archive = tmp_path / "archive.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        safe = tarfile.TarInfo("folder/ok.txt")
        safe.size = 2
        tar.addfile(safe, io.BytesIO(b"ok"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return archive


def test_extract_refuses_path_escape(tmp_path: Path) -> None:
    archive = _tar_with(tmp_path, tarfile.TarInfo("folder/../../evil.txt"), b"evil")
    destination = tmp_path / "out"
    with pytest.raises(DataError, match=r"refusing to extract archive.tar.gz.*evil"):
        extract_tar_safely(archive, destination, "demo")
    assert not (tmp_path / "evil.txt").exists() and not destination.exists()


def test_extract_refuses_links_and_absolute_paths(tmp_path: Path) -> None:
    link = tarfile.TarInfo("folder/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(DataError, match="refusing"):
        extract_tar_safely(_tar_with(tmp_path, link), tmp_path / "out", "demo")
    with pytest.raises(DataError, match="refusing"):
        extract_tar_safely(
            _tar_with(tmp_path, tarfile.TarInfo("/abs.txt"), b"x"), tmp_path / "out", "demo"
        )


def test_extract_good_and_corrupted_archives(tmp_path: Path) -> None:
    archive = _tar_with(tmp_path, tarfile.TarInfo("folder/two.txt"), b"22")
    extract_tar_safely(archive, tmp_path / "out", "demo")
    assert (tmp_path / "out" / "folder" / "two.txt").read_bytes() == b"22"
    archive.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(DataError, match="cannot extract archive.tar.gz"):
        extract_tar_safely(archive, tmp_path / "out2", "demo")
