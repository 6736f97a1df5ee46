"""MNIST-style loaders: real MNIST, the packaged sample, synthetic Fashion-MNIST and damaged files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from fedsim.data import load_dataset
from fedsim.data.idx import parse_idx
from fedsim.data.mnist import load_fashion_mnist, load_mnist
from fedsim.data.sample import read_sample_split
from fedsim.errors import DataError

FIRST_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
FIRST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file holding `array` (uint8 unless `type_code` says otherwise)."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(">u1" if type_code == 0x08 else ">i4").tobytes()


def write_idx_set(folder: Path, n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict:
    """Four small MNIST-style .gz files in `folder`; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
        arrays[prefix] = (images, labels)
    return arrays


def test_mnist_train_real(data_root: Path) -> None:
    train = load_mnist("train", data_root)
    assert train.images.shape == (60_000, 1, 28, 28)
    assert train.images.dtype == torch.float32
    assert train.labels.dtype == torch.int64
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0
    assert train.labels[:10].tolist() == FIRST_TRAIN_LABELS
    assert torch.bincount(train.labels).tolist()[:2] == [5923, 6742]
    assert train.info.name == "mnist" and train.split == "train"


def test_mnist_test_real_uint8(data_root: Path) -> None:
    test = load_dataset("mnist", "test", data_root, dtype=torch.uint8)
    assert test.images.shape == (10_000, 1, 28, 28)
    assert test.images.dtype == torch.uint8
    assert test.labels[:10].tolist() == FIRST_TEST_LABELS
    as_float = test.as_float()
    assert torch.equal(as_float.images[:50], test.images[:50].float() / 255)


def test_sample_matches_real_files(data_root: Path) -> None:
    real_train = load_mnist("train", data_root, dtype=torch.uint8)
    real_test = load_mnist("test", data_root, dtype=torch.uint8)
    sample_train = load_dataset("mnist-sample", "train", dtype=torch.uint8)
    sample_test = load_dataset("mnist-sample", "test", dtype=torch.uint8)
    assert len(sample_train) == 2000 and len(sample_test) == 500
    assert torch.equal(sample_train.images, real_train.images[:2000])
    assert torch.equal(sample_train.labels, real_train.labels[:2000])
    assert torch.equal(sample_test.images, real_test.images[:500])
    assert torch.equal(sample_test.labels, real_test.labels[:500])


def test_sample_needs_no_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDSIM_DATA", str(tmp_path / "nowhere"))
    sample = load_dataset("mnist-sample", "test")
    assert sample.labels[:10].tolist() == FIRST_TEST_LABELS
    assert sample.info.name == "mnist-sample" and sample.info.mean == (0.1307,)
    images, labels = read_sample_split("train")
    assert images.shape == (2000, 1, 28, 28) and labels[:10].tolist() == FIRST_TRAIN_LABELS


def test_fashion_mnist_synthetic(tmp_path: Path) -> None:
    arrays = write_idx_set(tmp_path / "FashionMNIST" / "raw")
    train = load_fashion_mnist("train", tmp_path, dtype=torch.uint8)
    test = load_dataset("fashion-mnist", "test", tmp_path)
    assert torch.equal(train.images[:, 0], torch.from_numpy(arrays["train"][0]))
    assert train.labels.tolist() == arrays["train"][1].tolist()
    assert test.images.shape == (5, 1, 28, 28) and test.info.class_names[9] == "Ankle boot"


def test_uncompressed_idx_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "MNIST" / "raw"
    arrays = write_idx_set(folder)
    for gz in folder.glob("t10k-*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    test = load_mnist("test", tmp_path)
    assert test.labels.tolist() == arrays["t10k"][1].tolist()


def test_missing_folder_names_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_mnist("train", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message


def test_missing_one_file(tmp_path: Path) -> None:
    folder = tmp_path / "MNIST" / "raw"
    write_idx_set(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz not found"):
        load_mnist("test", tmp_path)


def _damage(folder: Path, name: str, change) -> None:
    path = folder / name
    path.write_bytes(change(path.read_bytes()))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda b: b[: len(b) // 2], "truncated or corrupted"),
        (lambda b: b[:30] + bytes(x ^ 0xFF for x in b[30:60]) + b[60:], "truncated or corrupted"),
        (lambda b: b"not a gzip file at all", "truncated or corrupted"),
        (
            lambda b: gzip.compress(b"\x00\x00\x08\x04" + gzip.decompress(b)[4:]),
            "does not match its header",
        ),
        (lambda b: gzip.compress(b"\x12\x34\x08\x03" + gzip.decompress(b)[4:]), "wrong magic"),
        (lambda b: gzip.compress(gzip.decompress(b)[:-7]), "truncated or corrupted"),
    ],
    ids=["truncated-gz", "corrupted-bytes", "not-gzip", "wrong-ndim", "wrong-magic", "short-data"],
)
def test_damaged_images_file(tmp_path: Path, change, match: str) -> None:
    folder = tmp_path / "MNIST" / "raw"
    write_idx_set(folder)
    _damage(folder, "t10k-images-idx3-ubyte.gz", change)
    with pytest.raises(DataError, match=match) as err:
        load_mnist("test", tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in str(err.value)


def test_label_file_as_images_is_wrong_magic(tmp_path: Path) -> None:
    folder = tmp_path / "MNIST" / "raw"
    write_idx_set(folder)
    labels = (folder / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(labels)
    with pytest.raises(DataError, match="wrong magic.*expected 3"):
        load_mnist("test", tmp_path)


def test_count_mismatch_and_bad_labels(tmp_path: Path) -> None:
    folder = tmp_path / "MNIST" / "raw"
    write_idx_set(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(4, np.uint8)))
    )
    with pytest.raises(DataError, match="5 images but t10k-labels-idx1-ubyte.gz holds 4"):
        load_mnist("test", tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.full(5, 10, np.uint8)))
    )
    with pytest.raises(DataError, match="labels outside 0..9"):
        load_mnist("test", tmp_path)


def test_parse_idx_big_endian_ints() -> None:
    values = np.array([[1, -2], [70000, 3]], dtype=np.int64)
    parsed = parse_idx(idx_bytes(values, type_code=0x0C), "ints")
    assert parsed.tolist() == values.tolist()
    with pytest.raises(DataError, match="too short"):
        parse_idx(b"\x00\x00", "tiny")
