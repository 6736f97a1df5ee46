"""Build fedsim/data/sample/mnist_sample.npz from the MNIST IDX files, byte for byte reproducibly.

Usage: python scripts/build_mnist_sample.py --data-root DIR [--train 2000] [--test 500]

DIR must hold MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz. The sample
is the first N training and first M test images with their labels, in file
order. Zip entries get a fixed timestamp so the same input gives the same bytes;
the script prints the sha256 of the result for the README.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from fedsim.data.mnist import MNIST, read_idx_split

OUT = Path(__file__).resolve().parents[1] / "fedsim" / "data" / "sample" / "mnist_sample.npz"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def write_npz_reproducibly(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like `np.savez_compressed`, but with fixed zip metadata so the bytes depend only on the data."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue(), compresslevel=9)


def build(data_root: Path, train: int, test: int, out: Path) -> str:
    """Write the sample and return its sha256."""
    arrays: dict[str, np.ndarray] = {}
    for split, count in (("train", train), ("test", test)):
        images, labels = read_idx_split(MNIST, split, data_root)
        if count > len(labels):
            raise SystemExit(f"{split} has only {len(labels)} images, asked for {count}")
        arrays[f"{split}_images"] = np.asarray(images[:count, 0], dtype=np.uint8)
        arrays[f"{split}_labels"] = np.asarray(labels[:count], dtype=np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_npz_reproducibly(out, arrays)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding MNIST/raw")
    parser.add_argument("--train", type=int, default=2000, help="first N training images")
    parser.add_argument("--test", type=int, default=500, help="first M test images")
    parser.add_argument("--out", type=Path, default=OUT, help="output .npz")
    args = parser.parse_args()
    digest = build(args.data_root, args.train, args.test, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes), sha256 {digest}")


if __name__ == "__main__":
    main()
