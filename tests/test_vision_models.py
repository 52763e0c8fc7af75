"""The paper's models with the real torchvision (and timm): DenseNet-121 and ViT-B/16, their
builders and weight loading, including ImageNet-21k checkpoints in torchvision's, timm's and
the original Flax .npz layout, and the position embedding interpolated from 224 to 384 pixels.

These need torchvision, which is not in the main environment (it needs torch 2.14.1, a CUDA
build that also runs on a CPU); CI runs them in a second environment:

    bash scripts/setup --vision-env && .venv-vision/bin/python -m pytest -m vision -n 2
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch

from expost.experiments.models import build_model
from expost.experiments.models.vit import POS_KEY, checkpoint_layout

VISION_COMMAND = ("bash scripts/setup --vision-env && "
                  ".venv-vision/bin/python -m pytest -m vision -n 2")
pytestmark = [
    pytest.mark.vision,
    pytest.mark.skipif(importlib.util.find_spec("torchvision") is None,
                       reason=f"needs torchvision; CI runs these with: {VISION_COMMAND}"),
]
N_21K = 21843  # ImageNet-21k's classes in the original checkpoints


def _timm():
    return pytest.importorskip("timm", reason=f"needs timm (installed by {VISION_COMMAND})")


def _eval(model):
    return model.eval().requires_grad_(False)


def _same_body(model, source, skip=("heads.", "classifier.")):
    mine, theirs = model.state_dict(), source
    body = [k for k in mine if not k.startswith(skip)]
    assert body and all(torch.equal(mine[k], theirs[k]) for k in body)


# ------------------------------------------------------------------ builders
def test_real_builders_give_the_papers_architectures():
    torch.manual_seed(0)
    dn = _eval(build_model("densenet121", n_classes=15, input_shape=(3, 224, 224)))
    assert dn(torch.randn(2, 3, 224, 224)).shape == (2, 15)
    assert sum(p.numel() for p in dn.parameters()) == 6_969_231  # DenseNet-121 with 15 outputs
    vit = _eval(build_model("vit", n_classes=10, input_shape=(3, 224, 224)))
    assert vit(torch.randn(1, 3, 224, 224)).shape == (1, 10)
    assert (len(vit.encoder.layers), vit.hidden_dim, vit.patch_size) == (12, 768, 16)
    assert 85e6 < sum(p.numel() for p in vit.parameters()) < 87e6  # "86 million" (App. D.2)
    assert torch.count_nonzero(vit.heads.head.weight) == 0  # torchvision's zero head, as in JAX


# ------------------------------------------------------------------ DenseNet-121
def test_densenet121_imagenet_weights_load_and_head_is_replaced(tmp_path):
    import torchvision

    torch.manual_seed(1)
    imagenet = torchvision.models.densenet121(weights=None)  # 1000 classes, random
    path = tmp_path / "densenet121.pth"
    torch.save(imagenet.state_dict(), path)
    torch.manual_seed(2)
    fresh = build_model("densenet121", n_classes=15, input_shape=(3, 224, 224))
    torch.manual_seed(2)
    model = build_model("densenet121", n_classes=15, input_shape=(3, 224, 224), weights=path,
                        pretrained=True)
    _same_body(model, imagenet.state_dict())
    assert torch.equal(model.classifier.weight, fresh.classifier.weight)  # a new 15-class head
    # torchvision's original download used the legacy names (norm.1 for norm1 ...)
    legacy = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
              for k, v in imagenet.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1." in k for k in legacy)
    torch.save(legacy, tmp_path / "legacy.pth")
    old = build_model("densenet121", n_classes=15, input_shape=(3, 224, 224),
                      weights=tmp_path / "legacy.pth")
    assert torch.equal(old.features.denseblock1.denselayer1.norm1.weight,
                       imagenet.features.denseblock1.denselayer1.norm1.weight)


# ------------------------------------------------------------------ ViT-B/16, torchvision layout
def test_vit_21k_torchvision_checkpoint_drops_pre_logits_with_a_note(tmp_path):
    import torchvision

    torch.manual_seed(3)
    in21k = torchvision.models.vit_b_16(weights=None, num_classes=N_21K, representation_size=768)
    state = in21k.state_dict()
    assert "heads.pre_logits.weight" in state
    path = tmp_path / "vit_in21k.pth"
    torch.save(state, path)
    with pytest.warns(UserWarning, match=r"dropped the pre-logits layer \(768 x 768\)"):
        model = build_model("vit", n_classes=10, input_shape=(3, 224, 224), weights=path,
                            pretrained=True)
    _same_body(model, state)
    assert model.heads.head.weight.shape == (10, 768)
    assert torch.count_nonzero(model.heads.head.weight) == 0  # new head (zero, as in JAX)
    # a checkpoint without pre-logits loads without a note, its head too when it fits
    plain = torchvision.models.vit_b_16(weights=None, num_classes=10)
    torch.save(plain.state_dict(), tmp_path / "plain.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = build_model("vit", n_classes=10, input_shape=(3, 224, 224),
                           weights=tmp_path / "plain.pth")
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in same.state_dict().items())


def test_vit_position_embedding_224_to_384_matches_torchvision(tmp_path):
    import torchvision
    from torchvision.models.vision_transformer import interpolate_embeddings

    torch.manual_seed(4)
    source = torchvision.models.vit_b_16(weights=None, num_classes=N_21K)
    path = tmp_path / "vit224.pth"
    torch.save(source.state_dict(), path)
    model = _eval(build_model("vit", n_classes=10, input_shape=(3, 384, 384), weights=path))
    expected = interpolate_embeddings(384, 16, source.state_dict())[POS_KEY]
    assert model.state_dict()[POS_KEY].shape == (1, 24 * 24 + 1, 768)
    torch.testing.assert_close(model.state_dict()[POS_KEY], expected, rtol=0, atol=1e-6)
    _same_body(model, source.state_dict(), skip=("heads.", POS_KEY))
    assert model(torch.randn(1, 3, 384, 384)).shape == (1, 10)


# ------------------------------------------------------------------ timm layout
def _timm_in21k(seed):
    timm = _timm()
    torch.manual_seed(seed)
    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=N_21K)
    with torch.no_grad():  # timm zero-initialises nothing that matters; make the head non-trivial
        model.head.weight.normal_(std=0.02)
        model.head.bias.normal_(std=0.02)
    return _eval(model)


def test_vit_timm_in21k_checkpoint_gives_timms_outputs(tmp_path):
    source = _timm_in21k(5)
    state = dict(source.state_dict())
    assert checkpoint_layout(state) == "timm"
    # timm's older in21k checkpoints (vit_base_patch16_224_in21k) carried a pre-logits layer
    torch.manual_seed(6)
    state["pre_logits.fc.weight"] = torch.randn(768, 768) * 0.02
    state["pre_logits.fc.bias"] = torch.zeros(768)
    path = tmp_path / "timm_in21k.pth"
    torch.save(state, path)
    with pytest.warns(UserWarning, match="pre-logits"):
        model = _eval(build_model("vit", n_classes=N_21K, input_shape=(3, 224, 224), weights=path))
    x = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(model(x), source(x), rtol=1e-4, atol=1e-4)  # head kept: it fits
    with pytest.warns(UserWarning, match="pre-logits"):
        tuned = _eval(build_model("vit", n_classes=10, input_shape=(3, 224, 224), weights=path))
    assert torch.count_nonzero(tuned.heads.head.weight) == 0  # the 21k head replaced
    features = source.forward_head(source.forward_features(x), pre_logits=True)
    with torch.no_grad():
        tuned.heads.head.weight.copy_(source.head.weight[:10])
        tuned.heads.head.bias.copy_(source.head.bias[:10])
    torch.testing.assert_close(tuned(x), features @ source.head.weight[:10].T + source.head.bias[:10],
                               rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ the original Flax .npz
def _flax_arrays(model):
    """A timm ViT's weights written in the layout of the original ViT-B_16.npz (Flax)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    heads, dim = 12, 768
    out = {
        "cls": sd["cls_token"],
        "embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": sd["patch_embed.proj.bias"],
        "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
        "head/kernel": sd["head.weight"].T,
        "head/bias": sd["head.bias"],
        "pre_logits/kernel": np.eye(dim, dtype=np.float32),
        "pre_logits/bias": np.zeros(dim, np.float32),
    }
    for i in range(12):
        b, t = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        out[t + "LayerNorm_0/scale"], out[t + "LayerNorm_0/bias"] = sd[b + "norm1.weight"], sd[b + "norm1.bias"]
        out[t + "LayerNorm_2/scale"], out[t + "LayerNorm_2/bias"] = sd[b + "norm2.weight"], sd[b + "norm2.bias"]
        out[t + "MlpBlock_3/Dense_0/kernel"] = sd[b + "mlp.fc1.weight"].T
        out[t + "MlpBlock_3/Dense_0/bias"] = sd[b + "mlp.fc1.bias"]
        out[t + "MlpBlock_3/Dense_1/kernel"] = sd[b + "mlp.fc2.weight"].T
        out[t + "MlpBlock_3/Dense_1/bias"] = sd[b + "mlp.fc2.bias"]
        qkv_w, qkv_b = sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]
        for j, name in enumerate(("query", "key", "value")):
            w = qkv_w[j * dim:(j + 1) * dim]  # (out, in)
            out[t + f"MultiHeadDotProductAttention_1/{name}/kernel"] = w.T.reshape(dim, heads, -1)
            out[t + f"MultiHeadDotProductAttention_1/{name}/bias"] = qkv_b[j * dim:(j + 1) * dim].reshape(heads, -1)
        out[t + "MultiHeadDotProductAttention_1/out/kernel"] = sd[b + "attn.proj.weight"].T.reshape(heads, -1, dim)
        out[t + "MultiHeadDotProductAttention_1/out/bias"] = sd[b + "attn.proj.bias"]
    return out


