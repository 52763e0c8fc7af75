"""A user's own data: the ``imagefolder`` and ``npz`` data sets, on small files the tests make."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from expost.experiments.datasets import load_dataset

SHARED = Path(os.environ.get("EXPOST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def _folder(root: Path, splits: dict[str, dict[str, int]], *, mode: str = "RGB") -> dict[str, int]:
    """Write ``splits[split][class]`` images; each image's pixels encode its number."""
    k = 0
    values = {}
    for split, classes in splits.items():
        for cls, n in classes.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = (14, 18) + ((3,) if mode == "RGB" else ())
                Image.fromarray(np.full(shape, k, np.uint8), mode=mode).save(
                    root / split / cls / f"img{i:03d}.png")
                values[str(root / split / cls / f"img{i:03d}.png")] = k
                k += 1
    (root / next(iter(splits)) / "notes.txt").write_text("no image")  # not a class folder: ignored
    return values


def test_imagefolder_with_train_val_test(tmp_path):
    values = _folder(tmp_path, {"train": {"0_normal": 6, "1_tumour": 4},
                                "Valid": {"0_normal": 2, "1_tumour": 2},
                                "test": {"0_normal": 3, "1_tumour": 3}})
    data = load_dataset("imagefolder", root=tmp_path, image_size=8, normalize="none")
    assert data.class_names == ["0_normal", "1_tumour"] and data.input_shape == (3, 8, 8)
    assert (len(data.train), len(data.val), len(data.test)) == (10, 4, 6)
    np.testing.assert_array_equal(data.train_labels, [0] * 6 + [1] * 4)
    np.testing.assert_array_equal(data.test_labels, [0, 0, 0, 1, 1, 1])
    assert data.meta["layout"] == {"train": "train", "val": "Valid", "test": "test"}
    x, y = data.val.get_batch(list(range(4)))  # read through the cache, pixels intact
    expected = [values[p] / 255.0 for p in data.val.paths]
    assert torch.allclose(x.mean(dim=(1, 2, 3)), torch.tensor(expected), atol=1e-6)
    assert y.tolist() == [0, 0, 1, 1]
    assert data.meta["cache"]["built_now"] == 20
    assert Path(data.meta["cache"]["path"]).parent == tmp_path / ".expost-cache"
    again = load_dataset("imagefolder", root=tmp_path, image_size=8, normalize="none")
    assert again.meta["cache"]["built_now"] == 0  # the second load reads the cache
    files = load_dataset("imagefolder", root=tmp_path, image_size=8, normalize="none",
                         cache=False)
    assert torch.equal(files.val.load(1), x[1])
    gray = load_dataset("imagefolder", root=tmp_path, image_size=8, channels=1)
    assert gray.input_shape == (1, 8, 8) and gray.train[0][0].shape == (1, 8, 8)


def test_imagefolder_without_val_splits_train_stratified(tmp_path):
    _folder(tmp_path, {"train": {"cat": 30, "dog": 10}, "test": {"cat": 5, "dog": 5}},
            mode="L")
    data = load_dataset("imagefolder", root=tmp_path, image_size=6, val_fraction=0.2, seed=1)
    assert (len(data.train), len(data.val), len(data.test)) == (32, 8, 10)
    np.testing.assert_array_equal(data.class_counts("val"), [6, 2])  # stratified
    assert not set(data.train.paths) & set(data.val.paths)
    assert "stratified 0.2" in data.meta["layout"]["val"]
    other = load_dataset("imagefolder", root=tmp_path, image_size=6, val_fraction=0.2, seed=2)
    assert set(other.val.paths) != set(data.val.paths)


