"""The experiment config: validation messages, the embedded default, hashing, the objective."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import expost
from expost.experiments.config import (
    ConfigError,
    config_hash,
    default_config,
    default_config_text,
    load_config,
)
from expost.experiments.objective import resolve_objective

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "name": "tiny",
    "dataset": {"name": "digits", "options": {"flatten": True}},
    "model": {"name": "mlp", "options": {"hidden": [8]}},
    "objective": {"kind": "emphasize", "emphasized": 3, "ratio": 99},
    "training": {"epochs": 2, "batch_size": 64},
}


def _with(**edits):
    """BASE with dotted-path edits; a value of ... deletes the key."""
    cfg = copy.deepcopy(BASE)
    for path, value in edits.items():
        keys = path.split("__")
        node = cfg
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if value is ...:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return cfg


# (config, substrings every one of which the message must contain)
BAD_CONFIGS = [
    pytest.param(_with(epochs=3), ["(top level)", "unknown key 'epochs'", "allowed keys",
                                   "training"], id="unknown-top-level-key"),
    pytest.param(_with(training__epoch=3), ["training", "unknown key 'epoch'",
                                            "did you mean 'epochs'"], id="typo-nested-key"),
    pytest.param(_with(optimizer={"name": "adamx"}), ["optimizer", "'adam'", "'adamw'", "'sgd'",
                                                      "adamx"], id="unknown-optimizer"),
    pytest.param(_with(optimizer={"name": "adam", "lr": -0.1}),
                 ["optimizer.lr", "greater than 0", "-0.1"], id="negative-lr"),
    pytest.param(_with(optimizer={"name": "sgd", "momentum": 0.9, "betas": [0.9, 0.99]}),
                 ["optimizer", "unknown key 'betas'", "momentum"], id="adam-key-for-sgd"),
    pytest.param(_with(optimizer={"name": "sgd", "nesterov": True}),
                 ["optimizer", "nesterov needs a positive momentum"], id="nesterov-no-momentum"),
    pytest.param(_with(regimes=["weighted", "expost_weighting"]),
                 ["regimes[1]", "'weighted'", "'metacost'", "expost_weighting"],
                 id="unknown-regime"),
    pytest.param(_with(regimes=["weighted", "weighted"]), ["regimes", "must not repeat"],
                 id="repeated-regime"),
    pytest.param(_with(regimes=[]), ["regimes", "at least 1"], id="no-regime"),
    pytest.param(_with(seeds=0), ["seeds", "positive number of seeds", "0"], id="zero-seeds"),
    pytest.param(_with(seeds=[1, 1]), ["seeds", "must not repeat"], id="repeated-seed"),
    # coerced, these repeated a seed past the check (0 and 0.0) or were a seed nobody wrote
    pytest.param(_with(seeds=[0, 0.0, 1]), ["seeds", "must list whole numbers, got float 0.0 at "
                                             "position 1"], id="float-seed"),
    pytest.param(_with(seeds=[0, "0"]), ["seeds", "got the string '0' at position 1"],
                 id="string-seed"),
    pytest.param(_with(seeds=[True]), ["seeds", "got bool True at position 0"], id="bool-seed"),
    pytest.param(_with(seeds=[-1]), ["seeds[0]", "greater than or equal to 0"],
                 id="negative-seed"),
    pytest.param(_with(training__steps=100), ["training", "exactly one of 'epochs' and 'steps'"],
                 id="epochs-and-steps"),
    pytest.param(_with(training__epochs=...), ["training", "exactly one of 'epochs'"],
                 id="no-length"),
    pytest.param(_with(training__eval_every="weekly"),
                 ["training.eval_every", "'epoch' or a positive number of steps", "weekly"],
                 id="bad-eval-every"),
    pytest.param(_with(training__batch_size=0), ["training.batch_size", "greater than 0"],
                 id="zero-batch"),
    pytest.param(_with(dataset={"name": "mnist"}), ["dataset", "unknown dataset 'mnist'",
                                                    "digits", "cifar10"], id="unknown-dataset"),
    pytest.param(_with(dataset__options={"flaten": True}),
                 ["dataset", "Unknown option 'flaten'", "allowed options: flatten: bool"],
                 id="unknown-dataset-option"),
    pytest.param(_with(dataset__options={"flatten": 3}),
                 ["dataset", "option 'flatten'", "must be bool", "3"], id="mistyped-dataset-option"),
    pytest.param(_with(model={"name": "resnet"}), ["model", "unknown model 'resnet'", "mlp"],
                 id="unknown-model"),
    pytest.param(_with(model__options={"hidden": "wide"}),
                 ["model", "option 'hidden'", "wide", "allowed options"],
                 id="mistyped-model-option"),
    pytest.param(_with(objective={"kind": "costs"}),
                 ["objective", "'emphasize'", "'matrix'", "'inverse_prior'", "costs"],
                 id="unknown-objective-kind"),
    pytest.param(_with(objective={"kind": "emphasize", "ratio": 0}),
                 ["objective.ratio", "greater than 0"], id="zero-ratio"),
    pytest.param(_with(objective={"kind": "emphasize", "emphasized": 2.5}),
                 ["objective.emphasized", "class index, a class name or 'hardest'"],
                 id="float-class"),
    pytest.param(_with(objective={"kind": "class_weights", "weights": [1, -2]}),
                 ["objective.weights", "[1] must be a positive finite weight", "-2"],
                 id="negative-weight"),
    pytest.param(_with(objective={"kind": "class_weights", "weights": "heavy"}),
                 ["objective.weights", "list of class weights", "heavy"], id="weights-string"),
    pytest.param(_with(objective={"kind": "matrix", "utility": [[1, 0, 1], [0, 1, 0]]}),
                 ["objective", "square"], id="non-square-matrix"),
    pytest.param(_with(objective={"kind": "matrix", "utility": [[1, -1], [0, 1]]}),
                 ["objective", "nonnegative"], id="negative-utility"),
    pytest.param(_with(objective={"kind": "matrix", "utility": [[1, 0], [0, 1]],
                                  "costs": [[0, 1], [1, 0]]}),
                 ["objective", "exactly one of 'utility' and 'costs'"], id="utility-and-costs"),
    pytest.param(_with(objective={"kind": "matrix", "utility": [[1, 0], [0, 0]]}),
                 ["objective", "nondegenerate"], id="degenerate-utility"),
    pytest.param(_with(schedule={"name": "plateau", "factor": 2}),
                 ["schedule.factor", "less than 1"], id="plateau-factor"),
    pytest.param(_with(schedule={"name": "cosine", "warmup": 10}),
                 ["schedule", "unknown key 'warmup'", "warmup_steps"], id="cosine-key"),
    pytest.param(_with(precision="fp16"), ["precision", "'fp32' or 'bf16'", "fp16"],
                 id="bad-precision"),
    pytest.param(_with(device="gpu"), ["device", "'auto', 'cpu', 'cuda'", "gpu"],
                 id="bad-device"),
    pytest.param(_with(device="cuda:99999999999999999999"), ["device", "N below 10000"],
                 id="huge-device-index"),  # was torch's 'Could not parse device index'
    pytest.param(_with(optimizer={"name": "adam", "eps": float("inf")}), ["optimizer.eps"],
                 id="infinite-eps"),  # was accepted: no step moved the weights
    pytest.param(_with(dataset=...), ["dataset", "required key missing"], id="missing-dataset"),
    pytest.param(_with(training="long"), ["training", "must be a mapping"], id="section-string"),
    pytest.param(_with(name="my run"), ["name", "pattern"], id="bad-name"),
    pytest.param(_with(num_threads=0), ["num_threads", "greater than 0"], id="zero-threads"),
]


@pytest.mark.parametrize(("config", "needles"), BAD_CONFIGS)
def test_bad_config_catalogue(config, needles):
    before = copy.deepcopy(config)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    message = str(info.value)
    assert message.startswith("Invalid experiment config (mapping):")
    for needle in needles:
        assert needle in message, f"{needle!r} not in:\n{message}"
    assert info.value.errors, "the structured (path, message) list is filled"
    assert config == before, "load_config must not modify its input"


def test_all_errors_are_reported_at_once():
    cfg = _with(optimizer={"name": "adam", "lr": 0}, training__batch_size=-1, precision="x")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    paths = [p for p, _ in info.value.errors]
    assert {"optimizer.lr", "training.batch_size", "precision"} <= set(paths)


def test_yaml_errors_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listing)
    with pytest.raises(TypeError, match="`source` must be"):
        load_config(3.5)  # type: ignore[arg-type]


def test_yaml_that_is_no_config_is_named_so(tmp_path):
    """Each gave a bare Python message naming no file: a list as a key ('unhashable type:
    list'), thousands of nested brackets ('maximum recursion depth exceeded'), a YAML date
    beside --set ('Object of type date is not JSON serializable'); a folder 'did not
    exist', and a config read through a pipe (<(...)) 'did not exist' either."""
    import os
    import threading

    (tmp_path / "key.yaml").write_text("name: x\n[1, 2]: 3\n")
    with pytest.raises(ConfigError, match=r"key\.yaml\): a key on line 2 is a list"):
        load_config(tmp_path / "key.yaml")
    (tmp_path / "deep.yaml").write_text("x: " + "[" * 10000 + "]" * 10000 + "\n")
    with pytest.raises(ConfigError, match=r"deep\.yaml\): nested too deeply"):
        load_config(tmp_path / "deep.yaml")
    (tmp_path / "date.yaml").write_text("name: 2024-01-01\n")
    with pytest.raises(ConfigError, match="a value that is not text, a number, a list or a "
                                          "mapping"):
        load_config(tmp_path / "date.yaml", overrides=["seeds=1"])
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ConfigError, match="is a folder; expected a YAML file"):
        load_config(tmp_path / "dir.yaml")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    text = (ROOT / "configs" / "default.yaml").read_text()
    writer = threading.Thread(target=fifo.write_text, args=(text,), daemon=True)
    writer.start()
    assert load_config(fifo) == load_config(ROOT / "configs" / "default.yaml")
    writer.join(10)


