"""configs/paper/: one config per row of the paper's Table 1, each with the paper's recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from expost.experiments.config import load_config, parse_yaml
from expost.experiments.datasets import dataset_options

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs" / "paper"

#: Table 1's rows: file -> (data set, emphasised class or None for inverse-probability weights)
ROWS = {
    "chestxray14_pneumonia.yaml": ("chestxray14", "Pneumonia"),
    "chestxray14_cardiomegaly.yaml": ("chestxray14", "Cardiomegaly"),
    "chestxray14_infiltration.yaml": ("chestxray14", "Infiltration"),
    "chestxray14_pneumothorax.yaml": ("chestxray14", "Pneumothorax"),
    "chestxray14_inverse_prior.yaml": ("chestxray14", None),
    "cifar10_cat.yaml": ("cifar10", "cat"),
    "cifar100_maple_tree.yaml": ("cifar100", "maple_tree"),
}
#: the documented faster variants of the CIFAR rows (224 px instead of the ViT repository's 384)
VARIANTS = {"cifar10_cat_224.yaml": "cifar10_cat.yaml",
            "cifar100_maple_tree_224.yaml": "cifar100_maple_tree.yaml"}
FILES = sorted(PAPER.glob("*.yaml"))


def _raw(name):
    return parse_yaml((PAPER / name).read_text(), name)


def test_one_file_per_row_of_table_1_and_the_224_variants():
    assert sorted(p.name for p in FILES) == sorted([*ROWS, *VARIANTS])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_paper_config_loads(path):
    if path.name.startswith("cifar") and "val_from" not in dataset_options("cifar10"):
        pytest.skip("needs the cifar options of branch wt-speed")
    cfg = load_config(path)
    assert cfg.regimes == ["weighted", "expost"] and cfg.seeds == [0, 1, 2, 3, 4]
    dataset, emphasized = ROWS[VARIANTS.get(path.name, path.name)]
    assert cfg.dataset.name == dataset
    if emphasized is None:
        assert cfg.objective.kind == "inverse_prior"
    else:
        assert (cfg.objective.kind, cfg.objective.emphasized, cfg.objective.ratio) == (
            "emphasize", emphasized, 99)


@pytest.mark.parametrize("name", [*ROWS, *VARIANTS])
def test_each_row_emphasises_its_class_99_to_1_with_both_regimes_and_five_seeds(name):
    raw = _raw(name)
    dataset, emphasized = ROWS[VARIANTS.get(name, name)]
    assert raw["dataset"]["name"] == dataset
    assert raw["regimes"] == ["weighted", "expost"] and raw["seeds"] == 5
    if emphasized is None:
        assert raw["objective"] == {"kind": "inverse_prior"}
    else:
        assert raw["objective"] == {"kind": "emphasize", "emphasized": emphasized, "ratio": 99}
    assert raw["model"]["options"]["pretrained"] is True
    names = [_raw(n)["name"] for n in [*ROWS, *VARIANTS]]
    assert len(set(names)) == len(names)  # each row has its own run directory


@pytest.mark.parametrize("name", [n for n in ROWS if n.startswith("chestxray14")])
def test_chest_xray_rows_follow_appendix_d1(name):
    raw = _raw(name)
    assert raw["model"]["name"] == "densenet121"
    assert raw["dataset"]["options"] == {"image_size": 224, "augment": True}
    assert raw["optimizer"] == {"name": "adam", "lr": 1e-4, "betas": [0.9, 0.999]}
    assert (raw["schedule"]["name"], raw["schedule"]["factor"]) == ("plateau", 0.1)
    t = raw["training"]
    assert (t["epochs"], t["batch_size"], t["eval_every"]) == (40, 16, "epoch")


@pytest.mark.parametrize("name", [n for n in [*ROWS, *VARIANTS] if n.startswith("cifar")])
def test_cifar_rows_follow_appendix_d2_and_the_vit_repository(name):
    raw = _raw(name)
    assert raw["model"]["name"] == "vit"
    assert raw["dataset"]["options"] == {
        "image_size": 224 if name in VARIANTS else 384, "normalize": "half",
        "augment": "inception_crop", "val_fraction": 0.02, "val_from": "tail"}
    assert raw["optimizer"] == {"name": "sgd", "lr": 0.03, "momentum": 0.9, "weight_decay": 0.0}
    assert raw["schedule"] == {"name": "cosine", "warmup_steps": 500}
    t = raw["training"]
    assert (t["steps"], t["batch_size"], t["eval_every"], t["grad_clip"]) == (10000, 512, 100, 1.0)
    text = (PAPER / name).read_text()
    assert "What the paper gives" in text and "What it leaves open" in text
    if name in VARIANTS:  # a variant differs from its row only in the image size and name
        row = _raw(VARIANTS[name])
        for key in ("model", "objective", "optimizer", "schedule", "training", "precision"):
            assert raw[key] == row[key], key


def test_readme_gives_the_command_for_every_row():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The paper's experiments", 1)[1].split("\n## ", 1)[0]
    for name in [*ROWS, *VARIANTS]:
        assert f"configs/paper/{name}" in section, name