def test_imagefolder_train_only_is_split_70_20_10(tmp_path):
    _folder(tmp_path, {"training": {"a": 40, "b": 20}})
    data = load_dataset("imagefolder", root=tmp_path, image_size=4, cache=False)
    assert (len(data.train), len(data.test), len(data.val)) == (42, 12, 6)
    np.testing.assert_array_equal(data.class_counts("test"), [8, 4])
    paths = [set(getattr(data, s).paths) for s in ("train", "val", "test")]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="root"):
        load_dataset("imagefolder", root=tmp_path / "absent")
    (tmp_path / "test" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"expected a folder train/ .* found \['test'\]"):
        load_dataset("imagefolder", root=tmp_path)
    with pytest.raises(ValueError, match=r"the class folder\(s\) \['a'\] hold no image files"):
        _folder(tmp_path, {"train": {"b": 3, "c": 2}})
        load_dataset("imagefolder", root=tmp_path)
    _folder(tmp_path / "one", {"train": {"only": 3}})
    with pytest.raises(ValueError, match="at least 2 class folders"):
        load_dataset("imagefolder", root=tmp_path / "one")
    with pytest.raises(TypeError, match="needs the option"):
        load_dataset("imagefolder")
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("imagefolder", root=tmp_path, val_fraction=1.5)


def test_imagefolder_val_without_test_is_refused(tmp_path):
    _folder(tmp_path, {"train": {"a": 3, "b": 3}, "val": {"a": 1, "b": 1}})
    with pytest.raises(FileNotFoundError, match="no test/ folder"):
        load_dataset("imagefolder", root=tmp_path)


# ---------------------------------------------------------------- npz
def test_npz_image_keys_with_val_and_names(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 256, (n, 10, 10, 3), dtype=np.uint8)
              for s, n in (("train", 20), ("val", 6), ("test", 8))}
    arrays.update({f"{s}_labels": (np.arange(n) % 3).reshape(-1, 1).astype(np.uint8)
                   for s, n in (("train", 20), ("val", 6), ("test", 8))})
    np.savez(tmp_path / "d.npz", class_names=np.array(["x", "y", "z"]), **arrays)
    data = load_dataset("npz", file=tmp_path / "d.npz", image_size=16, normalize="none")
    assert data.class_names == ["x", "y", "z"] and data.input_shape == (3, 16, 16)
    assert (len(data.train), len(data.val), len(data.test)) == (20, 6, 8)
    assert data.meta["val"] == "file"
    x, _ = load_dataset("npz", file=tmp_path / "d.npz", normalize="none").test.get_batch([2])
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy() * 255, arrays["test_images"][2],
                               atol=1e-4)
    ds = load_dataset("npz", file=tmp_path / "d.npz", normalize="dataset")
    flat = arrays["train_images"].reshape(-1, 3) / 255.0
    np.testing.assert_allclose(ds.meta["mean"], flat.mean(0))
    np.testing.assert_allclose(ds.meta["std"], flat.std(0))


