"""Partial ChestX-ray14 data (on_missing), the metadata torchxrayvision ships, and the check of
the class whose recall is reported."""

from __future__ import annotations

import gzip
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from expost.experiments.config import ConfigError, load_config
from expost.experiments.datasets import DataSplits, data_provenance, load_dataset
from expost.experiments.datasets._base import tensor_dataset
from expost.experiments.datasets.chestxray14 import CHESTXRAY14_CLASSES, shipped_metadata
from expost.experiments.objective import reported_recall_class, resolve_objective
from expost.experiments.runners import prepare_experiment
from expost.experiments.store import ResultStore

#: The header of the official Data_Entry_2017.csv (the bracketed names hold commas).
OFFICIAL_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
                   "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")


def _official_csv(path: Path, n_patients: int = 120, seed: int = 3) -> list[tuple[str, str, int]]:
    """Rows in the official format: 1-5 images per patient, about 1/4 multi-label."""
    rng = np.random.default_rng(seed)
    rows, lines = [], [OFFICIAL_HEADER]
    for patient in range(1, n_patients + 1):
        for follow in range(int(rng.integers(1, 6))):
            name = f"{patient:08d}_{follow:03d}.png"
            if rng.random() < 0.25:
                label = "|".join(rng.choice(CHESTXRAY14_CLASSES[:14], 2, replace=False))
            else:
                label = CHESTXRAY14_CLASSES[int(rng.integers(0, 15))]
            rows.append((name, label, patient))
            lines.append(f"{name},{label},{follow},{patient},{int(rng.integers(20, 80))},"
                         f"{'MF'[patient % 2]},PA,2500,2048,0.168,0.168,")
    path.write_text("\n".join(lines) + "\n")
    return rows


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((10, 12), value % 256, np.uint8), mode="L").save(path)


def _split_of(data: DataSplits) -> dict[str, str]:
    return {name: split for split, names in data.meta["images"].items() for name in names}


def test_on_missing_skip_keeps_every_present_image_in_its_full_metadata_split(tmp_path):
    csv = tmp_path / "Data_Entry_2017.csv"
    rows = _official_csv(csv)
    full_root, part_root = tmp_path / "full", tmp_path / "part"
    rng = np.random.default_rng(0)
    present = set()
    for k, (name, _, patient) in enumerate(rows):
        archive = "images_001" if patient <= 60 else "images_002"
        _png(full_root / archive / "images" / name, k)
        # the partial copy: the first archive only, and a few of its images lost
        if archive == "images_001" and rng.random() < 0.85:
            _png(part_root / archive / "images" / name, k)
            present.add(name)
    single = {n for n, lab, _ in rows if "|" not in lab}
    full = load_dataset("chestxray14", root=full_root, csv=csv, image_size=8, cache=False)
    assert full.meta["files"] == {"listed": len(single), "found": len(single), "missing": 0,
                                  "used": len(single)}

    with pytest.raises(FileNotFoundError) as err:
        load_dataset("chestxray14", root=part_root, csv=csv, image_size=8, cache=False)
    n_found = len(present & single)
    message = str(err.value)
    assert f"found {n_found}, missing {len(single) - n_found}" in message
    assert "on_missing=skip" in message and "--set dataset.options.on_missing=skip" in message

    part = load_dataset("chestxray14", root=part_root, csv=csv, image_size=8, cache=False,
                        on_missing="skip")
    full_split, part_split = _split_of(full), _split_of(part)
    assert set(part_split) == present & single
    assert all(part_split[n] == full_split[n] for n in part_split)
    assert part.meta["files"] == {"listed": len(single), "found": n_found,
                                  "missing": len(single) - n_found, "used": n_found}
    for split in ("train", "val", "test"):  # labels, patients and files stay aligned
        ds = getattr(part, split)
        assert [Path(p).name for p in ds.paths] == part.meta["images"][split]
        assert len(part.labels(split)) == len(ds) == len(part.meta["patients"][split])
    assert data_provenance(part)["files"]["used"] == n_found

    # filtering the metadata by hand instead re-splits the data: some images move
    filtered = tmp_path / "filtered.csv"
    keep = [line for line in csv.read_text().splitlines()
            if line.split(",")[0] in present or line.startswith("Image Index")]
    filtered.write_text("\n".join(keep) + "\n")
    resplit = _split_of(load_dataset("chestxray14", root=part_root, csv=filtered, image_size=8,
                                     cache=False))
    assert any(resplit[n] != full_split[n] for n in resplit)


def test_on_missing_skip_with_nothing_present_and_a_bad_value(tmp_path):
    csv = tmp_path / "Data_Entry_2017.csv"
    _official_csv(csv, n_patients=10)
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="found 0, missing"):
        load_dataset("chestxray14", root=tmp_path, on_missing="skip", cache=False)
    with pytest.raises(ValueError, match="on_missing"):
        load_dataset("chestxray14", root=tmp_path, on_missing="drop")