def test_embedded_default_is_shipped_and_valid():
    text = (ROOT / "configs" / "default.yaml").read_text()
    assert text == default_config_text()
    # shipped once: the repository's configs/default.yaml is the package data file
    shipped = ROOT / "src" / "expost" / "experiments" / "default.yaml"
    assert (ROOT / "configs" / "default.yaml").resolve() == shipped.resolve()
    cfg = default_config()
    assert cfg == load_config(ROOT / "configs" / "default.yaml")
    assert cfg.dataset.name == "digits"
    assert cfg.objective.kind == "emphasize" and cfg.objective.emphasized == "hardest"
    assert cfg.objective.ratio == 99
    assert cfg.regimes == ["weighted", "expost", "unweighted_raw"]
    assert cfg.seeds == [0, 1, 2, 3, 4]
    assert cfg.training.epochs >= 30 and cfg.training.eval_every == "epoch"


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.seeds and cfg.regimes
    assert "weighted" in cfg.regimes and "expost" in cfg.regimes


def test_paper_recipes_in_shipped_configs():
    chest = load_config(ROOT / "configs" / "chestxray14.yaml")
    assert chest.model.name == "densenet121"
    assert (chest.optimizer.name, chest.optimizer.lr, tuple(chest.optimizer.betas)) == (
        "adam", 1e-4, (0.9, 0.999))
    assert chest.schedule.name == "plateau" and chest.schedule.factor == 0.1
    assert (chest.training.epochs, chest.training.batch_size) == (40, 16)
    assert chest.dataset.options["image_size"] == 224 and len(chest.seeds) == 5
    for name, cls in (("cifar10_vit.yaml", "cat"), ("cifar100_vit.yaml", "maple_tree")):
        vit = load_config(ROOT / "configs" / name)
        assert vit.model.name == "vit" and vit.objective.emphasized == cls
        assert (vit.optimizer.name, vit.optimizer.lr, vit.optimizer.momentum) == ("sgd", 0.03, 0.9)
        assert vit.schedule.name == "cosine" and vit.schedule.warmup_steps > 0
        assert (vit.training.batch_size, vit.training.eval_every, vit.training.grad_clip) == (
            512, 100, 1.0)


