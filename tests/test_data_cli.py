"""``expost data describe`` for every registered data set, and ``expost data cache``."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from expost.cli import main
from expost.experiments.datasets import describe_dataset, format_description

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]


def _chest(root: Path) -> dict[str, Any]:
    rows = ["Image Index,Finding Labels,Follow-up #,Patient ID"]
    for k in range(60):
        name = f"{k:08d}_000.png"
        if k % 10:  # every tenth image absent
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((9, 9), k, np.uint8), mode="L").save(root / "images" / name)
        rows.append(f"{name},{['No Finding', 'Effusion', 'Mass|Nodule'][k % 3]},0,{k}")
    (root / "Data_Entry_2017.csv").write_text("\n".join(rows) + "\n")
    return {"root": str(root), "image_size": 8, "on_missing": "skip"}


def _cifar10(root: Path) -> dict[str, Any]:
    for file, n in (("train_0.npz", 100), ("test.npz", 50)):
        np.savez(root / file, images=np.zeros((n, 32, 32, 3), np.uint8),
                 labels=np.arange(n) % 10, label_names=CIFAR_NAMES)
    return {"root": str(root)}


def _cifar100(root: Path) -> dict[str, Any]:
    d = root / "cifar-100-python"
    d.mkdir()
    for split, n in (("train", 300), ("test", 100)):
        fine = np.arange(n) % 100
        data = np.zeros((n, 3 * 32 * 32), np.uint8)
        (d / split).write_bytes(pickle.dumps({b"fine_labels": fine.tolist(),
                                              b"coarse_labels": (fine // 5).tolist(),
                                              b"data": data}, protocol=2))
    (d / "meta").write_bytes(pickle.dumps({
        b"fine_label_names": [f"f{k}".encode() for k in range(100)],
        b"coarse_label_names": [f"c{k}".encode() for k in range(20)]}, protocol=2))
    return {"root": str(root)}


def _medmnist(root: Path) -> dict[str, Any]:
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = np.zeros((n, 28, 28), np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez(root / "breastmnist.npz", **arrays)
    return {"flag": "breastmnist", "root": str(root)}


def _imagefolder(root: Path) -> dict[str, Any]:
    for split, n in (("train", 8), ("val", 2), ("test", 3)):
        for cls in ("0_no", "1_yes"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((6, 6, 3), i, np.uint8)).save(
                    root / split / cls / f"{i}.png")
    return {"root": str(root), "image_size": 4}


def _npz(root: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    np.savez(root / "mine.npz", x_train=rng.random((30, 3)), y_train=np.arange(30) % 3,
             x_test=rng.random((9, 3)), y_test=np.arange(9) % 3)
    return {"file": str(root / "mine.npz")}


#: Options (and the files they need) for describing every registered data set.
MAKERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "digits": lambda _: {},
    "synthetic": lambda _: {"n_samples": 300},
    "medmnist": _medmnist,
    "cifar10": _cifar10,
    "cifar100": _cifar100,
    "chestxray14": _chest,
    "imagefolder": _imagefolder,
    "npz": _npz,
}


def test_every_registered_data_set_is_described_here():
    # the data sets expost ships, in a fresh interpreter (tests and doctests register others)
    out = subprocess.run([sys.executable, "-c", "from expost.experiments.datasets import "
                          "list_datasets; print(' '.join(list_datasets()))"],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    shipped = set(out.stdout.split())
    assert {"digits", "chestxray14", "imagefolder", "npz"} <= shipped
    assert set(MAKERS) == shipped


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_describe_every_data_set(name, tmp_path, capsys):
    from expost.experiments.datasets import load_dataset

    options = MAKERS[name](tmp_path)
    d = describe_dataset(name, seed=1, **options)
    data = load_dataset(name, seed=1, **({**options, "cache": False}
                                         if name in ("chestxray14", "imagefolder") else options))
    sizes = [len(data.labels(s)) for s in ("train", "val", "test")]
    assert [d["splits"][s]["n"] for s in ("train", "val", "test")] == sizes
    assert d["n"] == sum(sizes) and d["class_names"] == data.class_names
    assert d["input_shape"] == list(data.input_shape)
    for s in ("train", "val", "test"):
        assert list(d["splits"][s]["counts"].values()) == data.class_counts(s).tolist()
        np.testing.assert_allclose(list(d["splits"][s]["rates"].values()), data.class_prior(s))
    json.dumps(d)  # JSON-safe
    text = format_description(d)
    assert text.startswith(f"{name} (seed 1): {d['n']} examples, train {sizes[0]} / val "
                           f"{sizes[1]} / test {sizes[2]}")
    sets = [f"--set=dataset.options.{k}={v}" for k, v in options.items()]
    code, out, err = _cli(capsys, "data", "describe", name, "--seed", "1", *sets)
    assert code == 0, err
    assert out.strip() == text


def test_describe_reports_partial_files_cache_and_source(tmp_path, capsys):
    options = _chest(tmp_path)
    d = describe_dataset("chestxray14", **options)
    assert d["files"] == {"listed": 40, "found": 36, "missing": 4, "used": 36}
    assert d["source"]["root"] == str(tmp_path.resolve()) and "$EXPOST_DATA" in d["source"]
    assert d["cache"]["complete"] is False and d["cache"]["done"] == 0
    assert not (tmp_path / ".expost-cache" / Path(d["cache"]["path"]).name).exists()
    text = format_description(d)
    assert "files: listed 40, found 36, missing 4, used 36" in text
    assert "image cache: not built" in text
    assert "warning: class 'Atelectasis' has no test example" in text
    code, out, _ = _cli(capsys, "data", "describe", "chestxray14", "--json",
                        *(f"--set=dataset.options.{k}={v}" for k, v in options.items()))
    assert code == 0 and json.loads(out)["files"]["missing"] == 4


def test_data_cache_builds_once_then_describe_sees_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("EXPOST_CACHE", raising=False)
    options = _imagefolder(tmp_path / "imgs")
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"name": "mine", "dataset": {"name": "imagefolder",
                                                                  "options": options},
                                      "model": {"name": "mlp"}, "training": {"epochs": 1}}))
    code, out, err = _cli(capsys, "data", "cache", str(config), "--workers", "2")
    assert code == 0, err
    assert "26 images (4, 4, 3)" in out and "decoded 26 now" in out
    assert "Caching imagefolder-4-RGB images" in err  # the progress bar
    code, out, _ = _cli(capsys, "data", "cache", str(config))
    assert code == 0 and "decoded 0 now" in out and "complete already" in out
    code, out, _ = _cli(capsys, "data", "describe", "imagefolder",
                        f"--set=dataset.options.root={options['root']}",
                        "--set=dataset.options.image_size=4")
    assert code == 0 and "image cache: complete" in out
    code, out, _ = _cli(capsys, "data", "cache", str(config), "--set",
                        "dataset.options.image_size=5")
    assert code == 0 and "decoded 26 now" in out  # another size: another cache
    digits = tmp_path / "digits.yaml"
    digits.write_text(yaml.safe_dump({"name": "d", "dataset": {"name": "digits"},
                                      "model": {"name": "mlp"}, "training": {"epochs": 1}}))
    code, out, _ = _cli(capsys, "data", "cache", str(digits))
    assert code == 0 and "nothing to build" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["data", "describe", "digits", "--set", "dataset.options.flaten=true"],
     "Unknown option 'flaten' for the dataset 'digits'"),
    (["data", "describe", "digits", "--set", "model.name=cnn"], "data describe reads no other"),
    (["data", "describe", "digits", "--set", "flatten"], "expected dataset.options.KEY=VALUE"),
    (["data", "describe", "nope"], "one of the registered datasets"),
    (["data", "describe", "imagefolder"], "needs the option(s) ['root']"),
    (["data", "cache", "absent.yaml"], "absent.yaml"),
    (["data", "cache", "x.yaml", "--workers", "0"], "expected a whole number >= 1"),
    (["data"], "required"),
])
def test_data_errors_are_one_line(argv, message, capsys):
    code, _, err = _cli(capsys, *argv)
    assert code == 1 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
