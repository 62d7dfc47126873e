"""The user's own data: an image folder (streamed) and an .npz file, written by the tests with PIL
and NumPy; resizing, train-split statistics, splits, augmentation, and one clear error per bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from hwssl.config import ConfigError, load_search_space
from hwssl.data import (DatasetCorrupt, DatasetUnavailable, batches, dataset_info, first_images, images,
                        load_dataset, plain)
from hwssl.data.sets import ImageSet

CLASSES = ("cat", "dog", "owl")


def _pattern(label: int, i: int, size: int, mode: str) -> Image.Image:
    """A class-dependent image (a bright band at a class-specific row) with per-image noise."""
    rng = np.random.default_rng(1000 * label + i)
    a = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    a[label * size // 3:(label + 1) * size // 3, :, label] = 250
    img = Image.fromarray(a, "RGB")
    return img.convert(mode)


def write_folder(root: Path, splits: dict[str, int], size: int = 12, mode: str = "RGB") -> Path:
    for split, per_class in splits.items():
        for label, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                _pattern(label, i + 100 * len(split), size, mode).save(d / f"{i}.png")
    return root


# --------------------------------------------------------------------------- folder
def test_folder_with_train_val_test_uses_them_and_streams_from_disk(tmp_path):
    root = write_folder(tmp_path / "imgs", {"train": 10, "val": 4, "test": 5})
    s = load_dataset("folder", path=str(root), image_size=8)
    assert s.info.in_channels == 3 and s.info.image_size == (8, 8) and s.info.num_classes == 3
    assert s.info.class_names == CLASSES
    assert (len(s.train), len(s.val), len(s.test)) == (30, 12, 15)
    assert s.sources == {"train": "train/", "val": "val/", "test": "test/"}
    for split in (s.train, s.val, s.test):
        assert isinstance(split, ImageSet) and not isinstance(split, TensorDataset)   # nothing materialised
    x = images(s.train)
    assert x.shape == (30, 3, 8, 8) and x.dtype == torch.float32
    # normalised with the training split's own statistics
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (x.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-3
    labels = torch.cat([y for _, y in batches(s.test, 4)])
    assert labels.tolist() == sorted(labels.tolist()) and set(labels.tolist()) == {0, 1, 2}
    assert "streamed from disk" in s.split_note and "official validation split" in s.split_note


def test_folder_without_val_and_test_splits_train_by_fractions(tmp_path):
    root = write_folder(tmp_path / "imgs", {"train": 20}, size=10, mode="L")
    s = load_dataset("folder", path=str(root), val_fraction=0.2, test_fraction=0.25, seed=1)
    assert s.info.in_channels == 1 and s.info.image_size == (10, 10)   # greyscale, native size
    assert (len(s.test), len(s.val), len(s.train)) == (15, 9, 36)
    idx = s.indices
    assert not set(idx["train"]) & set(idx["val"]) and not set(idx["train"]) & set(idx["test"])
    assert not set(idx["val"]) & set(idx["test"])
    # stratified: every class in every split
    for split in (s.train, s.val, s.test):
        assert set(split.labels.tolist()) == {0, 1, 2}
    # the test hold-out does not depend on the seed; val does
    other = load_dataset("folder", path=str(root), val_fraction=0.2, test_fraction=0.25, seed=2)
    assert set(other.indices["test"]) == set(idx["test"]) and set(other.indices["val"]) != set(idx["val"])


def test_folder_trains_a_small_net_from_disk(tmp_path):
    from hwssl.models import build_model, model_spec
    from hwssl.train import accuracy, train_phase

    root = write_folder(tmp_path / "imgs", {"train": 16, "test": 6})
    s = load_dataset("folder", path=str(root), image_size=16, augment="crop-flip")
    torch.manual_seed(0)
    model = build_model(model_spec("convnet", 3, (16, 16), 3, width=0.25))
    train_phase(model, s.train, phase="dense", epochs=6, lr=0.05, batch_size=8)
    assert accuracy(model, s.test) > 0.6


def test_crop_flip_changes_training_images_only(tmp_path):
    root = write_folder(tmp_path / "imgs", {"train": 6, "test": 2})
    aug = load_dataset("folder", path=str(root), image_size=16, augment="crop-flip")
    none = load_dataset("folder", path=str(root), image_size=16)
    assert aug.augment == "crop-flip" and "augmentation crop-flip" in aug.split_note
    torch.manual_seed(0)
    a1, a2 = images(aug.train), images(aug.train)
    assert not torch.equal(a1, a2)                          # random per read
    assert torch.equal(images(plain(aug.train)), images(none.train))   # calibration sees plain images
    assert torch.equal(images(aug.test), images(none.test))            # evaluation too
    assert torch.equal(images(aug.val), images(none.val))
    assert aug.mean == none.mean


def test_augmentation_of_an_in_memory_set_is_per_image(tmp_path):
    s = load_dataset("digits", augment="crop-flip")
    base = load_dataset("digits")
    assert isinstance(plain(s.train), TensorDataset) and len(s.train) == len(base.train)
    torch.manual_seed(0)
    x, _ = next(iter(batches(s.train, 64)))
    assert x.shape == (64, 1, 8, 8)
    assert torch.equal(first_images(plain(s.train), 5), first_images(base.train, 5))
    # off: the same tensors as before
    assert torch.equal(base.train.tensors[0], load_dataset("digits", augment="none").train.tensors[0])


@pytest.mark.parametrize("make, detail", [
    (lambda root: root, "folder not found"),
    (lambda root: (root.mkdir(), root)[1], "folder is empty"),
    (lambda root: ((root / "train").mkdir(parents=True), root)[1], "no class folders"),
])
def test_missing_or_empty_folder_is_one_clear_error(tmp_path, make, detail):
    root = make(tmp_path / "imgs")
    with pytest.raises(DatasetUnavailable, match=detail) as exc:
        load_dataset("folder", path=str(root))
    assert str(tmp_path / "imgs") in str(exc.value)


def test_a_class_with_no_images_is_named(tmp_path):
    root = write_folder(tmp_path / "imgs", {"train": 3})
    (root / "train" / "emu").mkdir()
    (root / "train" / "emu" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetUnavailable, match="class 'emu' has no images") as exc:
        load_dataset("folder", path=str(root))
    assert str(root / "train" / "emu") in str(exc.value)


def test_an_unreadable_image_is_named(tmp_path):
    root = write_folder(tmp_path / "imgs", {"train": 3})
    bad = root / "train" / "dog" / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(DatasetCorrupt, match="unreadable image") as exc:
        load_dataset("folder", path=str(root))
    assert str(bad) in str(exc.value)


def test_search_space_errors_name_the_file_and_the_data_key(tmp_path):
    root = write_folder(tmp_path / "imgs", {"train": 3})
    (root / "train" / "emu").mkdir()
    space = tmp_path / "space.toml"
    space.write_text('[model]\nname = "lenet"\n[data]\nname = "folder"\npath = "imgs"\nimage_size = 16\n')
    with pytest.raises(ConfigError) as exc:
        load_search_space(space)
    assert exc.value.key == "data.path" and str(space) in str(exc.value) and "class 'emu'" in str(exc.value)
    space.write_text('[model]\nname = "lenet"\n[data]\nname = "folder"\npath = "imgs"\nimage_size = [16]\n')
    with pytest.raises(ConfigError, match="image_size"):
        load_search_space(space)


def test_relative_folder_path_is_found_next_to_the_space_file(tmp_path, monkeypatch):
    write_folder(tmp_path / "imgs", {"train": 4})
    space = tmp_path / "space.toml"
    space.write_text('[model]\nname = "lenet"\n[data]\nname = "folder"\npath = "imgs"\nimage_size = 16\n'
                     'augment = "crop-flip"\n')
    monkeypatch.chdir(Path("/"))
    s = load_search_space(space)
    assert Path(s.data.path) == tmp_path / "imgs" and s.data.image_size == (16, 16) and s.data.augment == "crop-flip"


# --------------------------------------------------------------------------- npz
def test_npz_with_test_arrays_loads_resizes_and_normalises(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 10, 10, 3), dtype=np.uint8)       # NHWC
    y = np.repeat(np.arange(3), 20)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:9], y_test=y[:9])
    info = dataset_info("npz", path=str(tmp_path / "d.npz"))
    assert (info.in_channels, info.image_size, info.num_classes) == (3, (10, 10), 3)
    s = load_dataset("npz", path=str(tmp_path / "d.npz"), val_fraction=0.2, image_size=[6, 8])
    assert s.info.image_size == (6, 8) and images(s.train).shape[1:] == (3, 6, 8)
    assert (len(s.train), len(s.val), len(s.test)) == (48, 12, 9)
    assert s.sources["test"] == "official-test"
    assert images(s.train).mean(dim=(0, 2, 3)).abs().max() < 1e-4


def test_npz_without_test_arrays_holds_out_a_stratified_test_split(tmp_path):
    x = np.random.default_rng(1).random((50, 8, 8)).astype(np.float32)   # greyscale floats in [0, 1)
    y = np.arange(50) % 5
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    s = load_dataset("npz", path=str(tmp_path / "d.npz"), test_fraction=0.2)
    assert s.info.in_channels == 1 and s.info.num_classes == 5
    assert len(s.test) == 10 and s.sources["test"] == "all"
    assert sorted(s.test.tensors[1].tolist()) == sorted([0, 1, 2, 3, 4] * 2)
    # unchanged 8-bit data at its own size keeps the exact (LUT) route: same as raw / 255 normalised
    x8 = (x * 255).astype(np.uint8)
    np.savez(tmp_path / "u8.npz", x_train=x8, y_train=y)
    s8 = load_dataset("npz", path=str(tmp_path / "u8.npz"))
    i = int(s8.indices["train"][0])
    raw = torch.from_numpy(x8[i].astype(np.float64) / 255)
    got = s8.train.tensors[0][0, 0].double() * s8.std[0] + s8.mean[0]
    assert torch.allclose(got, raw, atol=1e-6)


@pytest.mark.parametrize("arrays, detail", [
    ({"x_train": np.zeros((4, 8, 8), np.uint8)}, "array 'y_train' is missing"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(3, int)}, "3 labels for 4 images"),
    ({"x_train": np.zeros((4, 5, 8, 8), np.uint8), "y_train": np.zeros(4, int)}, "array 'x_train' has shape"),
    ({"x_train": np.full((4, 8, 8), 2.0), "y_train": np.zeros(4, int)}, "in \\[0, 1\\]"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(4, int), "x_test": np.zeros((1, 8, 8))},
     "both 'x_test' and 'y_test'"),
])
def test_bad_npz_is_one_clear_error_naming_the_file_and_array(tmp_path, arrays, detail):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetCorrupt, match=detail) as exc:
        load_dataset("npz", path=str(tmp_path / "bad.npz"))
    assert str(tmp_path / "bad.npz") in str(exc.value)


def test_missing_or_garbage_npz_file(tmp_path):
    with pytest.raises(DatasetUnavailable, match="file not found"):
        load_dataset("npz", path=str(tmp_path / "nope.npz"))
    (tmp_path / "junk.npz").write_text("junk")
    with pytest.raises(DatasetCorrupt, match="not a NumPy .npz file"):
        load_dataset("npz", path=str(tmp_path / "junk.npz"))