def test_overrides_and_short_forms():
    cfg = load_config(BASE, overrides=["seeds=3", "optimizer=sgd", "optimizer.lr=0.5",
                                       "schedule=cosine", "training.eval_every=7"])
    assert cfg.seeds == [0, 1, 2]
    assert (cfg.optimizer.name, cfg.optimizer.lr) == ("sgd", 0.5)
    assert cfg.schedule.name == "cosine" and cfg.training.eval_every == 7
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        load_config(BASE, overrides=["seeds"])
    assert load_config(BASE, overrides=["objective=inverse_prior"]).objective.kind == (
        "inverse_prior")


def test_config_hash():
    a = load_config(BASE)
    assert config_hash(a) == config_hash(load_config(copy.deepcopy(BASE)))
    assert config_hash(a) == config_hash(load_config(BASE, overrides=["output_dir=/elsewhere"]))
    assert config_hash(a) != config_hash(load_config(BASE, overrides=["optimizer.lr=0.01"]))
    # how often it checkpoints changes no result: a run resumes with another interval
    assert config_hash(a) == config_hash(load_config(BASE, overrides=["training.checkpoint_every=4"]))
    assert config_hash(a) != config_hash(load_config(BASE, overrides=["training.epochs=7"]))
    assert len(config_hash(a)) == 64


