"""Tests for hwssl.data on the real offline data sets (no mocks)."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hwssl import data as D

REAL = ["fashion-mnist", "mnist5k", "digits"]
SHAPES = {"fashion-mnist": (1, 28, 28), "mnist5k": (1, 28, 28), "digits": (1, 8, 8)}
# Default sizes: (train, val, test).
SIZES = {"fashion-mnist": (54000, 6000, 10000), "mnist5k": (3600, 400, 1000), "digits": (1294, 144, 359)}


def _hashes(ds: torch.utils.data.TensorDataset) -> set[str]:
    x = ds.tensors[0].numpy()
    return {hashlib.sha1(row.tobytes()).hexdigest() for row in x.reshape(len(x), -1)}


def _labels(ds: torch.utils.data.TensorDataset) -> np.ndarray:
    return ds.tensors[1].numpy()


# --------------------------------------------------------------------------- registry
def test_registry_and_info() -> None:
    assert D.available_datasets() == ["fashion-mnist", "mnist5k", "digits", "cifar10", "folder", "npz"]
    info = D.dataset_info("cifar10")
    assert (info.in_channels, info.image_size, info.num_classes) == (3, (32, 32), 10)
    assert D.dataset_info("fashion_mnist").name == "fashion-mnist"
    with pytest.raises(ValueError, match="known: fashion-mnist, mnist5k, digits, cifar10"):
        D.dataset_info("imagenet")


# --------------------------------------------------------------------------- real data sets
@pytest.mark.parametrize("name", REAL)
def test_real_dataset_loads(name: str) -> None:
    s = D.load_dataset(name)
    info = D.dataset_info(name)
    assert s.info == info
    assert (len(s.train), len(s.val), len(s.test)) == SIZES[name]
    for ds in (s.train, s.val, s.test):
        x, y = ds.tensors
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape[1:]) == SHAPES[name] == (info.in_channels, *info.image_size)
        assert set(np.unique(y.numpy())) == set(range(info.num_classes))
    x = s.train.tensors[0]
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1.0) < 1e-3
    # val/test are normalised with train statistics: close to, not exactly, 0/1.
    assert abs(s.test.tensors[0].mean().item()) < 0.1
    assert "val" in s.split_note and "test" in s.split_note and "seed=0" in s.split_note

    # Disjoint: by source indices and by content hash.
    tr, va, te = (set(s.indices[k].tolist()) for k in ("train", "val", "test"))
    assert not tr & va
    if s.sources["test"] == s.sources["train"]:  # hold-out from one pool
        assert not te & tr and not te & va
    h_tr, h_va, h_te = _hashes(s.train), _hashes(s.val), _hashes(s.test)
    assert len(h_tr) == len(s.train)  # no duplicate images in these files
    assert not h_tr & h_va and not h_tr & h_te and not h_va & h_te


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_holdout_is_stratified_and_fixed(name: str) -> None:
    a = D.load_dataset(name, seed=0)
    b = D.load_dataset(name, seed=1)
    counts = np.bincount(_labels(a.test))
    assert counts.min() >= counts.max() - 2  # per-class proportional (classes are near balanced)
    # Test hold-out does not depend on the search seed; train/val do.
    assert np.array_equal(a.indices["test"], b.indices["test"])
    assert not np.array_equal(np.sort(a.indices["val"]), np.sort(b.indices["val"]))


def test_mnist5k_label_is_last_column() -> None:
    # The CSV stores 784 pixels then the label; rows are sorted by class.  If the
    # label column were mis-read, class 0 would not look like a round "0".
    s = D.load_dataset("mnist5k")
    x = s.train.tensors[0][:, 0]
    y = _labels(s.train)
    mean0 = x[torch.from_numpy(y == 0)].mean(0)
    mean1 = x[torch.from_numpy(y == 1)].mean(0)
    # A "0" has ink on the ring and a hole in the centre; a "1" has ink in the centre.
    assert mean0[14, 14] < mean1[14, 14]
    assert mean0[14, 7] > mean1[14, 7]
    # Returned order is shuffled, not sorted by class.
    assert len(set(y[:20].tolist())) > 3


@pytest.mark.parametrize("name", REAL)
def test_deterministic_and_seed_dependent(name: str) -> None:
    kw = dict(train_subset=300, val_subset=100, test_subset=100)
    a = D.load_dataset(name, seed=3, **kw)
    b = D.load_dataset(name, seed=3, **kw)
    c = D.load_dataset(name, seed=4, **kw)
    for k in ("train", "val", "test"):
        for ta, tb in zip(getattr(a, k).tensors, getattr(b, k).tensors):
            assert torch.equal(ta, tb)
    assert a.split_note == b.split_note
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])
    assert not np.array_equal(np.sort(a.indices["val"]), np.sort(c.indices["val"]))


@pytest.mark.parametrize("name", REAL)
def test_stratified_subsets_keep_all_classes(name: str) -> None:
    s = D.load_dataset(name, train_subset=20, val_subset=10, test_subset=10, seed=7)
    assert (len(s.train), len(s.val), len(s.test)) == (20, 10, 10)
    for ds in (s.train, s.val, s.test):
        assert np.bincount(_labels(ds), minlength=10).tolist() == [len(ds) // 10] * 10
    assert abs(s.train.tensors[0].mean().item()) < 1e-4  # stats from the subset itself
    # A subset of the train split is drawn from that split only.
    full = D.load_dataset(name, seed=7)
    assert set(s.indices["train"].tolist()) <= set(full.indices["train"].tolist())
    assert set(s.indices["val"].tolist()) <= set(full.indices["val"].tolist())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="train_subset"):
        D.load_dataset("digits", train_subset=10_000)
    with pytest.raises(ValueError, match="val_fraction"):
        D.load_dataset("digits", val_fraction=0.0)
    with pytest.raises(ValueError, match="path"):
        D.load_dataset("digits", path="/tmp")


# --------------------------------------------------------------------------- fashion-mnist errors
def test_fashion_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(D.FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(D.DatasetUnavailable) as err:
        D.load_dataset("fashion-mnist")
    msg = str(err.value)
    assert str(tmp_path) in msg and "apt-get install dataset-fashion-mnist" in msg
    with pytest.raises(D.DatasetUnavailable):
        D.check_available("fashion-mnist")


def _write_idx(path: Path, arr: np.ndarray, magic: int | None = None) -> None:
    magic = (0x0800 | arr.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_env_override_and_corrupt_magic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    monkeypatch.setenv(D.FASHION_MNIST_ENV, str(tmp_path))
    s = D.load_dataset("fashion-mnist")
    assert (len(s.train), len(s.val), len(s.test)) == (54, 6, 20)
    assert str(tmp_path.resolve()) in s.split_note

    bad = tmp_path / "bad"
    bad.mkdir()
    for f in tmp_path.glob("*.gz"):
        (bad / f.name).write_bytes(f.read_bytes())
    _write_idx(bad / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (60, 28, 28)), magic=0x00000903)
    with pytest.raises(D.DatasetCorrupt, match="bad IDX magic 0x00000903") as err:
        D.load_dataset("fashion-mnist", path=str(bad))
    assert "train-images-idx3-ubyte.gz" in str(err.value)


# --------------------------------------------------------------------------- cifar10
def _write_cifar(folder: Path, per_class: int, test_per_class: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n_per_class: int, fname: str) -> None:
        labels = [c for c in range(10) for _ in range(n_per_class)]
        rng.shuffle(labels)
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        # Real format: dict with bytes keys, uint8 (N, 3072) R|G|B planes, list of ints.
        obj = {b"batch_label": fname.encode(), b"labels": labels, b"data": data,
               b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
        with (folder / fname).open("wb") as fh:
            pickle.dump(obj, fh, protocol=2)

    for i in range(1, 6):
        batch(per_class, f"data_batch_{i}")
    batch(test_per_class, "test_batch")


def test_cifar10_tiny_folder(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder, per_class=2, test_per_class=3)
    s = D.load_dataset("cifar10", path=str(folder))
    assert (len(s.train), len(s.val), len(s.test)) == (90, 10, 30)
    for ds in (s.train, s.val, s.test):
        x, y = ds.tensors
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == (3, 32, 32)
        assert set(y.tolist()) == set(range(10))
    x = s.train.tensors[0]
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)
    assert len(s.mean) == len(s.std) == 3

    # Channel layout: row = 1024 R, 1024 G, 1024 B; check one pixel round-trips.
    with (folder / "test_batch").open("rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    i = int(s.indices["test"][0])
    row = raw[b"data"][i]
    got = s.test.tensors[0][0].numpy() * np.array(s.std)[:, None, None] + np.array(s.mean)[:, None, None]
    assert np.allclose(got[:, 5, 7] * 255, [row[5 * 32 + 7], row[1024 + 5 * 32 + 7], row[2048 + 5 * 32 + 7]],
                       atol=1e-3)
    assert s.test.tensors[1][0].item() == raw[b"labels"][i]

    # Parent folder (as extracted from the tarball) is accepted too.
    assert len(D.load_dataset("cifar10", path=str(tmp_path)).test) == 30


def test_cifar10_env_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(D.CIFAR10_ENV, raising=False)
    with pytest.raises(D.DatasetUnavailable, match="HWSSL_CIFAR10_DIR"):
        D.load_dataset("cifar10")
    missing = tmp_path / "nowhere"
    with pytest.raises(D.DatasetUnavailable) as err:
        D.load_dataset("cifar10", path=str(missing))
    msg = str(err.value)
    assert str(missing) in msg and "download CIFAR-10 python version" in msg and "HWSSL_CIFAR10_DIR" in msg

    good = tmp_path / "good"
    _write_cifar(good, per_class=1, test_per_class=1)
    monkeypatch.setenv(D.CIFAR10_ENV, str(good))
    assert len(D.load_dataset("cifar10", val_fraction=0.2).val) == 10

    (good / "data_batch_3").unlink()
    with pytest.raises(D.DatasetUnavailable, match="data_batch_3"):
        D.load_dataset("cifar10", path=str(good))

    bad = tmp_path / "bad"
    _write_cifar(bad, per_class=1, test_per_class=1)
    with (bad / "data_batch_2").open("wb") as fh:
        pickle.dump({b"images": np.zeros((10, 3072), np.uint8), b"labels": [0] * 10}, fh, protocol=2)
    with pytest.raises(D.DatasetCorrupt, match="b'data'") as err:
        D.load_dataset("cifar10", path=str(bad))
    assert "data_batch_2" in str(err.value)


class _Evil:
    def __reduce__(self):  # would run a command if unpickled with plain pickle.load
        return (print, ("unpickled arbitrary global",))


def test_cifar10_unpickler_is_restricted(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    _write_cifar(folder, per_class=1, test_per_class=1)
    # Python-2 era pickles (the real download) reference numpy.core.multiarray.
    blob = (folder / "data_batch_1").read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (folder / "data_batch_1").write_bytes(blob)
    assert len(D.load_dataset("cifar10", path=str(folder), val_fraction=0.2).train) == 40

    with (folder / "test_batch").open("wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": []}, fh, protocol=2)
    with pytest.raises(D.DatasetCorrupt, match="not allowed"):
        D.load_dataset("cifar10", path=str(folder))
