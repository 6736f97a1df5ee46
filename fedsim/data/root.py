"""Where data sets live: an explicit folder, else $FEDSIM_DATA, else the user cache."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

#: Environment variable naming the data root.
DATA_ROOT_ENV = "FEDSIM_DATA"


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: `root` if given, else $FEDSIM_DATA, else `<user cache>/fedsim/data`.

    The folder need not exist yet; loaders say which files to put where.
    """
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(DATA_ROOT_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(user_cache_dir("fedsim")) / "data"
