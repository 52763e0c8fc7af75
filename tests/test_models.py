"""The model registry: native models, weights loading, and the optional torchvision models."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from expost.experiments.models import build_model, list_models, model_options, register_model
from expost.experiments.models._weights import TORCHVISION_INSTALL
from expost.experiments.models.densenet import DenseNet
from expost.experiments.models.vit import POS_KEY, VisionTransformer, resize_pos_embedding

NATIVE = ("mlp", "cnn", "densenet_small", "vit_tiny")
SHAPES = ((1, 8, 8), (1, 28, 28), (3, 32, 32))
SMALL = {  # small settings so the tests stay fast
    "mlp": {"hidden": (16,)},
    "cnn": {"channels": (4, 8)},
    "densenet_small": {"growth_rate": 4, "block_config": (2, 2), "num_init_features": 8},
    "vit_tiny": {"dim": 16, "depth": 2, "heads": 2},
}


def _build(name, shape, n_classes=5, seed=0, **extra):
    torch.manual_seed(seed)
    return build_model(name, n_classes=n_classes, input_shape=shape, **{**SMALL[name], **extra})


def test_registry_lists_models_and_options():
    assert set(list_models()) >= {"mlp", "cnn", "densenet121", "vit", "densenet_small", "vit_tiny"}
    opts = model_options("vit_tiny")
    assert opts["patch_size"] == (int, 4) and "n_classes" not in opts and "input_shape" not in opts
    from pydantic import create_model

    cfg = create_model("MlpOptions", **model_options("mlp"))(hidden=[8, 4])
    assert cfg.hidden == (8, 4) and cfg.activation == "relu"


@pytest.mark.parametrize("name", NATIVE)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_shapes_and_gradients(name, shape):
    model = _build(name, shape, n_classes=7)
    x = torch.randn(4, *shape)
    out = model(x)
    assert out.shape == (4, 7) and out.dtype == torch.float32
    torch.nn.functional.cross_entropy(out, torch.arange(4) % 7).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_mlp_on_flat_features_and_logistic_regression():
    out = _build("mlp", (2,), n_classes=3)(torch.randn(6, 2))
    assert out.shape == (6, 3)
    torch.manual_seed(0)
    linear = build_model("mlp", n_classes=3, input_shape=(64,), hidden=())
    assert [type(m) for m in linear.modules() if isinstance(m, nn.Linear)] == [nn.Linear]


@pytest.mark.parametrize("name", NATIVE)
def test_seed_determinism(name):
    a, b, c = (_build(name, (3, 32, 32), seed=s) for s in (1, 1, 2))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    a.eval()
    b.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a(x), b(x))


def test_vit_blocks_are_initialised_independently():
    model = _build("vit_tiny", (3, 32, 32))
    layers = model.encoder.layers.layers
    assert not torch.equal(layers[0].linear1.weight, layers[1].linear1.weight)
    assert not torch.equal(layers[0].self_attn.in_proj_weight, layers[1].self_attn.in_proj_weight)


def test_option_errors():
    with pytest.raises(TypeError) as exc:
        build_model("cnn", n_classes=3, input_shape=(1, 8, 8), chanels=(4,))
    assert "'chanels'" in str(exc.value) and "channels" in str(exc.value)
    with pytest.raises(TypeError, match="`hidden` must be a sequence of int"):
        build_model("mlp", n_classes=3, input_shape=(4,), hidden=16)
    with pytest.raises(ValueError, match="`activation` must be one of"):
        build_model("mlp", n_classes=3, input_shape=(4,), activation="swish")
    with pytest.raises(ValueError, match="`dropout` must be a probability"):
        build_model("mlp", n_classes=3, input_shape=(4,), dropout=1.5)
    with pytest.raises(ValueError, match="`name` must be one of the registered models"):
        build_model("resnet50", n_classes=3, input_shape=(3, 32, 32))
    with pytest.raises(ValueError, match="`n_classes` must be an integer >= 2"):
        build_model("mlp", n_classes=1, input_shape=(4,))
    with pytest.raises(TypeError, match="`n_classes` must be an integer >= 2"):
        build_model("mlp", n_classes=2.0, input_shape=(4,))
    with pytest.raises(ValueError, match="`input_shape` must be"):
        build_model("mlp", n_classes=2, input_shape=(0, 4))
    with pytest.raises(ValueError, match=r"`input_shape` must be .* for the model 'cnn'"):
        build_model("cnn", n_classes=2, input_shape=(64,))
    with pytest.raises(ValueError, match="`patch_size` must be a divisor"):
        build_model("vit_tiny", n_classes=2, input_shape=(1, 28, 28), patch_size=8)
    with pytest.raises(ValueError, match="`heads` must be a positive divisor of dim=64"):
        build_model("vit_tiny", n_classes=2, input_shape=(1, 8, 8), heads=3)


def test_input_shape_not_mutated():
    shape = [1, 8, 8]
    model = build_model("cnn", n_classes=3, input_shape=shape)
    assert shape == [1, 8, 8] and model(torch.zeros(1, 1, 8, 8)).shape == (1, 3)


def test_register_model(monkeypatch):
    from expost.experiments.models._api import _MODELS

    # registrations made here are undone afterwards (a copy of the table is patched in)
    monkeypatch.setattr(_MODELS, "_factories", dict(_MODELS._factories))

    @register_model("test_linear", overwrite=True)
    def linear(*, n_classes: int, input_shape: tuple[int, ...], bias: bool = True) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], n_classes, bias=bias))

    assert model_options("test_linear") == {"bias": (bool, True)}
    assert build_model("test_linear", n_classes=2, input_shape=(3,), bias=False)[1].bias is None
    with pytest.raises(ValueError, match="already registered"):
        register_model("test_linear")(linear)

    def no_shape(*, n_classes: int) -> nn.Module:
        return nn.Identity()

    with pytest.raises(TypeError, match="lacks"):
        register_model("test_no_shape")(no_shape)


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize(("name", "head"), [("densenet_small", "classifier"), ("vit_tiny", "heads")])
def test_weights_load_body_and_replace_head(tmp_path, name, head):
    source = _build(name, (3, 32, 32), n_classes=7, seed=3)
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    fresh = _build(name, (3, 32, 32), n_classes=3, seed=4)
    loaded = _build(name, (3, 32, 32), n_classes=3, seed=4, weights=str(path))
    src, new, ref = source.state_dict(), loaded.state_dict(), fresh.state_dict()
    for k in new:
        if k.startswith(head + "."):
            assert new[k].shape[0] == 3 and torch.equal(new[k], ref[k])  # the new head
        else:
            assert torch.equal(new[k], src[k]), k  # the file's body
    assert loaded(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    # same number of classes: the head is loaded too
    same = _build(name, (3, 32, 32), n_classes=7, seed=9, weights=path)
    assert all(torch.equal(same.state_dict()[k], src[k]) for k in src)


def test_weights_wrappers_and_errors(tmp_path):
    source = _build("densenet_small", (1, 8, 8), n_classes=4)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
                "epoch": 3}, wrapped)
    loaded = _build("densenet_small", (1, 8, 8), n_classes=4, seed=5, weights=wrapped)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in source.state_dict().items())
    with pytest.raises(FileNotFoundError, match="`weights` must be the path of an existing"):
        _build("densenet_small", (1, 8, 8), weights=tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    torch.save([1, 2, 3], junk)
    with pytest.raises(TypeError, match="`weights` must be a state_dict"):
        _build("densenet_small", (1, 8, 8), weights=junk)
    other = tmp_path / "other.pth"
    torch.save(_build("densenet_small", (1, 8, 8), growth_rate=6).state_dict(), other)
    with pytest.raises(ValueError, match="of another shape"):
        _build("densenet_small", (1, 8, 8), weights=other)
    deeper = tmp_path / "deeper.pth"
    torch.save(_build("densenet_small", (1, 8, 8), block_config=(2, 3)).state_dict(), deeper)
    with pytest.raises(ValueError, match="unexpected"):
        _build("densenet_small", (1, 8, 8), weights=deeper)
    text = tmp_path / "text.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"torch\.load cannot read"):
        _build("densenet_small", (1, 8, 8), weights=text)


def test_densenet_legacy_key_names(tmp_path):
    source = _build("densenet_small", (3, 32, 32), n_classes=4)
    legacy = {}  # torchvision's original file: old names, no BatchNorm step counters
    for k, v in source.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        for old in ("norm1", "norm2", "conv1", "conv2"):
            k = k.replace(f"denselayer1.{old}.", f"denselayer1.{old[:-1]}.{old[-1]}.")
            k = k.replace(f"denselayer2.{old}.", f"denselayer2.{old[:-1]}.{old[-1]}.")
        legacy[k] = v
    assert any(".norm.1." in k for k in legacy)
    path = tmp_path / "legacy.pth"
    torch.save(legacy, path)
    loaded = _build("densenet_small", (3, 32, 32), n_classes=4, seed=1, weights=path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in source.state_dict().items()
               if not k.endswith("num_batches_tracked"))
    drop = tmp_path / "dropped.pth"
    torch.save({k: v for k, v in source.state_dict().items() if ".conv0." not in k}, drop)
    with pytest.raises(ValueError, match=r"missing \(e.g. \['features.conv0.weight'\]\)"):
        _build("densenet_small", (3, 32, 32), n_classes=4, weights=drop)


def test_vit_position_embedding_is_resized(tmp_path):
    source = _build("vit_tiny", (3, 16, 16), n_classes=4)  # 4 x 4 patches
    path = tmp_path / "vit16.pth"
    torch.save(source.state_dict(), path)
    big = _build("vit_tiny", (3, 32, 32), n_classes=4, seed=1, weights=path)  # 8 x 8 patches
    old, new = source.state_dict()[POS_KEY], big.state_dict()[POS_KEY]
    assert new.shape == (1, 65, 16)
    assert torch.equal(new[:, 0], old[:, 0])  # the class token's position is kept
    torch.testing.assert_close(new[:, 1:].mean(), old[:, 1:].mean(), atol=0.01, rtol=0)
    assert torch.equal(big.state_dict()["conv_proj.weight"], source.state_dict()["conv_proj.weight"])
    same = resize_pos_embedding(source.state_dict(), source.state_dict())
    assert same[POS_KEY] is source.state_dict()[POS_KEY] or torch.equal(same[POS_KEY], old)
    assert big(torch.randn(1, 3, 32, 32)).shape == (1, 4)


# --------------------------------------------------------------------------- torchvision


@pytest.mark.parametrize(("name", "shape"), [("densenet121", (3, 224, 224)), ("vit", (3, 224, 224))])
def test_torchvision_absent_names_the_install_command(monkeypatch, name, shape):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    with pytest.raises(ImportError) as exc:
        build_model(name, n_classes=15, input_shape=shape)
    # the hint names the pins scripts/setup --vision installs, and that command
    setup = (Path(__file__).resolve().parents[1] / "scripts" / "setup").read_text()
    pins = re.search(r'^TORCH_VISION="([^"]+)"', setup, re.M).group(1)
    assert f"pip install {pins}" in TORCHVISION_INSTALL and "scripts/setup --vision" in TORCHVISION_INSTALL
    assert TORCHVISION_INSTALL in str(exc.value) and repr(name) in str(exc.value)


def test_setup_keeps_each_pin_once_and_refuses_an_unknown_build():
    import subprocess

    root = Path(__file__).resolve().parents[1]
    setup = (root / "scripts" / "setup").read_text()
    code = [line for line in setup.splitlines() if not line.lstrip().startswith("#")]
    assert sum(line.count("torch==") for line in code) == 2  # TORCH_PIN and TORCH_VISION, once each
    assert re.search(r'^TORCH_PIN="torch==[\d.]+"$', setup, re.M)
    readme = (root / "README.md").read_text()
    assert "EXPOST_TORCH=cpu|cuda" in readme and "${EXPOST_TORCH:-auto}" in setup
    for args, env, said in ((["--torch=gpu"], {}, "must be cpu, cuda or auto, got 'gpu'"),
                            ([], {"EXPOST_TORCH": "rocm"}, "got 'rocm'"),
                            (["--vison"], {}, "unknown argument '--vison'")):
        done = subprocess.run(["bash", str(root / "scripts" / "setup"), *args], capture_output=True,
                              text=True, env={"PATH": "/usr/bin:/bin", **env}, timeout=30)
        assert done.returncode == 1 and said in done.stderr and done.stdout == ""


@pytest.mark.parametrize(("name", "wants"), [("densenet121", "ImageNet"), ("vit", "ImageNet-21k")])
def test_pretrained_without_weights_explains(name, wants):
    with pytest.raises(ValueError) as exc:
        build_model(name, n_classes=10, input_shape=(3, 224, 224), pretrained=True)
    msg = str(exc.value)
    assert "`weights`" in msg and "nothing is downloaded" in msg
    assert "--set model.options.weights=PATH" in msg and "--set model.options.pretrained=false" in msg
    assert wants in msg and "\n" not in msg
    if name == "vit":  # the hint points to 21k weights, not to torchvision's ImageNet-1k ones
        assert "vit_base_patch16_224.orig_in21k" in msg and "ViT-B_16.npz" in msg
        assert "(not 1k)" in msg and "DEFAULT" not in msg
    else:
        assert "torch.save(torchvision.models.densenet121(weights='DEFAULT')" in msg


def _paper_like(tmp_path, model):
    config = {
        "name": "pre", "dataset": {"name": "digits"}, "seeds": [0],
        "model": {"name": model, "options": {"pretrained": True, "weights": None}},
        "training": {"epochs": 1, "batch_size": 64},
    }
    path = tmp_path / "pre.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("name", ["densenet121", "vit"])
def test_pretrained_without_weights_is_refused_when_the_config_loads(tmp_path, capsys, name):
    from expost.cli import main
    from expost.experiments.config import ConfigError, load_config

    path = _paper_like(tmp_path, name)
    with pytest.raises(ConfigError, match=r"model: `weights` must be a file when pretrained: true"):
        load_config(path)
    # on the command line: one line, exit 1, no traceback, nothing left that blocks a rerun
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expost run: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "--set model.options.weights=PATH" in err and "pretrained=false" in err
    assert err.rstrip().endswith(("see docs/datasets-models.md.", "where there is internet."))  # not cut
    assert not out.exists()


@pytest.mark.parametrize(("name", "pretrained_hint"), [("densenet_small", False), ("vit_tiny", False)])
def test_weights_errors_name_the_option_to_set(tmp_path, name, pretrained_hint):
    with pytest.raises(FileNotFoundError) as exc:
        _build(name, (3, 32, 32), weights=tmp_path / "nope.pth")
    msg = str(exc.value)
    assert "nope.pth" in msg and "--set model.options.weights=PATH" in msg
    assert ("pretrained=false" in msg) == pretrained_hint
    other = tmp_path / "other.pth"
    torch.save({"x": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match=r"unexpected .*--set model\.options\.weights=PATH"):
        _build(name, (3, 32, 32), weights=other)


def test_missing_weights_file_on_the_command_line_is_one_line(tmp_path, capsys):
    from expost.cli import main

    config = {"name": "w", "dataset": {"name": "digits"}, "seeds": [0],
              "model": {"name": "vit_tiny", "options": {"weights": str(tmp_path / "gone.pth"),
                                                         "patch_size": 4}},
              "training": {"epochs": 1, "batch_size": 64}}
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expost run: error: `weights` must be the path of an existing state_dict")
    assert err.count("\n") == 1 and "gone.pth" in err and "--set model.options.weights=PATH" in err


def test_npz_weights_are_read_without_pickle(tmp_path):
    from expost.experiments.models._weights import read_state_dict

    good = tmp_path / "w.npz"
    np.savez(good, a=np.arange(6, dtype=np.float32).reshape(2, 3))
    state = read_state_dict(good)
    assert list(state) == ["a"] and torch.equal(state["a"], torch.arange(6.0).reshape(2, 3))
    bad = tmp_path / "pickled.npz"
    np.savez(bad, a=np.array([{"code": "rm -rf"}], dtype=object))
    with pytest.raises(ValueError, match=r"`weights` must be an \.npz file of numeric arrays"):
        read_state_dict(bad)


def test_vit_layouts_are_told_apart_and_renamed():
    from expost.experiments.models.vit import _TIMM_RULES, _TV_LEGACY, _rename, checkpoint_layout

    t = torch.zeros(1)
    timm_state = {"cls_token": t, "pos_embed": t, "patch_embed.proj.weight": t,
                  "blocks.11.attn.qkv.weight": t, "blocks.0.mlp.fc2.bias": t, "norm.weight": t,
                  "head.weight": t, "pre_logits.fc.bias": t}
    assert checkpoint_layout(timm_state) == "timm"
    assert checkpoint_layout({"class_token": t, POS_KEY: t}) == "torchvision"
    assert sorted(_rename(timm_state, _TIMM_RULES)) == sorted([
        "class_token", POS_KEY, "conv_proj.weight",
        "encoder.layers.encoder_layer_11.self_attention.in_proj_weight",
        "encoder.layers.encoder_layer_0.mlp.3.bias", "encoder.ln.weight", "heads.head.weight",
        "heads.pre_logits.bias"])
    legacy = {"encoder.layers.encoder_layer_3.mlp.linear_1.weight": t,
              "encoder.layers.encoder_layer_3.mlp.linear_2.bias": t}
    assert sorted(_rename(legacy, _TV_LEGACY)) == [
        "encoder.layers.encoder_layer_3.mlp.0.weight", "encoder.layers.encoder_layer_3.mlp.3.bias"]


def test_torchvision_models_check_inputs():
    with pytest.raises(ValueError, match="3-channel images of at least 32 x 32"):
        build_model("densenet121", n_classes=2, input_shape=(1, 224, 224))
    with pytest.raises(ValueError, match="`patch_size` must be a divisor"):
        build_model("vit", n_classes=2, input_shape=(3, 32, 40))


def _fake_torchvision(calls):
    """A stand-in module with torchvision's builder signatures, returning native models."""

    def densenet121(*, weights, num_classes, drop_rate, memory_efficient):
        calls.append(("densenet121", weights, num_classes, drop_rate, memory_efficient))
        return DenseNet(3, num_classes, growth_rate=4, block_config=(2, 2), num_init_features=8)

    def vit_b_16(*, weights, image_size, num_classes, dropout, attention_dropout):
        calls.append(("vit_b_16", weights, image_size, num_classes, dropout, attention_dropout))
        return VisionTransformer((image_size, image_size), 3, num_classes, patch_size=16,
                                 dim=16, depth=1, heads=2, mlp_dim=32)

    tv = types.ModuleType("torchvision")
    tv.models = types.SimpleNamespace(densenet121=densenet121, vit_b_16=vit_b_16)
    return tv


def test_torchvision_builders_are_called_and_weights_loaded(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setitem(sys.modules, "torchvision", _fake_torchvision(calls))
    torch.manual_seed(0)
    model = build_model("densenet121", n_classes=15, input_shape=(3, 64, 64), drop_rate=0.1)
    assert calls[-1] == ("densenet121", None, 15, 0.1, False)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 15)
    # an "ImageNet" file with 1000 classes: body loaded, head replaced for 15 classes
    imagenet = DenseNet(3, 1000, growth_rate=4, block_config=(2, 2), num_init_features=8)
    path = tmp_path / "densenet121.pth"
    torch.save(imagenet.state_dict(), path)
    tuned = build_model("densenet121", n_classes=15, input_shape=(3, 64, 64), weights=path,
                        pretrained=True)
    assert torch.equal(tuned.features.conv0.weight, imagenet.features.conv0.weight)
    assert tuned.classifier.weight.shape == (15, imagenet.classifier.in_features)
    vit = build_model("vit", n_classes=10, input_shape=(3, 64, 64), dropout=0.1)
    assert calls[-1] == ("vit_b_16", None, 64, 10, 0.1, 0.0)
    assert vit(torch.randn(1, 3, 64, 64)).shape == (1, 10)
