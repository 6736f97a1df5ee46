"""Checksummed downloads and safe archive extraction for online users.

Every file fetched is verified against the md5 its publisher gives before it is
kept; a partial or corrupted download is deleted. Failures (offline, bad
checksum, hostile archive) end in one `DataError` that names the folder to fill
and the files it needs, so an offline user knows what to copy where.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fedsim.errors import DataError

_CHUNK = 1 << 20
_TIMEOUT_S = 60


@dataclass(frozen=True)
class RemoteFile:
    """A published file: its name on disk, its official md5 and mirrors to fetch it from."""

    filename: str
    md5: str
    urls: tuple[str, ...]


def file_md5(path: Path) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def missing_files_error(dataset: str, folder: Path, files: Iterable[str], reason: str) -> DataError:
    """The one error a user sees when a data set cannot be found or fetched."""
    listed = ", ".join(files)
    return DataError(
        f"{dataset}: {reason}. Put these files into {folder}: {listed} "
        f"(or, when online, let fedsim download them: --download on the command line, download=True in Python)"
    )


def download_file(remote: RemoteFile, folder: Path, dataset: str) -> Path:
    """Fetch `remote` into `folder`, trying each mirror, and keep it only if its md5 matches."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.filename
    partial = folder / (remote.filename + ".part")
    failures: list[str] = []
    for url in remote.urls:
        try:
            with (
                urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response,
                open(partial, "wb") as out,
            ):
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            partial.unlink(missing_ok=True)
            failures.append(f"{url}: {exc}")
            continue
        actual = file_md5(partial)
        if actual != remote.md5:
            partial.unlink(missing_ok=True)
            raise DataError(
                f"{dataset}: checksum mismatch for {remote.filename} downloaded from {url}: "
                f"md5 {actual}, expected {remote.md5}; the file was deleted. Retry, or put the "
                f"official {remote.filename} into {folder}"
            )
        os.replace(partial, target)
        return target
    raise missing_files_error(
        dataset, folder, [remote.filename], "download failed (" + "; ".join(failures) + ")"
    )


def verify_md5(path: Path, expected: str, dataset: str) -> None:
    """Raise a `DataError` naming `path` unless its md5 is `expected`."""
    actual = file_md5(path)
    if actual != expected:
        raise DataError(
            f"{dataset}: checksum mismatch for {path.name} in {path.parent}: md5 {actual}, "
            f"expected {expected}; delete it and download again"
        )


def extract_tar_safely(archive: Path, destination: Path, dataset: str) -> None:
    """Extract a .tar.gz into `destination`, refusing any member that could escape it.

    Only regular files and folders with relative paths and no `..` are allowed;
    links, devices and absolute paths make the whole archive be refused.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                parts = PurePosixPath(member.name).parts
                unsafe = (
                    member.name.startswith(("/", "\\"))
                    or ".." in parts
                    or not (member.isfile() or member.isdir())
                )
                if unsafe:
                    raise DataError(
                        f"{dataset}: refusing to extract {archive.name}: member {member.name!r} "
                        "is a link, device or path outside the target folder"
                    )
            tar.extractall(destination, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{dataset}: cannot extract {archive.name}: {exc}") from exc