def test_fused_adam_is_the_default_and_its_absence_keeps_the_old_hash():
    import hashlib
    import json

    import torch

    from expost.experiments.config import unfused_hash
    from expost.experiments.schedule import build_optimizer, fused_supported

    a = load_config(BASE)
    assert a.optimizer.fused is True
    loop = load_config(BASE, overrides=["optimizer.fused=false"])
    assert config_hash(a) != config_hash(loop) == unfused_hash(a)
    assert unfused_hash(loop) is None
    # the hash of a config written before the option existed: no "fused" key at all
    payload = loop.model_dump(mode="json", exclude={"output_dir": True,
                                                    "training": {"checkpoint_every": True}})
    del payload["optimizer"]["fused"]
    legacy = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    assert config_hash(loop) == legacy.hexdigest()
    net = torch.nn.Linear(3, 2)
    assert build_optimizer(a, net.parameters()).defaults["fused"] is True
    assert build_optimizer(loop, net.parameters()).defaults["fused"] is None
    adamw = load_config(BASE, overrides=["optimizer={name: adamw}"])
    assert build_optimizer(adamw, net.parameters()).defaults["fused"] is True
    sgd = load_config(BASE, overrides=["optimizer={name: sgd}"])
    assert "fused" not in sgd.optimizer.model_dump() and unfused_hash(sgd) is None
    # a device without the fused kernel, or no parameters: the for-loop Adam
    assert not fused_supported(list(torch.nn.Linear(3, 2, device="meta").parameters()))
    assert not fused_supported([])
    assert fused_supported([{"params": list(net.parameters())}])
    with pytest.raises(ConfigError, match="fused"):
        load_config(BASE, overrides=["optimizer.fused=maybe"])


def test_config_is_frozen():
    cfg = load_config(BASE)
    with pytest.raises(Exception, match="frozen"):
        cfg.name = "other"  # type: ignore[misc]


# ---------------------------------------------------------------- the objective
def _data(labels, names=None, meta=None):
    labels = np.asarray(labels, dtype=np.int64)
    m = int(labels.max()) + 1
    return SimpleNamespace(name="fake", train_labels=labels, n_classes=m, meta=meta or {},
                           class_names=names or [f"c{k}" for k in range(m)])


def _eq21_holds(u, prior):
    neglog = -np.log(prior)
    return np.isclose(neglog @ u.matrix @ prior, prior @ neglog, rtol=1e-12)


def test_emphasize_objective_by_name_and_index():
    data = _data([0, 0, 0, 1, 2, 2], names=["a", "b", "c"])
    prior = np.array([3, 1, 2]) / 6
    for which in (1, "b"):
        cfg = load_config(_with(objective={"kind": "emphasize", "emphasized": which, "ratio": 9}))
        r = resolve_objective(cfg.objective, data)
        w = r.utility.class_weights
        assert r.emphasized == 1
        assert np.isclose(w[1] / w[0], 9.0) and np.isclose(w[2], w[0])
        assert _eq21_holds(r.utility, prior)
        assert np.allclose(r.prior, prior)
    with pytest.raises(ConfigError, match=r"'z' is not a class .*classes: a, b, c"):
        resolve_objective(load_config(_with(objective={"kind": "emphasize",
                                                       "emphasized": "z"})).objective, data)
    with pytest.raises(ConfigError, match="class index 7 is out of range"):
        resolve_objective(load_config(_with(objective={"kind": "emphasize",
                                                       "emphasized": 7})).objective, data)


