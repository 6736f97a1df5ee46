"""CIFAR loaders: the real CIFAR-10 subset, synthetic CIFAR-100, and hostile or damaged pickles."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fedsim.data import cifar, load_dataset
from fedsim.data.cifar import CIFAR100, BatchFile, load_cifar10, load_cifar100, read_cifar_split
from fedsim.data.download import RemoteFile
from fedsim.data.safe_pickle import restricted_loads
from fedsim.errors import DataError

# Official first labels (from the CIFAR-10 files), checked against the shared subset.
FIRST_TEST_LABELS = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
FIRST_BATCH1_LABELS = [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]


@pytest.fixture(scope="module")
def cifar_root(data_root: Path) -> Path:
    if not (data_root / "cifar-10-batches-py").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real test data missing: cifar-10-batches-py under {data_root}")
        pytest.skip("CIFAR-10 test data not found")
    return data_root


def cifar_pickle(n: int, label_key: str, num_classes: int, seed: int = 0) -> tuple[bytes, dict]:
    rng = np.random.default_rng(seed)
    content = {
        "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        label_key: rng.integers(0, num_classes, size=n).tolist(),
    }
    return pickle.dumps(content, protocol=2), content


def write_cifar100(root: Path, n_train: int = 7, n_test: int = 3) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data, content = cifar_pickle(n, "fine_labels", 100, seed=n)
        (folder / name).write_bytes(data)
        written[name] = content
    meta = {"fine_label_names": list(CIFAR100.info.class_names), "coarse_label_names": []}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def test_cifar10_real_subset(cifar_root: Path) -> None:
    train = load_cifar10("train", cifar_root)
    test = load_dataset("cifar10", "test", cifar_root, dtype=torch.uint8)
    assert train.images.shape == (4660, 3, 32, 32) and train.images.dtype == torch.float32
    assert test.images.shape == (846, 3, 32, 32) and test.images.dtype == torch.uint8
    assert float(train.images.min()) >= 0.0 and float(train.images.max()) <= 1.0
    assert train.labels.dtype == torch.int64 and int(train.labels.max()) == 9
    assert train.labels[:10].tolist() == FIRST_BATCH1_LABELS
    assert train.labels[932:942].tolist() != FIRST_BATCH1_LABELS  # batches follow in order
    assert test.labels[:10].tolist() == FIRST_TEST_LABELS
    assert train.info.class_names[3] == "cat" and train.info.input_shape == (3, 32, 32)


def test_cifar10_pixels_are_chw(cifar_root: Path) -> None:
    content = restricted_loads(
        (cifar_root / "cifar-10-batches-py" / "test_batch").read_bytes(), "t"
    )
    first = content["data"][0]
    test = load_cifar10("test", cifar_root, dtype=torch.uint8)
    assert test.images[0, 0].flatten().tolist() == first[:1024].tolist()  # red plane
    assert test.images[0, 2, 31, 31] == first[3071]


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path)
    train = load_cifar100("train", tmp_path, dtype=torch.uint8)
    assert train.images.shape == (7, 3, 32, 32) and train.info.num_classes == 100
    assert train.labels.tolist() == written["train"]["fine_labels"]
    assert train.images.reshape(7, -1).numpy().tolist() == written["train"]["data"].tolist()


def test_official_numpy1_pickle_format_loads() -> None:
    data, content = cifar_pickle(2, "labels", 10)
    legacy = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert legacy != data
    assert np.array_equal(restricted_loads(legacy, "legacy")["data"], content["data"])


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    write_cifar100(tmp_path)
    payload = {"data": _RunsShell(marker), "fine_labels": [0]}
    (tmp_path / "cifar-100-python" / "test").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match=r"test: not a valid CIFAR pickle.*system.* not allowed"):
        load_cifar100("test", tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(np.zeros(3, dtype=object), protocol=2),  # object arrays
        pickle.dumps(dataclasses.replace, protocol=2),  # any other global
        pickle.dumps(np.float64(1.0), protocol=2),  # numpy scalars are not needed
    ],
    ids=["object-array", "other-global", "numpy-scalar"],
)
def test_restricted_unpickler_refuses(payload: bytes) -> None:
    with pytest.raises(DataError, match="refused"):
        restricted_loads(payload, "hostile")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ([1, 2, 3], "expected a dict"),
        ({"data": np.zeros((2, 100), np.uint8), "fine_labels": [0, 1]}, "N x 3072"),
        ({"data": np.zeros((2, 3072), np.float32), "fine_labels": [0, 1]}, "N x 3072"),
        ({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [0]}, "2 images but"),
        ({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [0, 100]}, "labels outside"),
        ({"data": np.zeros((2, 3072), np.uint8)}, "no 'fine_labels' entry"),
    ],
    ids=["not-dict", "wrong-width", "wrong-dtype", "label-count", "label-range", "no-labels"],
)
def test_pickle_of_wrong_shape(tmp_path: Path, content: object, match: str) -> None:
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "test").write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(DataError, match=match) as err:
        load_cifar100("test", tmp_path)
    assert "test" in str(err.value)


def test_garbage_and_truncated_pickles(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    test_file = tmp_path / "cifar-100-python" / "test"
    test_file.write_bytes(test_file.read_bytes()[:-100])
    with pytest.raises(DataError, match="test: not a valid CIFAR pickle"):
        load_cifar100("test", tmp_path)
    test_file.write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="test: not a valid CIFAR pickle"):
        load_cifar100("test", tmp_path)


def test_full_size_batch_must_match_official_md5(tmp_path: Path) -> None:
    write_cifar100(tmp_path, n_test=4)
    test_file = tmp_path / "cifar-100-python" / "test"
    official = hashlib.md5(test_file.read_bytes()).hexdigest()
    full = BatchFile("test", "0" * 32, full_size=4)  # pretend 4 images is a full batch
    spec = dataclasses.replace(CIFAR100, splits={**CIFAR100.splits, "test": (full,)})
    with pytest.raises(DataError, match="test in .*checksum mismatch for a full official batch"):
        read_cifar_split(spec, "test", tmp_path)
    verified = dataclasses.replace(full, md5=official)
    spec = dataclasses.replace(CIFAR100, splits={**CIFAR100.splits, "test": (verified,)})
    images, _ = read_cifar_split(spec, "test", tmp_path)
    assert images.shape == (4, 3, 32, 32)


def test_missing_folder_and_wrong_meta(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_cifar10("train", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data_batch_1" in message and "batches.meta" in message
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "meta").write_bytes(pickle.dumps({"fine_label_names": ["a"]}))
    with pytest.raises(DataError, match="meta in .*right folder"):
        load_cifar100("train", tmp_path)


def test_download_extracts_verified_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    written = write_cifar100(source)
    archive = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-100-python", arcname="cifar-100-python")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    remote = RemoteFile("cifar-100-python.tar.gz", md5, (archive.as_uri(),))
    monkeypatch.setattr(cifar, "CIFAR100", dataclasses.replace(CIFAR100, archive=remote))
    root = tmp_path / "root"
    test = load_cifar100("test", root, download=True)
    assert test.labels.tolist() == written["test"]["fine_labels"]
    assert (root / "cifar-100-python" / "meta").is_file()

    bad = dataclasses.replace(remote, md5="f" * 32)
    monkeypatch.setattr(cifar, "CIFAR100", dataclasses.replace(CIFAR100, archive=bad))
    with pytest.raises(DataError, match="checksum mismatch for cifar-100-python.tar.gz"):
        load_cifar100("test", tmp_path / "other", download=True)


def test_restricted_loads_reads_bytes_io_roundtrip() -> None:
    data, content = cifar_pickle(3, "labels", 10)
    loaded = restricted_loads(io.BytesIO(data).getvalue(), "roundtrip")
    assert loaded["labels"] == content["labels"]
