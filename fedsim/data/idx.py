"""Parser for the IDX format of MNIST-style files (optionally gzip-compressed).

An IDX file starts with a magic number: two zero bytes, a type code and the
number of dimensions, followed by one big-endian uint32 per dimension and the
data. Everything a damaged file can do wrong is reported as a `DataError`
naming the file. Parsed arrays are cached per process, keyed by path, size and
modification time, so repeated loads do not decompress again.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np

from fedsim.errors import DataError

_TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path, expected_ndim: int | None = None) -> np.ndarray:
    """The array stored in IDX file `path` (read-only; copy before changing it)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise DataError(f"cannot read {path.name} in {path.parent}: {exc.strerror or exc}") from exc
    array = _read_idx_cached(str(path), stat.st_size, stat.st_mtime_ns)
    if expected_ndim is not None and array.ndim != expected_ndim:
        raise DataError(
            f"{path.name}: wrong magic number, holds a {array.ndim}-dimensional array, "
            f"expected {expected_ndim} dimensions"
        )
    return array


@functools.lru_cache(maxsize=16)
def _read_idx_cached(path: str, size: int, mtime_ns: int) -> np.ndarray:
    del size, mtime_ns  # part of the cache key only
    array = parse_idx(_read_bytes(Path(path)), Path(path).name)
    array.flags.writeable = False
    return array


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path.name} in {path.parent} is truncated or corrupted ({exc}); delete it and fetch it again"
        ) from exc
    except OSError as exc:
        raise DataError(f"cannot read {path.name} in {path.parent}: {exc}") from exc


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Decode the bytes of an IDX file; `name` is used in error messages."""
    if len(data) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    zero_a, zero_b, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero_a != 0 or zero_b != 0 or type_code not in _TYPE_CODES or ndim == 0:
        magic = int.from_bytes(data[:4], "big")
        raise DataError(f"{name}: wrong magic number 0x{magic:08x}, not an IDX file")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _TYPE_CODES[type_code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(
            f"{name}: size {len(data)} bytes does not match its header "
            f"(dimensions {dims} need {expected} bytes); the file is truncated or corrupted"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)