def test_partial_data_provenance_is_stored_with_the_run(tmp_path):
    csv = tmp_path / "data" / "Data_Entry_2017.csv"
    csv.parent.mkdir()
    rows = _official_csv(csv, n_patients=150, seed=4)
    for k, (name, _, patient) in enumerate(rows):
        if patient % 5:  # a fifth of the patients' images absent
            _png(tmp_path / "data" / "images" / name, k)
    config = load_config({
        "name": "partial",
        "dataset": {"name": "chestxray14", "options": {
            "root": str(tmp_path / "data"), "image_size": 8, "on_missing": "skip",
            "cache": False}},
        "model": {"name": "mlp", "options": {"hidden": [4]}},
        "objective": {"kind": "emphasize", "emphasized": "No Finding", "ratio": 9},
        "regimes": ["weighted", "expost"], "seeds": 1, "training": {"epochs": 1},
        "device": "cpu",
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rare classes absent from the tiny splits
        setup, _ = prepare_experiment(config, tmp_path / "run", exists=False)
    setup.store.close()
    with ResultStore(tmp_path / "run") as store:
        info = store.experiment_info()["dataset"]
    files = info["files"]
    assert files["missing"] > 0 and files["used"] == files["found"]
    assert files["used"] == info["n_train"] + info["n_val"] + info["n_test"]
    assert info["source"]["root"] == str((tmp_path / "data").resolve())


def test_metadata_from_an_installed_torchxrayvision_without_importing_it(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "torchxrayvision"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('torchxrayvision must not be imported')\n")
    plain = tmp_path / "plain.csv"
    rows = _official_csv(plain, n_patients=30)
    (pkg / "data" / "Data_Entry_2017_v2020.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
    root = tmp_path / "xray"
    for k, (name, _, _) in enumerate(rows):
        _png(root / "images" / name, k)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "torchxrayvision", raising=False)
    assert shipped_metadata() == pkg / "data" / "Data_Entry_2017_v2020.csv.gz"
    data = load_dataset("chestxray14", root=root, image_size=8, cache=False)
    assert data.meta["csv"] == str((pkg / "data" / "Data_Entry_2017_v2020.csv.gz").resolve())
    assert data.meta["files"]["used"] == sum("|" not in lab for _, lab, _ in rows)
    assert "torchxrayvision" not in sys.modules
    # a CSV beside the images wins over the shipped one
    shutil.copy(plain, root / "Data_Entry_2017.csv")
    assert load_dataset("chestxray14", root=root, image_size=8,
                        cache=False).meta["csv"] == str((root / "Data_Entry_2017.csv").resolve())


def test_without_torchxrayvision_or_a_csv_the_error_says_where_it_looked(tmp_path, monkeypatch):
    import expost.experiments.datasets.chestxray14 as chest

    monkeypatch.setattr(chest, "shipped_metadata", lambda: None)
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=rf"looked in: {tmp_path}\).*torchxrayvision"):
        load_dataset("chestxray14", root=tmp_path)


# ---------------------------------------------------------------- the reported recall
def _splits(train: list[int], val: list[int], test: list[int]) -> DataSplits:
    parts = {}
    for split, counts in (("train", train), ("val", val), ("test", test)):
        y = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
        parts[split] = (tensor_dataset(np.zeros((y.size, 2)), y), y)
    return DataSplits("toy", parts["train"][0], parts["val"][0], parts["test"][0],
                      parts["train"][1], parts["val"][1], parts["test"][1], len(train),
                      ["a", "b", "c"], (2,))


def _objective(text: str, data: DataSplits):
    return resolve_objective(load_config(overrides=[f"objective={text}"]).objective, data)


def test_an_emphasised_class_without_evaluation_examples_is_a_clear_error():
    data = _splits([50, 30, 5], [5, 3, 0], [10, 6, 2])
    obj = _objective("{kind: emphasize, emphasized: c}", data)
    with pytest.warns(UserWarning, match=r"validation: \['c'\]"), \
            pytest.raises(ConfigError, match=r"emphasised class 'c' has no example in the "
                                             r"validation split .*test: 2, validation: 0"):
        reported_recall_class(obj, data)
    with pytest.warns(UserWarning):
        assert reported_recall_class(_objective("{kind: emphasize, emphasized: b}", data),
                                     data) == 1


def test_inverse_prior_reports_the_rarest_class_present_in_both_splits():
    full = _splits([50, 30, 5], [5, 3, 1], [10, 6, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        assert reported_recall_class(_objective("{kind: inverse_prior}", full), full) == 2
    data = _splits([50, 30, 5], [5, 3, 1], [10, 6, 0])
    with pytest.warns(UserWarning) as record:
        assert reported_recall_class(_objective("{kind: inverse_prior}", data), data) == 1
    text = " ".join(str(w.message) for w in record)
    assert "emphasises no class" in text and "'b'" in text and "'c'" in text
    none = _splits([50, 30, 5], [5, 0, 0], [0, 6, 2])
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="No class"):
        reported_recall_class(_objective("{kind: inverse_prior}", none), none)
