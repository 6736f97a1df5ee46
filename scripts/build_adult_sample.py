"""Build fedsim/data/sample/adult_sample.npz from the UCI Adult files, byte for byte reproducibly.

Usage: python scripts/build_adult_sample.py --source DIR [--train 2000] [--test 500]

DIR holds UCI's `adult.data` and `adult.test` (the "Adult" census income data set of
Becker and Kohavi, https://archive.ics.uci.edu/dataset/2/adult). The sample is the
first N training and first M test rows that have no missing value ('?'), in file
order: six continuous columns as float32, eight categorical columns as uint8 codes
into the category lists of `adult.names` (kept in the file), the label 1 for '>50K'.
The script prints the sha256 of the result for the README.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from build_mnist_sample import write_npz_reproducibly  # the script beside this one

OUT = Path(__file__).resolve().parents[1] / "fedsim" / "data" / "sample" / "adult_sample.npz"

COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country",
)  # fmt: skip


def read_categories(names_file: Path) -> dict[str, list[str]]:
    """Column → its category list, from the attribute lines of `adult.names`."""
    categories: dict[str, list[str]] = {}
    for line in names_file.read_text(encoding="utf-8").splitlines():
        name, _, rest = line.partition(":")
        if name in COLUMNS and not rest.strip().startswith("continuous"):
            categories[name] = [c.strip() for c in rest.strip().rstrip(".").split(",")]
    return categories


def read_rows(path: Path, count: int) -> list[list[str]]:
    """The first `count` complete rows of a UCI Adult file."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(COLUMNS) + 1 or "?" in fields:
            continue  # blank lines, the test file's header, rows with a missing value
        rows.append(fields)
        if len(rows) == count:
            return rows
    raise SystemExit(f"{path.name} has only {len(rows)} complete rows, asked for {count}")


def build(source: Path, train: int, test: int, out: Path) -> str:
    """Write the sample and return its sha256."""
    categories = read_categories(source / "adult.names")
    continuous = [c for c in COLUMNS if c not in categories]
    categorical = [c for c in COLUMNS if c in categories]
    arrays: dict[str, np.ndarray] = {
        "continuous_columns": np.array(continuous),
        "categorical_columns": np.array(categorical),
    }
    for column in categorical:
        arrays[f"categories_{column}"] = np.array(categories[column])
    for split, file, count in (("train", "adult.data", train), ("test", "adult.test", test)):
        rows = read_rows(source / file, count)
        index = {c: COLUMNS.index(c) for c in COLUMNS}
        arrays[f"{split}_continuous"] = np.array(
            [[float(r[index[c]]) for c in continuous] for r in rows], dtype=np.float32
        )
        arrays[f"{split}_categorical"] = np.array(
            [[categories[c].index(r[index[c]]) for c in categorical] for r in rows], dtype=np.uint8
        )
        arrays[f"{split}_labels"] = np.array(
            [r[-1].rstrip(".") == ">50K" for r in rows], dtype=np.uint8
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_npz_reproducibly(out, arrays)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, required=True, help="folder of adult.data, .test, .names"
    )
    parser.add_argument("--train", type=int, default=2000, help="first N complete training rows")
    parser.add_argument("--test", type=int, default=500, help="first M complete test rows")
    parser.add_argument("--out", type=Path, default=OUT, help="output .npz")
    args = parser.parse_args()
    digest = build(args.source, args.train, args.test, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes), sha256 {digest}")


if __name__ == "__main__":
    main()