def test_npz_xy_keys_features_and_val_split(tmp_path):
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2, 3], [40, 30, 20, 10])
    np.savez(tmp_path / "f.npz", x_train=rng.normal(size=(100, 5)), y_train=y.astype(float),
             x_test=rng.normal(size=(12, 5)), y_test=np.arange(12) % 4)
    data = load_dataset("npz", file=tmp_path / "f.npz", val_fraction=0.1, seed=0)
    assert data.input_shape == (5,) and data.class_names == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(data.class_counts("val"), [4, 3, 2, 1])
    assert len(data.train) == 90 and isinstance(data.train, torch.utils.data.TensorDataset)
    assert "stratified 0.1" in data.meta["val"]


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((3, 2)), labels=np.zeros(3))
    with pytest.raises(ValueError, match=r"train_images.*x_train.*one with the keys"):
        load_dataset("npz", file=tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x_train=np.zeros((4, 2)), y_train=np.zeros(4))
    with pytest.raises(ValueError, match=r"lacking \['x_test', 'y_test'\]"):
        load_dataset("npz", file=tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", x_train=np.zeros((4, 2)), y_train=[0, 1, 0.5, 1],
             x_test=np.zeros((2, 2)), y_test=[0, 1])
    with pytest.raises(ValueError, match="whole numbers"):
        load_dataset("npz", file=tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 2)), y_train=[0, 1, 0, 1],
             x_test=np.zeros((2, 3)), y_test=[0, 1])
    with pytest.raises(ValueError, match="differ in shape"):
        load_dataset("npz", file=tmp_path / "d.npz")
    (tmp_path / "e.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"cannot be read as an \.npz"):
        load_dataset("npz", file=tmp_path / "e.npz")
    with pytest.raises(FileNotFoundError, match="file"):
        load_dataset("npz", file=tmp_path / "absent.npz")


@pytest.mark.parametrize(("x_train", "message"), [
    (np.array([{"a": 1}] * 4, dtype=object), r"`x_train of .*f\.npz` must be an array of numbers or "
                                             r"strings \(expost never unpickles\), got one that needs"),
    (np.array(["a"] * 4), r"`x_train of .*f\.npz` must be inputs of numbers .*dtype <U1\.$"),
    (np.zeros((4, 2)) * 1j, r"`x_train of .*f\.npz` must be inputs of numbers .*dtype complex128\.$"),
    (np.where(np.eye(4, 2) > 0, np.nan, 0.0), r"`x_train of .*f\.npz` must be finite inputs "
                                              r"\(no NaN or inf\), got nan at index \(0, 0\)\.$"),
])
def test_npz_inputs_that_are_not_finite_numbers_name_the_key(tmp_path, x_train, message):
    """Inputs the training cannot use: an object array (numpy's own error named neither the
    file nor the key), strings or complex numbers (a bare conversion error, or a warning
    and the imaginary part dropped) and NaN or inf features (accepted, then NaN losses)."""
    np.savez(tmp_path / "f.npz", x_train=x_train, y_train=[0, 1, 0, 1], x_test=np.zeros((2, 2)),
             y_test=[0, 1])
    with pytest.raises(ValueError, match=message):
        load_dataset("npz", file=tmp_path / "f.npz")


@pytest.mark.skipif(not (SHARED / "medmnist").is_dir(), reason="../shared/data/medmnist absent")
def test_npz_reads_a_real_medmnist_file_like_the_medmnist_loader():
    path = SHARED / "medmnist" / "breastmnist.npz"
    generic = load_dataset("npz", file=path)
    official = load_dataset("medmnist", flag="breastmnist", root=path.parent)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(generic.labels(split), official.labels(split))
    x, _ = generic.test.get_batch(list(range(5)))
    torch.testing.assert_close(x, official.test.get_batch(list(range(5)))[0])


def test_resuming_on_changed_data_is_refused(tmp_path):
    """A resume compared only the normalised utility: a data file whose test set was
    reordered (or whose training labels moved, the prior unchanged) resumed silently,
    and evaluate then scored the stored predictions against labels they were not for."""
    from expost.experiments.runners import ExperimentMismatchError, run_experiment

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [40, 30, 30])
    arrays = {"x_train": rng.normal(size=(100, 4)) + y[:, None], "y_train": y,
              "x_test": rng.normal(size=(30, 4)), "y_test": np.arange(30) % 3}
    np.savez(tmp_path / "d.npz", **arrays)
    cfg = {"name": "npz-resume", "dataset": {"name": "npz", "options": {"file": str(tmp_path / "d.npz")}},
           "model": {"name": "mlp", "options": {"hidden": [8]}},
           "objective": {"kind": "emphasize", "emphasized": 1, "ratio": 9},
           "regimes": ["weighted", "expost"], "seeds": [0],
           "training": {"epochs": 1, "batch_size": 64}, "num_threads": 1}
    run = run_experiment(cfg, output_dir=tmp_path / "r", progress=False)
    assert run_experiment(cfg, output_dir=run, progress=False) == run  # same data: resumes
    order = np.roll(np.arange(30), 1)
    np.savez(tmp_path / "d.npz", **{**arrays, "x_test": arrays["x_test"][order],
                                    "y_test": arrays["y_test"][order]})
    with pytest.raises(ExperimentMismatchError, match="test labels now differ"):
        run_experiment(cfg, output_dir=run, progress=False)
    swapped = y.copy()
    swapped[[0, 99]] = swapped[[99, 0]]  # the same prior, other training labels
    np.savez(tmp_path / "d.npz", **{**arrays, "y_train": swapped})
    with pytest.raises(ExperimentMismatchError, match="training labels now differ"):
        run_experiment(cfg, output_dir=run, progress=False)


