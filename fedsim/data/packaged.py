"""Arrays of a data file shipped inside fedsim, read once and kept read-only."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fedsim.errors import DataError


def read_packaged(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of the `.npz` at `path`, not writeable (callers share them); a file that
    cannot be read is a `DataError` naming `what` ('MNIST sample') and asking to reinstall."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"the packaged {what} {path.name} cannot be read ({exc}); reinstall fedsim"
        ) from exc
    for array in arrays.values():
        array.flags.writeable = False
    return arrays
