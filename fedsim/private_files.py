"""Files only their owner may read: run directories hold reconstructions of private data.

Directories fedsim creates are made 0o700 and files 0o600 whatever the umask, and writes
that must survive a crash are fsynced (`fsync_file`, `write_atomic`). A directory the
user names for output (`--out`) is never chmod-ed: a new one is created owner-only, an
existing empty one is used as it is (every file written into it is owner-only), and an
existing one that holds files is refused (`output_dir`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Collection
from pathlib import Path

from fedsim.errors import ConfigError

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | Path) -> Path:
    """Create `path` (and parents) if needed; the leaf directory is made owner-only."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(folder, DIR_MODE)
    return folder


def output_dir(path: str | Path, flag: str = "--out", rewritable: Collection[str] = ()) -> Path:
    """A directory to write a new run or report into, refused with one line where it
    holds anything but the names in `rewritable` (a report may replace its own files)."""
    folder = Path(path)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ConfigError(f"{flag}: {folder} exists and is not a directory")
    if folder.exists():
        others = sorted(entry.name for entry in folder.iterdir() if entry.name not in rewritable)
        if others:
            raise ConfigError(
                f"{flag}: {folder} already holds files ({', '.join(others[:3])}"
                f"{', …' if len(others) > 3 else ''}); choose a new or empty directory"
            )
        return folder
    try:
        return private_dir(folder)
    except OSError as error:
        raise ConfigError(f"{flag}: cannot create {folder} ({error.strerror})") from None


def write_private(path: str | Path, data: bytes) -> None:
    """Write a whole file owner-only (created 0o600, or made so if it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def make_private(path: str | Path) -> None:
    """Owner-only permissions on a file written by another library (matplotlib, torch)."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, FILE_MODE)


def append_line(path: str | Path, line: str) -> None:
    """Append one line in a single write (a reader sees it whole or not at all), owner-only."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    """Flush a file's data to disk (no-op when it does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make new names in a directory durable (where the platform allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data`: written to a temporary owner-only file, fsynced, renamed.

    The temporary file's name is unique, so two processes writing the same file (two runs
    training the same kept state) each rename a whole file of their own."""
    target = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temporary)
        raise
    os.close(fd)
    os.replace(temporary, target)
    fsync_dir(target.parent)
