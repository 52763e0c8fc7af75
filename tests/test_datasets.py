"""The data-set registry and loaders: digits, synthetic, MedMNIST, CIFAR-10/100, ChestX-ray14.

File-based loaders are tested on tiny files the tests write in the official
formats, and on the real data in ../shared/data when that folder is present.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.stats import multivariate_normal

from expost.experiments.datasets import (
    DataSplits,
    dataset_options,
    list_datasets,
    load_dataset,
    register_dataset,
)
from expost.experiments.datasets._base import (
    ImageArrayDataset,
    group_split,
    random_crop_flip,
    stratified_split,
    subsample,
    tensor_dataset,
)
from expost.experiments.datasets.chestxray14 import CHESTXRAY14_CLASSES, read_metadata
from expost.experiments.datasets.cifar import CIFAR10_MEAN, CIFAR10_STD
from expost.experiments.datasets.synthetic import posterior

SHARED = Path(os.environ.get("EXPOST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]


def _all_labels(data: DataSplits) -> dict[str, np.ndarray]:
    return {s: data.labels(s) for s in ("train", "val", "test")}


def _tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(ds, torch.utils.data.TensorDataset):
        return ds.tensors[0], ds.tensors[1]
    return ds.get_batch(list(range(len(ds))))


# --------------------------------------------------------------------------- registry


def test_registry_lists_every_dataset():
    # a superset: doctests in the same process may have registered examples of their own
    assert set(list_datasets()) >= {"digits", "synthetic", "medmnist", "cifar10", "cifar100",
                                    "chestxray14"}
    assert list_datasets() == sorted(list_datasets())


def test_options_are_pydantic_fields():
    from pydantic import ValidationError, create_model

    model = create_model("CifarOptions", **dataset_options("cifar10"))
    ok = model(root="/data/cifar10", limit=5, image_size=224, normalize="half")
    assert ok.limit == 5 and ok.root == Path("/data/cifar10") and ok.val_fraction == 0.1
    with pytest.raises(ValidationError):
        model(normalize="zscore")
    assert dataset_options("medmnist")["flag"] == (str, "pneumoniamnist")


def test_unknown_option_names_it_and_the_allowed_ones():
    with pytest.raises(TypeError) as exc:
        load_dataset("digits", flaten=True)
    msg = str(exc.value)
    assert "'flaten'" in msg and "flatten" in msg and "Did you mean 'flatten'" in msg
    with pytest.raises(TypeError, match=r"n_samples.*n_classes.*separation"):
        load_dataset("synthetic", n_points=10)


def test_wrong_option_values():
    with pytest.raises(TypeError, match=r"`flatten` must be bool, got the string 'yes'"):
        load_dataset("digits", flatten="yes")
    with pytest.raises(ValueError, match=r"`normalize` must be one of \('dataset'"):
        load_dataset("cifar10", normalize="zscore", root="nowhere")
    with pytest.raises(ValueError, match=r"`size` must be one of \(28, 64, 128, 224\)"):
        load_dataset("medmnist", size=32)
    with pytest.raises(TypeError, match="`n_samples` must be int"):
        load_dataset("synthetic", n_samples=100.0)
    with pytest.raises(ValueError, match=r"`name` must be one of the registered datasets"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="`seed` must be a nonnegative integer"):
        load_dataset("digits", seed=-1)
    with pytest.raises(TypeError, match="`seed` must be a nonnegative integer"):
        load_dataset("digits", seed="0")


def test_register_dataset(monkeypatch):
    from expost.experiments.datasets._api import _DATASETS

    # registrations made here are undone afterwards (a copy of the table is patched in)
    monkeypatch.setattr(_DATASETS, "_factories", dict(_DATASETS._factories))

    @register_dataset("test_tiny", overwrite=True)
    def tiny(*, seed: int, n: int = 6) -> DataSplits:
        y = (np.arange(n) + seed) % 2
        ds = tensor_dataset(np.eye(2)[y], y)
        return DataSplits("test_tiny", ds, ds, ds, y, y, y, 2, ["a", "b"], (2,))

    assert "test_tiny" in list_datasets()
    assert dataset_options("test_tiny") == {"n": (int, 6)}
    assert load_dataset("test_tiny", seed=1, n=4).train_labels.tolist() == [1, 0, 1, 0]
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("test_tiny")(tiny)

    def positional(seed, n=3):  # options must be keyword-only
        return None

    with pytest.raises(TypeError, match="keyword-only"):
        register_dataset("test_bad")(positional)

    @register_dataset("test_not_splits", overwrite=True)
    def not_splits(*, seed: int) -> DataSplits:
        return {"train": []}  # type: ignore[return-value]

    with pytest.raises(TypeError, match="DataSplits"):
        load_dataset("test_not_splits")


def test_datasplits_checks_its_fields():
    y = np.array([0, 1, 1], dtype=np.int64)
    ds = tensor_dataset(np.zeros((3, 2)), y)
    DataSplits("ok", ds, ds, ds, y, y, y, 2, ["a", "b"], (2,))
    with pytest.raises(TypeError, match="`val_labels` must be a 1-D int64"):
        DataSplits("x", ds, ds, ds, y, y.astype(np.int32), y, 2, ["a", "b"], (2,))
    with pytest.raises(ValueError, match="one label per example of `test`"):
        DataSplits("x", ds, ds, ds, y, y, y[:2], 2, ["a", "b"], (2,))
    with pytest.raises(ValueError, match=r"labels in \[0, 2\)"):
        DataSplits("x", ds, ds, ds, y + 1, y, y, 2, ["a", "b"], (2,))
    with pytest.raises(ValueError, match="`class_names` must be 2 names"):
        DataSplits("x", ds, ds, ds, y, y, y, 2, ["a"], (2,))
    data = DataSplits("x", ds, ds, ds, y, y, y, 2, ["a", "b"], (2,))
    np.testing.assert_allclose(data.class_prior(), [1 / 3, 2 / 3])
    with pytest.raises(ValueError, match="`split` must be one of"):
        data.class_counts("validation")


# --------------------------------------------------------------------------- splits


@settings(max_examples=30)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=6),
    fractions=st.sampled_from([(0.7, 0.2, 0.1), (0.9, 0.1), (0.5, 0.25, 0.25), (0.34, 0.66)]),
    seed=st.integers(0, 2**16),
)
def test_stratified_split_partitions_in_proportion(counts, fractions, seed):
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(labels)
    before = labels.copy()
    parts = stratified_split(labels, fractions, seed=seed)
    np.testing.assert_array_equal(labels, before)  # not mutated
    joined = np.concatenate(parts)
    np.testing.assert_array_equal(np.sort(joined), np.arange(labels.size))  # a partition
    n = labels.size
    for part, f in zip(parts, fractions, strict=True):
        assert abs(part.size - n * f) < 1.0 + 1e-9
        per_class = np.bincount(labels[part], minlength=len(counts))
        assert np.all(np.abs(per_class - np.asarray(counts) * f) < 2.0 + 1e-9)
    again = stratified_split(labels, fractions, seed=seed)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_stratified_split_depends_on_seed():
    labels = np.repeat([0, 1, 2], 100)
    a = stratified_split(labels, seed=0)
    b = stratified_split(labels, seed=1)
    assert not np.array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="`fractions` must be nonnegative split fractions"):
        stratified_split(labels, (0.7, 0.2), seed=0)


@settings(max_examples=30)
@given(sizes=st.lists(st.integers(1, 6), min_size=3, max_size=60), seed=st.integers(0, 999))
def test_group_split_keeps_groups_whole(sizes, seed):
    groups = np.repeat(np.arange(len(sizes)) * 7 + 3, sizes)
    np.random.default_rng(seed).shuffle(groups)
    parts = group_split(groups, (0.7, 0.2, 0.1), seed=seed)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(groups.size))
    owners = [set(groups[p].tolist()) for p in parts]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    # each part is within one group (at most max(sizes) examples) of its target
    for part, f in zip(parts, (0.7, 0.2, 0.1), strict=True):
        assert abs(part.size - f * groups.size) <= max(sizes)


def test_subsample_is_stratified_and_exact():
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    idx = subsample(labels, 100, seed=3)
    assert idx.size == 100 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(labels[idx]), [50, 30, 20])
    assert subsample(labels, None, seed=0).size == 1000


def test_tensor_dataset_copies():
    x = np.ones((3, 2))
    y = np.array([0, 1, 0])
    ds = tensor_dataset(x, y)
    x[:] = 5.0
    y[:] = 1
    assert ds.tensors[0].dtype == torch.float32 and float(ds.tensors[0].max()) == 1.0
    assert ds.tensors[1].dtype == torch.int64 and ds.tensors[1].tolist() == [0, 1, 0]


# --------------------------------------------------------------------------- digits


def test_digits_splits_match_sklearn():
    from sklearn.datasets import load_digits

    ref = load_digits()
    data = load_dataset("digits", seed=0)
    sizes = {s: len(getattr(data, s)) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797
    assert abs(sizes["train"] - 0.7 * 1797) < 1 and abs(sizes["test"] - 0.2 * 1797) < 1
    assert abs(sizes["val"] - 0.1 * 1797) < 1
    assert data.input_shape == (1, 8, 8) and data.n_classes == 10
    assert data.class_names == [str(d) for d in range(10)]
    seen = []
    for split in ("train", "val", "test"):
        x, y = _tensors(getattr(data, split))
        idx = data.meta["indices"][split]
        seen.append(idx)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (1, 8, 8) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        np.testing.assert_array_equal(y.numpy(), ref.target[idx])
        np.testing.assert_array_equal(data.labels(split), ref.target[idx])
        np.testing.assert_array_equal(x.reshape(len(idx), 64).numpy(),
                                      (ref.data[idx] / 16.0).astype(np.float32))
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(1797))
    # stratified: every class's share within a few examples of its share overall
    for split, f in (("train", 0.7), ("test", 0.2), ("val", 0.1)):
        counts = data.class_counts(split)
        assert np.all(np.abs(counts - np.bincount(ref.target) * f) < 2)


def test_digits_read_from_sklearns_file_without_importing_sklearn():
    from sklearn.datasets import load_digits

    from expost.experiments.datasets import digits as mod

    path = mod.digits_file()
    assert path is not None and path.name == "digits.csv.gz"
    read = mod._read_table(path)  # the fast path, not the fallback
    assert read is not None
    ref = load_digits()
    pixels, labels = read
    np.testing.assert_array_equal(pixels, ref.data)
    np.testing.assert_array_equal(labels, ref.target)
    assert pixels.dtype == np.float64 and labels.dtype == np.int64
    code = ("import sys; from expost.experiments.datasets import load_dataset; "
            "d = load_dataset('digits', seed=0); "
            "print(len(d.train), sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1258", "[]"], out.stdout + out.stderr


@pytest.mark.parametrize("content", [
    None,  # no file
    b"0,1,2\n",  # not 1,797 x 65
    b"not,a,number\n",
    b"\x00\x01garbage",  # not gzip
    "halves",  # right shape, a value that is not an integer
    "big",  # right shape, a pixel above 16
])
def test_digits_fall_back_to_sklearn_when_its_file_is_not_the_expected_table(
    tmp_path, monkeypatch, content
):
    from sklearn.datasets import load_digits

    from expost.experiments.datasets import digits as mod

    ref = load_digits()
    path = tmp_path / "digits.csv.gz"
    if content in ("halves", "big"):
        table = np.column_stack([ref.data, ref.target])

        def write(t):
            path.write_bytes(gzip.compress(
                "\n".join(",".join(f"{v:g}" for v in row) for row in t).encode()))

        write(table)
        assert mod._read_table(path) is not None  # written this way, the table itself reads
        table[5, 3] = 2.5 if content == "halves" else 17
        write(table)
        assert mod._read_table(path) is None
    elif content is not None:
        path.write_bytes(content if content.startswith(b"\x00") else gzip.compress(content))
        assert mod._read_table(path) is None
    monkeypatch.setattr(mod, "digits_file", lambda: path if content is not None else None)
    pixels, labels = mod.digits_arrays()
    np.testing.assert_array_equal(pixels, ref.data)
    np.testing.assert_array_equal(labels, ref.target)


def test_digits_file_is_none_without_sklearn(monkeypatch):
    from expost.experiments.datasets import digits as mod

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert mod.digits_file() is None


def test_digits_seed_and_flatten():
    a, b, c = (load_dataset("digits", seed=s) for s in (4, 4, 5))
    np.testing.assert_array_equal(a.meta["indices"]["test"], b.meta["indices"]["test"])
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert not np.array_equal(a.meta["indices"]["test"], c.meta["indices"]["test"])
    flat = load_dataset("digits", seed=4, flatten=True)
    assert flat.input_shape == (64,) and flat.train[0][0].shape == (64,)
    assert torch.equal(flat.train.tensors[0].reshape(-1, 1, 8, 8), a.train.tensors[0])


# --------------------------------------------------------------------------- synthetic


def test_synthetic_posteriors_are_exact():
    data = load_dataset("synthetic", seed=2, n_samples=900, n_classes=3, n_features=2,
                        class_std=(1.0, 0.5, 2.0), prior=(0.5, 0.3, 0.2))
    means, sd, prior = data.meta["means"], data.meta["class_std"], data.meta["prior"]
    for split in ("train", "val", "test"):
        x, y = _tensors(getattr(data, split))
        post = data.meta[f"{split}_posteriors"]
        assert post.shape == (len(y), 3)
        xs = x.numpy().astype(np.float64)
        # independent reference: Bayes' rule with scipy's Gaussian densities
        dens = np.stack([multivariate_normal(means[k], sd[k] ** 2 * np.eye(2)).pdf(xs)
                         for k in range(3)], axis=1)
        ref = dens * prior / (dens * prior).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(post, ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(y.numpy(), data.labels(split))


def test_synthetic_labels_follow_the_posteriors():
    # If the stated posteriors are right, onehot(y) - P(Y | x) has mean zero in
    # every region of x; a model ignoring the prior or the variances fails this.
    data = load_dataset("synthetic", seed=0, n_samples=30000, n_classes=3,
                        class_std=(1.0, 0.6, 1.5))
    post = np.concatenate([data.meta[f"{s}_posteriors"] for s in ("train", "val", "test")])
    y = np.concatenate([data.labels(s) for s in ("train", "val", "test")])
    resid = np.eye(3)[y] - post
    bins = np.digitize(post[:, 0], [0.2, 0.5, 0.8])
    for b in range(4):
        r = resid[bins == b]
        se = r.std(axis=0, ddof=1) / np.sqrt(len(r)) + 1e-12
        assert np.all(np.abs(r.mean(axis=0)) < 4 * se), (b, r.mean(axis=0), se)
    np.testing.assert_allclose(data.meta["prior"], [4 / 7, 2 / 7, 1 / 7])
    np.testing.assert_allclose(np.bincount(y) / y.size, data.meta["prior"], atol=0.01)


def test_synthetic_options_and_errors():
    a = load_dataset("synthetic", seed=1, n_samples=200, n_features=1, n_classes=4)
    b = load_dataset("synthetic", seed=1, n_samples=200, n_features=1, n_classes=4)
    assert a.input_shape == (1,) and a.n_classes == 4
    assert torch.equal(a.test.tensors[0], b.test.tensors[0])
    np.testing.assert_allclose(np.diff(a.meta["means"][:, 0]), 2.0)
    with pytest.raises(ValueError, match="`prior` must be a probability vector summing to 1"):
        load_dataset("synthetic", prior=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="`prior` must be 3 entries"):
        load_dataset("synthetic", prior=(0.5, 0.5))
    with pytest.raises(ValueError, match="`class_std` must be 3 positive"):
        load_dataset("synthetic", class_std=(1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="`n_classes` must be an integer >= 2"):
        load_dataset("synthetic", n_classes=1)


def test_posterior_does_not_mutate():
    x = np.array([[0.0, 1.0], [2.0, -1.0]])
    x0 = x.copy()
    p = posterior(x, np.array([[1.0, 0.0], [-1.0, 0.0]]), [1.0, 1.0], [0.5, 0.5])
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [0.5, 0.5])


# --------------------------------------------------------------------------- medmnist


def _write_medmnist(folder: Path, flag: str, *, rgb: bool = False, n=(20, 6, 8), k=2,
                    multilabel: bool = False, drop: str | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, m in zip(("train", "val", "test"), n, strict=True):
        shape = (m, 28, 28, 3) if rgb else (m, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        width = 3 if multilabel else 1
        arrays[f"{split}_labels"] = (rng.integers(0, k, (m, width))).astype(np.uint8)
    if drop:
        del arrays[drop]
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{flag}.npz", **arrays)
    return arrays


def test_medmnist_tiny_file(tmp_path):
    arrays = _write_medmnist(tmp_path, "pneumoniamnist")
    data = load_dataset("medmnist", flag="pneumoniamnist", root=tmp_path)
    assert data.class_names == ["normal", "pneumonia"] and data.input_shape == (1, 28, 28)
    for split in ("train", "val", "test"):
        x, y = _tensors(getattr(data, split))
        np.testing.assert_array_equal(y.numpy(), arrays[f"{split}_labels"][:, 0])
        np.testing.assert_array_equal(data.labels(split), arrays[f"{split}_labels"][:, 0])
        np.testing.assert_allclose(x[:, 0].numpy() * 255.0, arrays[f"{split}_images"], atol=1e-3)
    rgb = load_dataset("medmnist", flag="pneumoniamnist", root=tmp_path, as_rgb=True)
    assert rgb.input_shape == (3, 28, 28)
    assert torch.equal(_tensors(rgb.train)[0][:, 2], _tensors(data.train)[0][:, 0])
    assert data.train.images.dtype == torch.uint8  # kept as stored: 4 x less than float32


def test_medmnist_rgb_unknown_flag_and_env(tmp_path, monkeypatch):
    arrays = _write_medmnist(tmp_path / "medmnist", "newmnist", rgb=True, k=4)
    monkeypatch.setenv("EXPOST_DATA", str(tmp_path))
    data = load_dataset("medmnist", flag="newmnist")
    assert data.meta["file"] == str((tmp_path / "medmnist" / "newmnist.npz").resolve())
    monkeypatch.setenv("EXPOST_DATA", str(tmp_path / "medmnist"))  # the folder itself
    assert load_dataset("medmnist", flag="newmnist").meta["file"] == data.meta["file"]
    assert data.input_shape == (3, 28, 28)
    top = max(int(arrays[f"{s}_labels"].max()) for s in ("train", "val", "test"))
    assert data.class_names == [str(k) for k in range(top + 1)]
    x, _ = _tensors(data.test)
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy() * 255.0, arrays["test_images"],
                               atol=1e-3)


def test_medmnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        load_dataset("medmnist", flag="breastmnist", root=tmp_path)
    msg = str(exc.value)
    assert "breastmnist.npz" in msg and "zenodo" in msg and str(tmp_path) in msg
    assert "root=" in msg and "EXPOST_DATA" in msg
    with pytest.raises(FileNotFoundError, match=r"breastmnist_224\.npz"):
        load_dataset("medmnist", flag="breastmnist", root=tmp_path, size=224)
    _write_medmnist(tmp_path, "chestmnist", multilabel=True)
    with pytest.raises(ValueError, match="multi-label"):
        load_dataset("medmnist", flag="chestmnist", root=tmp_path)
    _write_medmnist(tmp_path, "brokenmnist", drop="val_labels")
    with pytest.raises(ValueError, match="val_labels"):
        load_dataset("medmnist", flag="brokenmnist", root=tmp_path)
    with pytest.raises(ValueError, match="`flag` must be a MedMNIST name"):
        load_dataset("medmnist", flag="../etc/passwd", root=tmp_path)


@pytest.mark.skipif(not (SHARED / "medmnist").is_dir(), reason="../shared/data/medmnist absent")
@pytest.mark.parametrize(
    ("flag", "sizes", "train_counts", "channels"),
    [
        ("pneumoniamnist", (4708, 524, 624), [1214, 3494], 1),
        ("breastmnist", (546, 78, 156), [147, 399], 1),
        ("retinamnist", (1080, 120, 400), [486, 128, 206, 194, 66], 3),
    ],
)
def test_medmnist_real_files(flag, sizes, train_counts, channels):
    data = load_dataset("medmnist", flag=flag, root=SHARED / "medmnist")
    assert (len(data.train), len(data.val), len(data.test)) == sizes
    np.testing.assert_array_equal(data.class_counts("train"), train_counts)
    assert data.input_shape == (channels, 28, 28) and data.n_classes == len(train_counts)
    x, _ = _tensors(data.train)
    assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


# --------------------------------------------------------------------------- cifar


def _cifar_arrays(n_train: int = 200, n_test: int = 50, k: int = 10):
    rng = np.random.default_rng(1)
    train_x = rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8)
    test_x = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    train_y = rng.permutation(np.arange(n_train) % k)
    test_y = np.arange(n_test) % k
    return train_x, train_y, test_x, test_y


def _pickle_rows(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # R plane, G plane, B plane


def _write_cifar10_npz(folder: Path, arrays) -> None:
    train_x, train_y, test_x, test_y = arrays
    folder.mkdir(parents=True, exist_ok=True)
    for i, (xs, ys) in enumerate(zip(np.array_split(train_x, 2), np.array_split(train_y, 2),
                                     strict=True)):
        np.savez(folder / f"train_{i}.npz", images=xs, labels=ys.astype(np.uint8),
                 label_names=np.array(CIFAR_NAMES))
    np.savez(folder / "test.npz", images=test_x, labels=test_y.astype(np.uint8),
             label_names=np.array(CIFAR_NAMES))


def _write_cifar10_pickle(folder: Path, arrays) -> None:
    train_x, train_y, test_x, test_y = arrays
    d = folder / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i, (xs, ys) in enumerate(zip(np.array_split(train_x, 5), np.array_split(train_y, 5),
                                     strict=True)):
        batch = {b"batch_label": b"training batch", b"labels": [int(v) for v in ys],
                 b"data": _pickle_rows(xs), b"filenames": [b"x.png"] * len(ys)}
        (d / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"labels": [int(v) for v in test_y], b"data": _pickle_rows(test_x)}
    (d / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}
    (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def test_cifar10_both_formats_agree(tmp_path):
    arrays = _cifar_arrays()
    _write_cifar10_npz(tmp_path / "npz", arrays)
    _write_cifar10_pickle(tmp_path / "pkl", arrays)
    a = load_dataset("cifar10", root=tmp_path / "npz", seed=3, normalize="none")
    b = load_dataset("cifar10", root=tmp_path / "pkl", seed=3, normalize="none")
    assert a.meta["format"] == "npz" and b.meta["format"] == "pickle"
    assert a.class_names == b.class_names == CIFAR_NAMES
    for split in ("train", "val", "test"):
        xa, ya = _tensors(getattr(a, split))
        xb, yb = _tensors(getattr(b, split))
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert xa.dtype == torch.float32 and xa.shape[1:] == (3, 32, 32)
    # the images are the written ones, channels first, scaled to [0, 1]
    train_x, train_y, test_x, test_y = arrays
    xt, yt = _tensors(a.test)
    np.testing.assert_allclose(xt.permute(0, 2, 3, 1).numpy() * 255.0, test_x, atol=1e-4)
    np.testing.assert_array_equal(yt.numpy(), test_y)
    idx = a.meta["indices"]["train"]
    xtr, _ = _tensors(a.train)
    np.testing.assert_allclose(xtr.permute(0, 2, 3, 1).numpy() * 255.0, train_x[idx], atol=1e-4)
    np.testing.assert_array_equal(a.train_labels, train_y[idx])


def test_cifar10_split_normalise_resize_limit(tmp_path):
    arrays = _cifar_arrays(n_train=400)
    _write_cifar10_npz(tmp_path, arrays)
    data = load_dataset("cifar10", root=tmp_path, val_fraction=0.25, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (300, 100, 50)
    np.testing.assert_array_equal(data.class_counts("val"), np.full(10, 10))
    assert not set(data.meta["indices"]["train"]) & set(data.meta["indices"]["val"])
    raw = load_dataset("cifar10", root=tmp_path, val_fraction=0.25, seed=0, normalize="none")
    x, _ = _tensors(data.test)
    r, _ = _tensors(raw.test)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x * std + mean, r, rtol=0, atol=1e-5)
    big = load_dataset("cifar10", root=tmp_path, image_size=48, normalize="half", limit=40)
    assert big.input_shape == (3, 48, 48)
    assert (len(big.train), len(big.val), len(big.test)) == (40, 40, 40)
    xb, _ = big.test.get_batch([0, 1])
    ref = torch.nn.functional.interpolate(r[big.meta["indices"]["test"][:2]], size=(48, 48),
                                          mode="bilinear", align_corners=False)
    torch.testing.assert_close(xb, (ref - 0.5) / 0.5, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="`val_fraction` must be a number in"):
        load_dataset("cifar10", root=tmp_path, val_fraction=1.0)
    with pytest.raises(ValueError, match="`limit` must be an integer >= 1"):
        load_dataset("cifar10", root=tmp_path, limit=0)


def test_cifar10_augment_train_only_and_seeded(tmp_path):
    _write_cifar10_npz(tmp_path, _cifar_arrays())
    data = load_dataset("cifar10", root=tmp_path, augment=True, normalize="none")
    idx = list(range(16))
    torch.manual_seed(0)
    a, _ = data.train.get_batch(idx)
    torch.manual_seed(0)
    b, _ = data.train.get_batch(idx)
    c, _ = data.train.get_batch(idx)
    assert torch.equal(a, b) and not torch.equal(a, c)
    v1, _ = data.val.get_batch([0, 1])
    v2, _ = data.val.get_batch([0, 1])
    assert torch.equal(v1, v2)
    # the DataLoader uses __getitems__ and gets the same batch as get_batch
    loader = torch.utils.data.DataLoader(data.test, batch_size=8, shuffle=False)
    xb, yb = next(iter(loader))
    xr, yr = data.test.get_batch(list(range(8)))
    assert torch.equal(xb, xr) and torch.equal(yb, yr)
    assert torch.equal(data.test[3][0], xr[3])
    torch.manual_seed(0)
    on_device, y_dev = data.train.get_batch(idx, device="cpu")
    assert torch.equal(on_device, a) and y_dev.device.type == "cpu"


def test_random_crop_flip_is_a_padded_crop():
    torch.manual_seed(1)
    x = torch.randint(1, 256, (12, 3, 8, 8), dtype=torch.uint8)
    before = x.clone()
    out = random_crop_flip(x, pad=2, flip=True)
    assert torch.equal(x, before)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flips = 0
    for i in range(12):
        found = None
        for oy in range(5):
            for ox in range(5):
                crop = padded[i, :, oy:oy + 8, ox:ox + 8]
                for flipped in (False, True):
                    if torch.equal(out[i], crop.flip(-1) if flipped else crop):
                        found = flipped
        assert found is not None, i
        flips += found
    assert 0 < flips < 12


def test_image_array_dataset_checks():
    with pytest.raises(TypeError, match="`images` must be a uint8 tensor"):
        ImageArrayDataset(torch.zeros(2, 4, 4, 3), torch.zeros(2, dtype=torch.long),
                          mean=(0,) * 3, std=(1,) * 3)


def test_cifar_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cs\.toronto\.edu.*root="):
        load_dataset("cifar10", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_dataset("cifar100", root=tmp_path)


def test_cifar100_pickle(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    sets = {}
    for split, n in (("train", 600), ("test", 200)):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        fine = rng.permutation(np.arange(n) % 100)
        sets[split] = (x, fine)
        batch = {b"filenames": [b"a.png"] * n, b"fine_labels": fine.tolist(),
                 b"coarse_labels": (fine // 5).tolist(), b"data": _pickle_rows(x)}
        (d / split).write_bytes(pickle.dumps(batch, protocol=2))
    fine_names = [f"f{k}" for k in range(100)]
    fine_names[47] = "maple_tree"
    meta = {b"fine_label_names": [n.encode() for n in fine_names],
            b"coarse_label_names": [f"c{k}".encode() for k in range(20)]}
    (d / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    data = load_dataset("cifar100", root=tmp_path, normalize="none")
    assert data.n_classes == 100 and data.class_names[47] == "maple_tree"
    assert (len(data.train), len(data.val), len(data.test)) == (540, 60, 200)
    np.testing.assert_array_equal(data.class_counts("test"), np.full(100, 2))
    x, y = _tensors(data.test)
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy() * 255, sets["test"][0], atol=1e-4)
    np.testing.assert_array_equal(y.numpy(), sets["test"][1])
    coarse = load_dataset("cifar100", root=tmp_path, label_kind="coarse")
    assert coarse.n_classes == 20 and coarse.class_names[0] == "c0"
    np.testing.assert_array_equal(coarse.test_labels, sets["test"][1] // 5)


@pytest.mark.skipif(not (SHARED / "cifar10").is_dir(), reason="../shared/data/cifar10 absent")
def test_cifar10_real_shards():
    data = load_dataset("cifar10", root=SHARED / "cifar10", seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (45000, 5000, 10000)
    assert data.class_names == CIFAR_NAMES and data.input_shape == (3, 32, 32)
    np.testing.assert_array_equal(data.class_counts("test"), np.full(10, 1000))
    np.testing.assert_array_equal(data.class_counts("train") + data.class_counts("val"),
                                  np.full(10, 5000))
    # the published training mean (of all 50,000; here the first 5,000 kept images)
    mean = data.train.images[:5000].to(torch.float32).mean(dim=(0, 1, 2)) / 255.0
    np.testing.assert_allclose(mean.numpy(), CIFAR10_MEAN, atol=0.01)
    x, y = data.test.get_batch([0, 1, 2])
    assert x.dtype == torch.float32 and x.shape == (3, 3, 32, 32) and y.dtype == torch.int64


# --------------------------------------------------------------------------- chestxray14


def _write_chest(root: Path, *, gz: bool = False, size: int = 20) -> list[tuple[str, str, int]]:
    """60 patients, 1-4 images each, ~1/4 multi-label; images split over two archives."""
    rng = np.random.default_rng(5)
    rows = []
    findings = list(CHESTXRAY14_CLASSES)
    for patient in range(1, 61):
        for follow in range(int(rng.integers(1, 5))):
            name = f"{patient:08d}_{follow:03d}.png"
            if rng.random() < 0.25:
                label = "|".join(rng.choice(findings[:14], 2, replace=False))
            else:
                label = findings[int(rng.integers(0, 15))]
            rows.append((name, label, patient))
    for name, _, patient in rows:
        sub = root / ("images_001" if patient <= 30 else "images_002") / "images"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size + 4), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(sub / name)
    text = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age\n" + "".join(
        f"{n},{lab},{k},{p},50\n" for k, (n, lab, p) in enumerate(rows))
    if gz:
        (root / "Data_Entry_2017_v2020.csv.gz").write_bytes(gzip.compress(text.encode()))
    else:
        (root / "Data_Entry_2017.csv").write_text(text)
    return rows


def test_chestxray14_subset_classes_and_patient_split(tmp_path):
    rows = _write_chest(tmp_path)
    data = load_dataset("chestxray14", root=tmp_path, image_size=16, seed=0)
    single = [(n, lab, p) for n, lab, p in rows if "|" not in lab]
    assert data.n_classes == 15 and data.class_names == list(CHESTXRAY14_CLASSES)
    assert "No Finding" in data.class_names
    assert sum(len(getattr(data, s)) for s in ("train", "val", "test")) == len(single)
    expected = {n: (CHESTXRAY14_CLASSES.index(lab), p) for n, lab, p in single}
    owners = {}
    for split in ("train", "val", "test"):
        ds = getattr(data, split)
        for path, label, patient in zip(ds.paths, data.labels(split),
                                        data.meta["patients"][split], strict=True):
            assert expected[Path(path).name] == (label, patient)
            assert owners.setdefault(patient, split) == split  # one split per patient
    n = len(single)
    biggest = max(sum(1 for *_, p in single if p == q) for q in {p for *_, p in single})
    for split, f in (("train", 0.7), ("test", 0.2), ("val", 0.1)):
        assert abs(len(getattr(data, split)) - f * n) <= biggest
    again = load_dataset("chestxray14", root=tmp_path, image_size=16, seed=0)
    assert again.train.paths == data.train.paths
    other = load_dataset("chestxray14", root=tmp_path, image_size=16, seed=1)
    assert other.train.paths != data.train.paths


def test_chestxray14_pixels_and_flip(tmp_path):
    _write_chest(tmp_path, gz=True)
    data = load_dataset("chestxray14", root=tmp_path, image_size=24)
    assert data.input_shape == (3, 24, 24)
    x, y = data.val[0]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and y.dtype == torch.int64
    with Image.open(data.val.paths[0]) as im:
        ref = np.asarray(im.convert("L").resize((24, 24), Image.Resampling.BILINEAR),
                         dtype=np.float64) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x.numpy(), (ref[None] - mean[:, None, None]) / std[:, None, None],
                               atol=1e-5)
    assert torch.equal(data.val[0][0], x)  # no randomness outside training
    plain = data.train.load(0)
    seen = set()
    for s in range(12):
        torch.manual_seed(s)
        xt, _ = data.train[0]
        if torch.equal(xt, plain):
            seen.add("same")
        elif torch.equal(xt, plain.flip(-1)):
            seen.add("flipped")
        else:
            raise AssertionError("a training image is either the image or its mirror")
    assert seen == {"same", "flipped"}
    data.train.augment = False
    assert all(torch.equal(data.train[0][0], plain) for _ in range(6))
    assert data.val.augment is False
    fixed = load_dataset("chestxray14", root=tmp_path, image_size=24, augment=False)
    assert fixed.train.augment is False and data.train.augment is False


def test_chestxray14_limit_csv_and_errors(tmp_path):
    rows = _write_chest(tmp_path / "imgs")
    moved = tmp_path / "meta" / "entries.csv"
    moved.parent.mkdir()
    (tmp_path / "imgs" / "Data_Entry_2017.csv").rename(moved)
    with pytest.raises(FileNotFoundError, match="Data_Entry_2017"):
        load_dataset("chestxray14", root=tmp_path / "imgs")
    data = load_dataset("chestxray14", root=tmp_path / "imgs", csv=moved, image_size=8)
    small = load_dataset("chestxray14", root=tmp_path / "imgs", csv=moved, image_size=8,
                         limit=30)
    total = sum(len(getattr(small, s)) for s in ("train", "val", "test"))
    assert abs(total - 30) <= 4 and total < sum(len(getattr(data, s)) for s in
                                                 ("train", "val", "test"))
    # a missing image is reported, not skipped
    single = [n for n, lab, _ in rows if "|" not in lab]
    victim = next((tmp_path / "imgs").rglob(single[0]))
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of \d+ ChestX-ray14 images are not under"):
        load_dataset("chestxray14", root=tmp_path / "imgs", csv=moved)
    bad = tmp_path / "bad.csv"
    bad.write_text("Image Index,Finding Labels,Patient ID\na.png,Flu,1\n")
    with pytest.raises(ValueError, match=r"'Finding Labels' of a\.png"):
        read_metadata(bad)
    bad.write_text("Image,Labels,Patient\na.png,Mass,1\n")
    with pytest.raises(ValueError, match="Finding Labels"):
        read_metadata(bad)


@pytest.mark.skipif(importlib.util.find_spec("torchxrayvision") is None,
                    reason="torchxrayvision (with the NIH metadata) not installed")
def test_chestxray14_real_metadata_counts():
    spec = importlib.util.find_spec("torchxrayvision")
    csv_path = Path(spec.origin).parent / "data" / "Data_Entry_2017_v2020.csv.gz"
    meta = read_metadata(csv_path)
    assert meta.n_rows == 112120
    assert len(meta.images) == 91324
    rates = meta.class_rates()
    assert round(rates["Pneumonia"], 4) == pytest.approx(0.0035, abs=1e-4)
    assert round(rates["Cardiomegaly"], 3) == pytest.approx(0.012, abs=1e-3)
    assert round(rates["Pneumothorax"], 3) == pytest.approx(0.024, abs=1e-3)
    assert round(rates["Infiltration"], 4) == pytest.approx(0.1045, abs=1e-4)
    parts = group_split(meta.patients, seed=0)
    assert not set(meta.patients[parts[0]]) & set(meta.patients[parts[1]])