def test_other_objectives():
    data = _data([0, 1, 1, 2, 2, 2])
    prior = np.array([1, 2, 3]) / 6
    cw = resolve_objective(load_config(_with(
        objective={"kind": "class_weights", "weights": {"c2": 4.0}})).objective, data)
    assert np.allclose(cw.utility.class_weights / cw.utility.class_weights[0], [1, 1, 4])
    with pytest.raises(ConfigError, match="expected 3 weights"):
        resolve_objective(load_config(_with(
            objective={"kind": "class_weights", "weights": [1, 2]})).objective, data)
    ip = resolve_objective(load_config(_with(objective="inverse_prior")).objective, data)
    assert np.allclose(ip.utility.class_weights * prior, (ip.utility.class_weights * prior)[0])
    assert ip.utility == ip.inverse_prior_utility
    costs = [[0, 5, 1], [1, 0, 1], [1, 1, 0]]
    mc = resolve_objective(load_config(_with(
        objective={"kind": "matrix", "costs": costs})).objective, data)
    raw = expost.Utility.from_costs(costs)
    k = mc.utility.matrix[0, 0] / raw.matrix[0, 0]
    assert np.allclose(mc.utility.matrix, k * raw.matrix)
    for r in (cw, ip, mc):
        assert _eq21_holds(r.utility, prior) and _eq21_holds(r.inverse_prior_utility, prior)
    with pytest.raises(ConfigError, match="no example of the class"):
        resolve_objective(load_config(BASE).objective,
                          SimpleNamespace(name="x", train_labels=np.array([0, 0, 2]), n_classes=3,
                                          class_names=["a", "b", "c"], meta={}))


@given(prior_raw=hnp.arrays(np.float64, 4, elements=st.floats(0.05, 1.0)),
       weights=hnp.arrays(np.float64, 4, elements=st.floats(0.01, 100.0)))
def test_class_weights_normalised_with_eq21(prior_raw, weights):
    counts = np.maximum(1, np.round(prior_raw * 50)).astype(int)
    data = _data(np.repeat(np.arange(4), counts))
    prior = counts / counts.sum()
    r = resolve_objective(load_config(_with(
        objective={"kind": "class_weights", "weights": weights.tolist()})).objective, data)
    assert _eq21_holds(r.utility, prior)
    assert np.allclose(r.utility.class_weights / weights, r.utility.class_weights[0] / weights[0])


def test_hardest_class_probe_and_meta_override():
    from expost.experiments.datasets import load_dataset

    digits = load_dataset("digits", flatten=True)
    cfg = load_config(BASE, overrides=["objective.emphasized=hardest"])
    a = resolve_objective(cfg.objective, digits)
    b = resolve_objective(cfg.objective, digits)
    assert a.emphasized == b.emphasized and 0 <= a.emphasized < 10
    assert "lowest validation recall" in a.note
    named = _data([0, 1, 1, 2], names=["x", "y", "z"], meta={"hardest_class": "z"})
    assert resolve_objective(cfg.objective, named).emphasized == 2


def test_yaml_roundtrip_of_dumped_config():
    cfg = load_config(BASE)
    again = load_config(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"))))
    assert again == cfg


def test_switching_an_absent_section_to_another_kind_takes_that_kinds_defaults():
    """Without an optimizer section, --set optimizer.name=sgd edited the dumped Adam default
    and failed on 'optimizer: unknown key betas', a key nobody wrote."""
    cfg = load_config(BASE, overrides=["optimizer.name=sgd"])
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.lr == 0.01  # SGD's own default
    cfg = load_config(BASE, overrides=["optimizer.lr=0.5"])  # the default kind, edited
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 0.5
    assert load_config(BASE, overrides=["schedule.name=cosine"]).schedule.name == "cosine"
