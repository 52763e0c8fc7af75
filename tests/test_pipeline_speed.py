"""The efficiency features of the harness: uint8 images on the training device with their
augmentation built there, CIFAR's ViT-recipe options, persistent loaders, torch.compile,
the evaluation batch size, and checkpoints every k intervals with an exact resume."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from expost.experiments import train as train_module
from expost.experiments.batches import BatchSource
from expost.experiments.checkpoint import load_checkpoint
from expost.experiments.config import ConfigError, load_config
from expost.experiments.datasets import DataSplits, _base, load_dataset, register_dataset
from expost.experiments.datasets._base import ImageArrayDataset, inception_boxes
from expost.experiments.runners import run_experiment
from expost.experiments.store import ResultStore

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


def _write_cifar(folder: Path, n_train: int = 200, n_test: int = 50) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8)
    train_y = rng.permutation(np.arange(n_train) % 10)
    test_x = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    test_y = np.arange(n_test) % 10
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "train_0.npz", images=train_x, labels=train_y.astype(np.uint8),
             label_names=np.array(CIFAR_NAMES))
    np.savez(folder / "test.npz", images=test_x, labels=test_y.astype(np.uint8),
             label_names=np.array(CIFAR_NAMES))
    return train_x, train_y, test_x, test_y


def _half_white(n: int, size: int = 32) -> torch.Tensor:
    """uint8 images (n, size, size, 3): the left half white, the right half black."""
    x = torch.zeros(n, size, size, 3, dtype=torch.uint8)
    x[:, :, : size // 2] = 255
    return x


# ---------------------------------------------------------------- the image pipeline
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("augment", "image_size"), [(True, None), (True, 48),
                                                     ("inception_crop", 40), (False, 64)])
def test_the_device_pipeline_matches_the_cpu_pipeline(device, augment, image_size):
    n = 600
    ds = ImageArrayDataset(_half_white(n), torch.arange(n), mean=(0.5,) * 3, std=(0.25,) * 3,
                           augment=augment, image_size=image_size)
    placed = ds.to_device(device)
    assert placed.images.device.type == device and ds.images.device.type == "cpu"
    idx = torch.arange(n)
    torch.manual_seed(7)
    ref, y_ref = ds.get_batch(idx)  # the CPU pipeline
    torch.manual_seed(7)
    got, y = placed.get_batch(idx, device=device)  # built where the images live
    assert got.device.type == device and y.device.type == device
    side = image_size or 32
    assert got.shape == ref.shape == (n, 3, side, side) and got.dtype == torch.float32
    assert torch.equal(y.cpu(), y_ref)
    # same random draws (from the CPU generator) on every device: the same batch
    torch.testing.assert_close(got.cpu(), ref, rtol=0, atol=1e-5)
    low, high = (0 - 0.5) / 0.25, (1 - 0.5) / 0.25
    assert float(got.min()) >= low - 1e-5 and float(got.max()) <= high + 1e-5
    # a flipped image is black on the left: the flip rate is 1/2 when augmenting, else 0
    left, right = got[..., : side // 4].mean(dim=(1, 2, 3)), got[..., -side // 4:].mean(
        dim=(1, 2, 3))
    flipped = float((left < right).float().mean())
    if augment:
        assert 0.4 < flipped < 0.6
    else:
        assert flipped == 0.0


def test_inception_boxes_follow_the_vit_recipe():
    torch.manual_seed(0)
    boxes = inception_boxes(4000, 32, 48)
    x0, y0, w, h = boxes.unbind(1)
    assert bool((x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 48).all()
                and (y0 + h <= 32).all() and (w >= 1).all() and (h >= 1).all())
    area = w * h / (32 * 48)
    assert 0.03 < float(area.min()) < 0.1 and float(area.max()) <= 1.0
    ratio = w / h
    inside = (ratio > 0.7) & (ratio < 1.4)  # 3/4 to 4/3 up to the rounding of small boxes
    assert float(inside.float().mean()) > 0.97
    assert float(area.std()) > 0.15  # spread over [0.05, 1], not a fixed crop


def test_inception_crop_resamples_the_drawn_box(monkeypatch):
    """With the boxes fixed, the crop equals cropping and resizing each image by hand."""
    torch.manual_seed(3)
    x = torch.rand(3, 2, 32, 32)
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [5.0, 3.0, 20.0, 24.0],
                          [10.0, 12.0, 16.0, 18.0]], dtype=torch.float64)
    monkeypatch.setattr(_base, "inception_boxes", lambda b, h, w: boxes)
    monkeypatch.setattr(torch, "rand", lambda b, **kw: torch.tensor([0.9, 0.1, 0.9]))
    out = _base.inception_crop_flip(x, 16)
    for i, (x0, y0, w, h) in enumerate(boxes.int().tolist()):
        crop = x[i:i + 1, :, y0:y0 + h, x0:x0 + w]
        ref = torch.nn.functional.interpolate(crop, size=(16, 16), mode="bilinear",
                                              align_corners=False)[0]
        if i == 1:  # rand < 0.5: flipped
            ref = ref.flip(-1)
        torch.testing.assert_close(out[i], ref, rtol=0, atol=1e-5)


def test_large_image_sets_stay_in_cpu_memory():
    ds = ImageArrayDataset(_half_white(4), torch.arange(4), mean=(0.0,) * 3, std=(1.0,) * 3)
    assert ds.to_device("cpu") is ds
    assert ds.to_device("meta", limit=10) is ds  # over the limit: batches are copied instead


# ---------------------------------------------------------------- CIFAR options
def test_cifar_val_from_tail_inception_crop_and_384(tmp_path):
    train_x, train_y, *_ = _write_cifar(tmp_path)
    tail = load_dataset("cifar10", root=tmp_path, val_fraction=0.02, val_from="tail",
                        augment="inception_crop", image_size=384, normalize="half")
    np.testing.assert_array_equal(tail.meta["indices"]["val"], [196, 197, 198, 199])
    np.testing.assert_array_equal(tail.meta["indices"]["train"], np.arange(196))
    np.testing.assert_array_equal(tail.val_labels, train_y[196:])
    assert tail.input_shape == (3, 384, 384) and tail.train.augment == "inception_crop"
    x, _ = tail.train.get_batch([0, 1])
    assert x.shape == (2, 3, 384, 384)
    v, _ = tail.val.get_batch([0])  # evaluation: resized, not cropped
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(train_x[196:197]).permute(0, 3, 1, 2).float() / 255, size=(384, 384),
        mode="bilinear", align_corners=False)
    torch.testing.assert_close(v, (ref - 0.5) / 0.5, rtol=0, atol=1e-5)
    strat = load_dataset("cifar10", root=tmp_path, val_fraction=0.1)
    assert strat.meta["val_from"] == "stratified"
    assert np.bincount(strat.val_labels).tolist() == [2] * 10
    part = load_dataset("cifar10", root=tmp_path, val_fraction=0.1, train_limit=50)
    assert (len(part.train), len(part.val), len(part.test)) == (50, 20, 50)  # train only
    assert np.bincount(part.train_labels).tolist() == [5] * 10
    assert set(part.meta["indices"]["train"]) <= set(strat.meta["indices"]["train"])
    with pytest.raises(ValueError, match="val_from"):
        load_dataset("cifar10", root=tmp_path, val_from="head")
    with pytest.raises(ValueError, match="augment"):
        load_dataset("cifar10", root=tmp_path, augment="inception")


def test_config_names_of_the_cifar_options():
    cfg = load_config(overrides=[
        "dataset={name: cifar10, options: {image_size: 384, augment: inception_crop, "
        "val_fraction: 0.02, val_from: tail}}", "training={steps: 10, checkpoint_every: 3, "
        "compile: true}"])
    assert cfg.dataset.options["augment"] == "inception_crop"
    assert cfg.training.checkpoint_every == 3 and cfg.training.compile is True
    with pytest.raises(ConfigError, match="val_from"):
        load_config(overrides=["dataset={name: cifar10, options: {val_from: random}}"])
    with pytest.raises(ConfigError, match="checkpoint_every"):
        load_config(overrides=["training={steps: 10, checkpoint_every: 0}"])
    assert load_config().training.checkpoint_every == "auto"  # the default
    for bad in ("weekly", "true", "1.5"):
        with pytest.raises(ConfigError, match=r"checkpoint_every.*'auto' or a positive"):
            load_config(overrides=[f"training.checkpoint_every={bad}"])


# ---------------------------------------------------------------- the harness's batch path
def _cifar_config(root: Path) -> dict:
    return {
        "name": "cifar-tiny",
        "dataset": {"name": "cifar10", "options": {"root": str(root), "augment": True,
                                                    "image_size": 16}},
        "model": {"name": "cnn", "options": {"channels": [4]}},
        "objective": {"kind": "emphasize", "emphasized": "cat", "ratio": 9},
        "regimes": ["weighted", "expost"],
        "seeds": [0],
        "training": {"epochs": 1, "batch_size": 64},
        "num_threads": 1,
    }


@pytest.mark.parametrize("device", DEVICES)
def test_the_harness_builds_image_batches_on_the_training_device(tmp_path, monkeypatch,
                                                                   device):
    """The harness calls get_batch with its device on images already placed there."""
    _write_cifar(tmp_path / "cifar")
    calls = []
    real = ImageArrayDataset.get_batch

    def spy(self, indices, device=None):
        calls.append((self.images.device.type, None if device is None else
                      torch.device(device).type, self.augment))
        return real(self, indices, device)

    monkeypatch.setattr(ImageArrayDataset, "get_batch", spy)
    cfg = _cifar_config(tmp_path / "cifar")
    cfg["device"] = device
    out = run_experiment(cfg, output_dir=tmp_path / "run", progress=False)
    assert calls and set(calls) == {(device, device, True), (device, device, False)}
    with ResultStore(out) as s:
        assert {t["status"] for t in s.trainings()} == {"finished"}


# ---------------------------------------------------------------- loaders, compile, eval size
class _MapDigits(torch.utils.data.Dataset):
    """digits as a plain map-style data set (the DataLoader path)."""

    def __init__(self, base: torch.utils.data.TensorDataset) -> None:
        self.x, self.y = base.tensors

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


TINY = {
    "name": "tiny",
    "dataset": {"name": "digits", "options": {"flatten": True}},
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "objective": {"kind": "emphasize", "emphasized": 3, "ratio": 9},
    "regimes": ["weighted", "expost"],
    "seeds": [0],
    "optimizer": {"name": "adam", "lr": 0.01},
    "training": {"epochs": 3, "batch_size": 256},
    "num_threads": 1,
}


def test_one_persistent_loader_per_source_and_training(tmp_path, monkeypatch):
    def factory(*, seed: int) -> DataSplits:
        d = load_dataset("digits", seed=seed, flatten=True)
        return DataSplits("digits_map_speed", _MapDigits(d.train), _MapDigits(d.val),
                          _MapDigits(d.test), d.train_labels, d.val_labels, d.test_labels,
                          d.n_classes, d.class_names, d.input_shape)

    register_dataset("digits_map_speed", overwrite=True)(factory)
    made = []
    real = torch.utils.data.DataLoader.__init__

    def spy(self, *args, **kwargs):
        made.append(kwargs)
        real(self, *args, **kwargs)

    monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", spy)
    cfg = copy.deepcopy(TINY)
    cfg["dataset"] = {"name": "digits_map_speed"}
    cfg["training"] = {**cfg["training"], "num_workers": 1}
    run_experiment(cfg, output_dir=tmp_path / "run", progress=False)
    # two trainings, three intervals of four passes each: one loader per split and training
    assert len(made) == 2 * 3
    assert all(k["persistent_workers"] and k["num_workers"] == 1 for k in made)


def test_compile_wraps_the_model_and_checkpoints_hold_the_plain_one(tmp_path, monkeypatch):
    compiled = []
    real = torch.compile

    def cheap(model, **kwargs):
        out = real(model, backend="eager")
        compiled.append((model, out))
        return out

    monkeypatch.setattr(torch, "compile", cheap)
    seen = []
    real_step = train_module._optimizer_step

    def step(training, x, y):
        seen.append(training.forward)
        return real_step(training, x, y)

    monkeypatch.setattr(train_module, "_optimizer_step", step)
    cfg = copy.deepcopy(TINY)
    cfg["training"] = {**cfg["training"], "compile": True}
    out = run_experiment(cfg, output_dir=tmp_path / "run", progress=False)
    assert len(compiled) == 2  # once per training (weighted and unweighted)
    wrappers = {id(w) for _, w in compiled}
    assert all(w is not m and w._orig_mod is m for m, w in compiled)
    assert seen and {id(f) for f in seen} == wrappers  # every step ran the compiled model
    with ResultStore(out) as s:
        for t in s.trainings():
            ckpt = load_checkpoint(out / t["checkpoint"])
            assert ckpt["model"] and not any(k.startswith("_orig_mod") for k in ckpt["model"])


def test_the_evaluation_batch_size_depends_on_the_device(tmp_path, monkeypatch):
    cfg = load_config(overrides=["training={epochs: 1}"])
    assert cfg.training.eval_batch_size is None
    assert cfg.training.eval_batch_size_on("cpu") == 128
    assert cfg.training.eval_batch_size_on("cuda") == 1024
    # a split in memory with small rows: 4 MiB of input at a time; large rows: 128
    assert cfg.training.eval_batch_size_on("cpu", row_bytes=256) == 16384
    assert cfg.training.eval_batch_size_on("cpu", row_bytes=3 * 224 * 224 * 4) == 128
    assert cfg.training.eval_batch_size_on("cuda", row_bytes=256) == 1024
    given = load_config(overrides=["training={epochs: 1, eval_batch_size: 300}"])
    assert given.training.eval_batch_size_on("cpu") == 300
    assert given.training.eval_batch_size_on("cpu", row_bytes=256) == 300
    sizes, rows = [], []
    real = train_module.predict_log_probs

    def spy(model, source, *, batch_size, precision="fp32"):
        sizes.append(batch_size)
        rows.append(source.row_bytes)
        return real(model, source, batch_size=batch_size, precision=precision)

    monkeypatch.setattr(train_module, "predict_log_probs", spy)
    run_experiment(TINY, output_dir=tmp_path / "run", progress=False)
    assert sizes and set(rows) == {rows[0]} and rows[0] > 0
    assert set(sizes) == {max(128, 4 * 2**20 // rows[0])}


def test_a_split_in_memory_predicts_the_same_in_any_batch_size():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    x = torch.randn(359, 64)
    src = BatchSource(torch.utils.data.TensorDataset(x, torch.zeros(359)), np.zeros(359, np.int64),
                      torch.device("cpu"))
    assert src.row_bytes == 64 * 4
    whole = train_module.predict_log_probs(model, src, batch_size=16384)
    np.testing.assert_allclose(whole, train_module.predict_log_probs(model, src, batch_size=128),
                               rtol=0, atol=1e-6)
    assert whole.shape == (359, 10)


def test_channels_last_only_for_convolutional_nets_on_a_gpu():
    data = load_dataset("digits", seed=0)
    setup = type("Setup", (), {"device": torch.device("cuda"), "data": data})()
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    assert train_module._memory_format(setup, conv) == torch.channels_last
    assert train_module._memory_format(setup, torch.nn.Linear(2, 2)) == torch.contiguous_format
    setup.device = torch.device("cpu")
    assert train_module._memory_format(setup, conv) == torch.contiguous_format
    x = torch.zeros(2, 1, 8, 8)
    src = BatchSource(torch.utils.data.TensorDataset(x, torch.zeros(2)), np.zeros(2, np.int64),
                      torch.device("cpu"), memory_format=torch.channels_last)
    (got, _), = src.batches(torch.arange(2), 2)
    assert got.is_contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------- checkpoints every k
KILL = {
    **TINY,
    "name": "every-k",
    "regimes": ["weighted", "expost", "unweighted_raw"],
    "schedule": {"name": "plateau", "factor": 0.5, "patience": 0},
    "training": {"epochs": 6, "batch_size": 64, "eval_every": 11, "checkpoint_every": 3},
}


def _numbers(run_dir: Path) -> dict:
    with ResultStore(run_dir) as s:
        return {
            "test": s.interval_records("test"),
            "val": s.interval_records("val"),
            "intervals": [{k: v for k, v in r.items()
                           if k not in ("train_seconds", "eval_seconds")} for r in s.intervals()],
            "probs": {(k, i): s.stored_log_probs(k, i).tobytes()
                      for k, i, *_ in s.iter_probabilities()},
        }


@pytest.fixture(scope="module")
def every_one(tmp_path_factory):
    cfg = copy.deepcopy(KILL)
    cfg["training"] = {**cfg["training"], "checkpoint_every": 1}
    return run_experiment(cfg, output_dir=tmp_path_factory.mktemp("k1") / "run", progress=False)


def spy_checkpoints(monkeypatch) -> list[tuple[str, int]]:
    """The (training, interval) of every checkpoint written from now on, in order."""
    written: list[tuple[str, int]] = []
    real = train_module.save_atomic

    def spy(checkpoint, path):
        written.append((checkpoint["train_key"], int(checkpoint["interval"])))
        real(checkpoint, path)

    monkeypatch.setattr(train_module, "save_atomic", spy)
    return written


def test_auto_checkpoints_by_time_and_at_the_last_interval(tmp_path, monkeypatch, every_one):
    """The default ``checkpoint_every: auto``: a training this short writes only its last
    checkpoint; one is due once AUTO_CHECKPOINT_SECONDS, or 20 times the last one's writing
    time, have passed since the previous one."""
    from types import SimpleNamespace

    written = spy_checkpoints(monkeypatch)
    cfg = copy.deepcopy(KILL)
    cfg["training"].pop("checkpoint_every", None)
    out = run_experiment(cfg, output_dir=tmp_path / "run", progress=False)
    with ResultStore(out) as s:
        trainings = s.trainings()
    n = trainings[0]["n_intervals"]
    assert n > 3 and len(trainings) == 2
    assert sorted(written) == sorted((t["train_key"], n) for t in trainings)
    assert _numbers(out) == _numbers(every_one)  # checkpoints change no number

    def due(every, interval, now, last=(100.0, 0.0)):
        training = SimpleNamespace(
            steps=[1] * 10, last_checkpoint=last,
            setup=SimpleNamespace(config=SimpleNamespace(
                training=SimpleNamespace(checkpoint_every=every))))
        return train_module._checkpoint_due(training, SimpleNamespace(interval=interval), now)

    wait = train_module.AUTO_CHECKPOINT_SECONDS
    assert due("auto", 10, 100.0)  # the last interval, always
    assert not due("auto", 4, 100.0 + wait - 0.01) and due("auto", 4, 100.0 + wait)
    assert not due("auto", 4, 100.0 + wait, last=(100.0, 2.0))  # 20 x 2 s to wait
    assert due("auto", 4, 140.0, last=(100.0, 2.0))
    assert due(3, 6, 0.0) and not due(3, 7, 1e9) and due(1, 7, 0.0)


def test_checkpoints_every_k_intervals_and_at_the_last(tmp_path, monkeypatch, every_one):
    written = spy_checkpoints(monkeypatch)
    out = run_experiment(KILL, output_dir=tmp_path / "run", progress=False)
    with ResultStore(out) as s:
        trainings = s.trainings()
    n = trainings[0]["n_intervals"]
    assert n % 3 != 0  # so the last interval is not a multiple of k
    expected = [i for i in range(1, n + 1) if i % 3 == 0 or i == n]
    for t in trainings:
        assert [i for k, i in written if k == t["train_key"]] == expected
        files = sorted(p.name for p in (out / "checkpoints" / t["train_key"]).iterdir())
        assert files == [Path(t["checkpoint"]).name] == [f"ckpt-{n - 1:05d}.pt"]
    assert _numbers(out) == _numbers(every_one)  # checkpoints change no number


@pytest.mark.parametrize("kill_after", [4, 5, 6])
def test_a_killed_training_resumes_exactly_from_its_last_checkpoint(tmp_path, monkeypatch,
                                                                    capsys, every_one,
                                                                    kill_after):
    """Killed after committing interval 4, 5 or 6 (checkpoints after 3 and 6): the resumed
    run redoes the intervals after the checkpoint and ends with the same numbers."""
    real = train_module._commit
    commits = []

    def killing(training, state, rec, evaluation, clock):
        seconds = real(training, state, rec, evaluation, clock)
        commits.append(state.interval)
        if len(commits) == kill_after:
            raise KeyboardInterrupt
        return seconds

    monkeypatch.setattr(train_module, "_commit", killing)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(KILL, output_dir=out, progress=False)
    with ResultStore(out) as s:
        row = next(t for t in s.trainings() if t["status"] == "interrupted")
    assert row["done_intervals"] == kill_after
    assert row["checkpoint"].endswith(f"ckpt-{(kill_after // 3) * 3 - 1:05d}.pt")
    monkeypatch.setattr(train_module, "_commit", real)
    capsys.readouterr()
    resumed = []
    real_restore = train_module.restore

    def spy_restore(*args, **kwargs):
        training, state = real_restore(*args, **kwargs)
        resumed.append(state.interval)
        return training, state

    monkeypatch.setattr(train_module, "restore", spy_restore)
    run_experiment(KILL, output_dir=out, progress=False)
    assert resumed[0] == (kill_after // 3) * 3  # from the checkpoint, not from the start
    assert "warning" not in capsys.readouterr().err  # the expected rewind is not warned about
    assert _numbers(out) == _numbers(every_one)


def test_in_order_gives_the_batches_of_the_whole_split_in_order():
    """Evaluation's batches: a split in memory is sliced, any other is gathered; the same rows."""
    from expost.experiments.batches import BatchSource

    x = torch.arange(30.0).reshape(10, 3)
    labels = np.arange(10) % 2
    src = BatchSource(torch.utils.data.TensorDataset(x, torch.as_tensor(labels)), labels,
                      torch.device("cpu"))
    assert src.x is not None
    got = list(src.in_order(4))
    assert [b.shape[0] for b in got] == [4, 4, 2]
    assert torch.equal(torch.cat(got), x)
    assert got[0].data_ptr() == x.data_ptr()  # a view, no gather

    class Rows(torch.utils.data.Dataset):  # no tensors to slice: through the loader
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return x[i], int(labels[i])

    other = BatchSource(Rows(), labels, torch.device("cpu"))
    assert other.x is None
    assert torch.equal(torch.cat(list(other.in_order(4))), x)


def test_the_heap_is_frozen_while_training_and_reporting_then_thawed(tmp_path, monkeypatch):
    """Python's collector skips the setup's objects during the trainings and the report."""
    import gc

    from expost.report import build as build_module

    seen = []
    real_evaluate, real_build = train_module._evaluate, build_module._build

    def evaluate(training):
        seen.append(("train", gc.get_freeze_count()))
        return real_evaluate(training)

    def build(*args, **kwargs):
        seen.append(("report", gc.get_freeze_count()))
        return real_build(*args, **kwargs)

    monkeypatch.setattr(train_module, "_evaluate", evaluate)
    monkeypatch.setattr(build_module, "_build", build)
    out = run_experiment(TINY, output_dir=tmp_path / "run", progress=False)
    assert gc.get_freeze_count() == 0
    build_module.build_outputs(out, quiet=True)
    assert gc.get_freeze_count() == 0
    assert {kind for kind, _ in seen} == {"train", "report"}
    assert all(count > 10_000 for _, count in seen)  # torch's and numpy's objects at least