def test_vit_original_npz_checkpoint_loads_like_timm_reads_it(tmp_path):
    timm = _timm()
    from timm.models.vision_transformer import _load_weights

    source = _timm_in21k(7)
    path = tmp_path / "ViT-B_16.npz"
    np.savez(path, **_flax_arrays(source))
    # the file is in the real layout: timm's own reader of the original checkpoints agrees
    reader = _eval(timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=N_21K))
    _load_weights(reader, str(path))
    x = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(reader(x), source(x), rtol=1e-4, atol=1e-4)
    with pytest.warns(UserWarning, match=r"pre-logits layer \(768 x 768\) of this flax-layout"):
        model = _eval(build_model("vit", n_classes=N_21K, input_shape=(3, 224, 224), weights=path))
    torch.testing.assert_close(model(x), source(x), rtol=1e-4, atol=1e-4)
    # fine-tuning at 384: interpolated positions, new 100-class head
    with pytest.warns(UserWarning, match="pre-logits"):
        big = _eval(build_model("vit", n_classes=100, input_shape=(3, 384, 384), weights=path,
                                pretrained=True))
    assert big.state_dict()[POS_KEY].shape == (1, 577, 768) and big.heads.head.weight.shape == (100, 768)
    assert big(torch.randn(1, 3, 384, 384)).shape == (1, 100)


def test_vit_npz_with_pickled_objects_or_unknown_keys_is_refused(tmp_path):
    bad = tmp_path / "objects.npz"
    np.savez(bad, cls=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"no pickled objects.*model\.options\.weights=PATH.*pretrained=false"):
        build_model("vit", n_classes=10, input_shape=(3, 224, 224), weights=bad)
    odd = tmp_path / "odd.npz"
    np.savez(odd, **{"Transformer/encoderblock_0/Odd/kernel": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"unexpected \(e.g. \['Transformer/encoderblock_0/Odd/kernel'\]"):
        build_model("vit", n_classes=10, input_shape=(3, 224, 224), weights=odd)
