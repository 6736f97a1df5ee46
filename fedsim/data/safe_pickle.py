"""A restricted unpickler for the CIFAR "python version" files.

`pickle` runs whatever callable a file names, so an untrusted pickle can run
code. CIFAR pickles only need four globals to rebuild a uint8 numpy array:
`numpy.core.multiarray._reconstruct` (or its numpy 2 home `numpy._core...`),
`numpy.ndarray`, `numpy.dtype` and, for files written by Python 3,
`_codecs.encode` to turn latin-1 text back into bytes. Each is replaced by a
narrowed stand-in: arrays must be plain ndarrays, dtypes must not be object,
and the codec must be latin-1. Any other global is refused with a `DataError`,
so a malicious file cannot reach `os.system` or anything else.
"""

from __future__ import annotations

import codecs
import io
import pickle
from typing import Any

import numpy as np

from fedsim.errors import DataError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


class _PlainArrayType:
    """Stands in for `numpy.ndarray` in a pickle: usable only as `_reconstruct`'s subtype."""


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _PlainArrayType:
        raise pickle.UnpicklingError("only plain numpy arrays may be rebuilt")
    return _np_reconstruct(np.ndarray, shape, _dtype(dtype))


def _dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    if isinstance(spec, np.dtype):
        result = spec
    elif isinstance(spec, str | bytes):
        result = np.dtype(spec.decode("latin-1") if isinstance(spec, bytes) else spec, align, copy)
    else:
        raise pickle.UnpicklingError("dtype must be given by name")
    if result.hasobject:
        raise pickle.UnpicklingError("object arrays are not allowed")
    return result


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"codec {encoding!r} is not allowed")
    return text.encode("latin-1", errors)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _PlainArrayType,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the few numpy globals a CIFAR file needs."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def restricted_loads(data: bytes, name: str) -> Any:
    """Unpickle `data` (Python 2 strings read as latin-1); `name` is used in error messages."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:  # any failure of an untrusted file is a data error
        raise DataError(f"{name}: not a valid CIFAR pickle, refused ({exc})") from exc