@pytest.mark.parametrize(("arrays", "says"), [
    ({"x_train": np.zeros((6, 4, 4), np.uint8), "x_test": np.random.default_rng(0).random((3, 4, 4))},
     "the splits' images differ in dtype (x_train: uint8, x_test: float64)"),
    ({"x_train": np.full((6, 3), 1e300), "x_test": np.zeros((3, 3))},
     "`x_train of {f}` must be inputs within float32's range"),
    ({"x_train": np.zeros((6, 4, 4, 5), np.uint8), "x_test": np.zeros((3, 4, 4, 5), np.uint8)},
     "must be images with 1 (gray) or 3 (RGB) channels"),
    ({"x_train": np.zeros((6, 3)), "x_test": np.zeros((3, 3)), "y_train": np.array([0, 1] * 2 + [10**9, 1])},
     "class labels must be below 1,000,000"),
    ({"x_train": np.zeros((6, 3)), "x_test": np.zeros((3, 3)), "y_train": np.array([0, 1] * 2 + [1e20, 1])},
     "class labels must be below 1,000,000"),
    ({"x_train": np.zeros((6, 3)), "x_test": np.zeros((3, 3)),
      "y_train": np.array([0, 1, 0, 1, 2**64 - 1, 1], dtype=np.uint64)},
     "class labels must be below 1,000,000"),
])
def test_npz_inputs_that_would_go_wrong_later_are_refused(tmp_path, arrays, says):
    """Each was accepted: train images scaled to [0, 1] beside float test images left as
    they were; 1e300 became inf in float32 and the run 'diverged' (lower the learning rate,
    it advised); 5 channels failed in torch; a label of 1e9 made a billion class names, and
    1e20 or 2**64 - 1 wrapped to negative labels."""
    full = {"y_train": np.array([0, 1] * 3), "y_test": np.array([0, 1, 0]), **arrays}
    np.savez(tmp_path / "d.npz", **full)
    with pytest.raises(ValueError) as info:
        load_dataset("npz", file=tmp_path / "d.npz", val_fraction=0.34)
    assert says.format(f=tmp_path / "d.npz") in str(info.value)


def test_npz_file_that_is_no_archive_is_named(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    with pytest.raises(ValueError, match=r"an \.npz archive of named arrays .* a single \.npy array"):
        load_dataset("npz", file=tmp_path / "a.npz")
    (tmp_path / "b.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"b\.npz' cannot be read as an \.npz \(not a zip archive"):
        load_dataset("npz", file=tmp_path / "b.npz")


def test_dataset_normalisation_of_constant_images_is_refused(tmp_path):
    np.savez(tmp_path / "c.npz", x_train=np.full((6, 4, 4), 7, np.uint8), y_train=np.array([0, 1] * 3),
             x_test=np.zeros((3, 4, 4), np.uint8), y_test=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="every pixel of a channel the same"):
        load_dataset("npz", file=tmp_path / "c.npz", normalize="dataset", val_fraction=0.34)
    assert load_dataset("npz", file=tmp_path / "c.npz", val_fraction=0.34).n_classes == 2


def test_folders_and_options_that_would_be_misread_are_refused(tmp_path):
    """train/ beside Training/ read one and left the other out unseen; image_size 50,000 made
    a 180 GB cache file; y_val without x_val was ignored; a class named twice was accepted."""
    _folder(tmp_path / "two", {"train": {"a": 2, "b": 2}, "Training": {"a": 2, "b": 2},
                               "test": {"a": 1, "b": 1}})
    with pytest.raises(ValueError, match="has two folders for the train split, 'Training' and "
                                         "'train'; keep one"):
        load_dataset("imagefolder", root=tmp_path / "two", image_size=8)
    _folder(tmp_path / "one", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    with pytest.raises(ValueError, match="`image_size` must be a side of at most 4096 pixels"):
        load_dataset("imagefolder", root=tmp_path / "one", image_size=50_000)
    base = {"x_train": np.zeros((6, 3)), "y_train": np.array([0, 1] * 3), "x_test": np.zeros((3, 3)),
            "y_test": np.array([0, 1, 0])}
    np.savez(tmp_path / "yv.npz", **base, y_val=np.array([0, 1]))
    with pytest.raises(ValueError, match="must be x_val beside y_val"):
        load_dataset("npz", file=tmp_path / "yv.npz")
    np.savez(tmp_path / "names.npz", **base, class_names=np.array(["a", "a"]))
    with pytest.raises(ValueError, match="must be distinct class names, got 'a' more than once"):
        load_dataset("npz", file=tmp_path / "names.npz")
