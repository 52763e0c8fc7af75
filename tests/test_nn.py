"""expost.nn: the PyTorch losses, checked against the numpy core and against torch itself."""

from __future__ import annotations

import copy
import io
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import softmax

import expost
from strategies import utilities

torch = pytest.importorskip("torch")
F = torch.nn.functional

from expost.nn import UtilityWeightedBrier, UtilityWeightedCrossEntropy  # noqa: E402
from expost.nn.functional import (  # noqa: E402
    decide,
    expost_log_probs,
    utility_weighted_brier,
    utility_weighted_cross_entropy,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
LOSSES = {"log": utility_weighted_cross_entropy, "brier": utility_weighted_brier}
MODULES = {"log": UtilityWeightedCrossEntropy, "brier": UtilityWeightedBrier}
REDUCTIONS = ["mean", "sum", "none", "weighted_mean"]


def _reference(logits: np.ndarray, y: np.ndarray, u: expost.Utility, base: str, reduction: str):
    """The numpy core's expost.weighted_loss, reduced as each reduction promises."""
    per = expost.weighted_loss(softmax(logits, axis=1), y, u, base=base)
    if reduction == "none":
        return per
    if reduction == "mean":
        return per.mean()
    if reduction == "sum":
        return per.sum()
    return per.sum() / u.matrix[:, y].sum()  # sum over the batch of sum_a u(a, y_i)


def _as_input(u: expost.Utility, kind: str, device: str):
    if kind == "utility":
        return u
    if kind == "array":
        return np.array(u.matrix)
    return torch.tensor(u.matrix, dtype=torch.float64, device=device)


@st.composite
def problems(draw, *, square: bool = False):
    """A utility (diagonal, full square or non-square), logits over actions, targets."""
    m = draw(st.integers(2, 6))
    a = m if square else draw(st.sampled_from([m, m, 2, 3, 7]))
    u = draw(utilities(m, n_actions=a))
    n = draw(st.integers(1, 12))
    logits = draw(hnp.arrays(np.float64, (n, u.n_actions), elements=st.floats(-8.0, 8.0)))
    y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, m - 1)))
    return u, logits, y


# ---------------------------------------------------------------- equal to the numpy core
@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40)
@given(
    problem=problems(),
    base=st.sampled_from(["log", "brier"]),
    reduction=st.sampled_from(REDUCTIONS),
    kind=st.sampled_from(["utility", "array", "tensor"]),
)
def test_losses_equal_numpy_core(device, problem, base, reduction, kind):
    u, logits, y = problem
    t_logits = torch.tensor(logits, device=device)
    t_y = torch.tensor(y, device=device)
    got = LOSSES[base](t_logits, t_y, _as_input(u, kind, device), reduction=reduction)
    want = _reference(logits, y, u, base, reduction)
    assert got.dtype == torch.float64
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("base", ["log", "brier"])
def test_module_equals_functional(device, base):
    rng = np.random.default_rng(0)
    for u in (
        expost.Utility.from_class_weights(rng.uniform(0.1, 5, 4)),
        expost.Utility(rng.uniform(0, 3, (4, 4))),
        expost.Utility(rng.uniform(0, 3, (6, 4))),
    ):
        logits = torch.tensor(rng.normal(0, 3, (9, u.n_actions)), device=device)
        y = torch.tensor(rng.integers(0, 4, 9), device=device)
        for reduction in REDUCTIONS:
            module = MODULES[base](u, reduction=reduction).to(device)
            # Both forms convert the same float64 values at the same point: no rounding
            # of either side, and equal to the last bit in float64 and in float32.
            for x in (logits, logits.float()):
                got, want = module(x, y), LOSSES[base](x, y, u, reduction=reduction)
                assert got.dtype == want.dtype == x.dtype
                torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_class_weights_match_torch_cross_entropy(device):
    gen = torch.Generator().manual_seed(1)
    logits = (4 * torch.randn(50, 5, generator=gen, dtype=torch.float64)).to(device)
    y = torch.randint(0, 5, (50,), generator=gen).to(device)
    w = torch.rand(5, generator=gen, dtype=torch.float64).to(device) * 10 + 0.1
    plain = F.cross_entropy(logits, y, reduction="none")
    for utility in (expost.Utility.from_class_weights(w.cpu().numpy()), w, w.cpu().numpy()):
        per = utility_weighted_cross_entropy(logits, y, utility, reduction="none")
        torch.testing.assert_close(per, w[y] * plain, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            utility_weighted_cross_entropy(logits, y, utility, reduction="weighted_mean"),
            F.cross_entropy(logits, y, weight=w),
            rtol=1e-12,
            atol=1e-12,
        )
        mean = utility_weighted_cross_entropy(logits, y, utility)
        torch.testing.assert_close(mean, (w[y] * plain).mean(), rtol=1e-12, atol=1e-12)
        # "mean" is the paper's plain mean, not torch's weighted mean
        assert abs(mean.item() - F.cross_entropy(logits, y, weight=w).item()) > 1e-3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("base", ["log", "brier"])
def test_diagonal_fast_path_equals_general_path(device, base):
    rng = np.random.default_rng(2)
    u = expost.Utility.from_class_weights(rng.uniform(0.1, 50, 6))
    logits = torch.tensor(rng.normal(0, 5, (40, 6)), device=device)
    y = torch.tensor(rng.integers(0, 6, 40), device=device)
    general = torch.tensor(u.matrix, device=device)  # a 2-D tensor takes the general path
    for reduction in REDUCTIONS:
        torch.testing.assert_close(
            LOSSES[base](logits, y, u, reduction=reduction),
            LOSSES[base](logits, y, general, reduction=reduction),
            rtol=1e-12,
            atol=1e-12,
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("base", ["log", "brier"])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2), (1, 2, 1, 3)])
def test_spatial_logits_move_the_class_axis(device, base, shape):
    """(N, A, d1, ...) logits with (N, d1, ...) targets, like F.cross_entropy."""
    rng = np.random.default_rng(3)
    for u in (
        expost.Utility.from_class_weights([1.0, 3.0, 0.5]),
        expost.Utility(rng.uniform(0, 2, (4, 3))),
    ):
        n, rest = shape[0], shape[1:]
        logits = torch.tensor(rng.normal(0, 2, (n, u.n_actions, *rest)), device=device)
        y = torch.tensor(rng.integers(0, 3, (n, *rest)), device=device)
        flat_logits = logits.movedim(1, -1).reshape(-1, u.n_actions)
        flat_y = y.reshape(-1)
        for reduction in REDUCTIONS:
            got = LOSSES[base](logits, y, u, reduction=reduction)
            want = LOSSES[base](flat_logits, flat_y, u, reduction=reduction)
            if reduction == "none":
                assert got.shape == y.shape
                want = want.reshape(y.shape)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        if u.is_diagonal and base == "log":
            w = torch.tensor(u.class_weights, device=device)
            torch.testing.assert_close(
                utility_weighted_cross_entropy(logits, y, u, reduction="weighted_mean"),
                F.cross_entropy(logits, y, weight=w),
            )
        q_logits = torch.tensor(rng.normal(0, 2, (n, 3, *rest)), device=device)
        lp = expost_log_probs(q_logits, u)
        assert lp.shape == (n, u.n_actions, *rest)
        flat_lp = expost_log_probs(q_logits.movedim(1, -1).reshape(-1, 3), u)
        torch.testing.assert_close(lp.movedim(1, -1).reshape(-1, u.n_actions), flat_lp)
        acts = decide(q_logits, u)
        assert acts.shape == (n, *rest)
        flat_acts = decide(q_logits.movedim(1, -1).reshape(-1, 3), u)
        torch.testing.assert_close(acts.reshape(-1), flat_acts)


# ---------------------------------------------------------------- ex post predictions
@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40)
@given(problem=problems(), kind=st.sampled_from(["utility", "array", "tensor"]))
def test_expost_log_probs_and_decide_equal_numpy_core(device, problem, kind):
    u, _, _ = problem
    rng = np.random.default_rng(u.n_actions * 10 + u.n_classes)
    logits = rng.normal(0, 4, (7, u.n_classes))
    q = softmax(logits, axis=1)
    t_logits = torch.tensor(logits, device=device)
    lp = expost_log_probs(t_logits, _as_input(u, kind, device))
    np.testing.assert_allclose(
        lp.exp().cpu().numpy(), expost.weighted_prediction(q, u), rtol=1e-10, atol=1e-12
    )
    acts = decide(t_logits, _as_input(u, kind, device))
    assert acts.dtype == torch.int64
    np.testing.assert_array_equal(acts.cpu().numpy(), expost.decide(q, u))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["utility", "tensor"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("on_device", [True, False])
def test_decide_sends_identical_actions_to_the_lowest(device, kind, dtype, on_device, monkeypatch):
    """The log scores of identical actions can round apart: in float32, 0.2% of these rows
    (a tenth of those the groups won) chose a higher identical action until decide mapped
    each decision to the lowest identical action (found on the device, or on the host)."""
    if not on_device:
        monkeypatch.setattr("expost.nn._convert._ON_DEVICE_COMPARISONS", 0)
        monkeypatch.setattr("expost.nn._convert._CONVERTED", {})
    rng = np.random.default_rng(40)
    u_np = rng.uniform(0.1, 1.0, (40, 40))
    groups = [[1, 38, 39], [7, 20]]
    for g in groups:
        u_np[g] = u_np[g[0]]
    u = expost.Utility(u_np)
    logits = torch.tensor(rng.normal(0, 2, (20000, 40)), dtype=dtype, device=device)
    acts = decide(logits, _as_input(u, kind, device)).cpu().numpy()
    repeats = [a for g in groups for a in g[1:]]
    assert not np.isin(acts, repeats).any()
    assert np.isin(acts, [g[0] for g in groups]).sum() > 100
    scores = logits.double().softmax(dim=1).cpu().numpy() @ u_np.T  # the chosen action is the best
    chosen = scores[np.arange(len(acts)), acts]
    assert np.all(chosen >= scores.max(axis=1) * (1 - 1e-5))


def test_expost_log_probs_is_stable_where_probabilities_underflow():
    # q_1 = exp(-2000) underflows to 0 in any dtype; log p^u stays exact in log space.
    logits = torch.tensor([[0.0, -2000.0]], dtype=torch.float64)
    u = expost.Utility([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    lp = expost_log_probs(logits, u)
    torch.testing.assert_close(lp, torch.tensor([[0.0, -2000.0, -2000.0 + np.log(2.0)]],
                                                dtype=torch.float64))
    w = expost.Utility.from_class_weights([1.0, 1e6])
    torch.testing.assert_close(
        expost_log_probs(logits.float(), w), torch.log_softmax(logits.float() + torch.log(
            torch.tensor([1.0, 1e6])), dim=1)
    )


def test_expost_log_probs_zero_rows_give_minus_inf_without_nan_gradients():
    u = expost.Utility([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]])  # action 1 is dead
    logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    lp = expost_log_probs(logits, u)
    assert torch.isneginf(lp[:, 1]).all() and torch.isfinite(lp[:, [0, 2]]).all()
    lp[:, [0, 2]].sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert (decide(logits, u) != 1).all()


# ---------------------------------------------------------------- gradients
def _gradcheck_cases():
    rng = np.random.default_rng(4)
    sparse = rng.uniform(0.5, 3, (4, 4)) * (rng.uniform(size=(4, 4)) > 0.4)
    sparse[np.arange(4), np.arange(4)] = 1.0  # nondegenerate, with zeros
    return [
        expost.Utility.from_class_weights([1.0, 99.0, 3.0, 0.5]),
        expost.Utility(sparse),
        expost.Utility(rng.uniform(0, 2, (3, 4))),  # non-square: 3 actions, 4 classes
    ]


@pytest.mark.parametrize("base", ["log", "brier"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_losses(base, reduction):
    gen = torch.Generator().manual_seed(5)
    fn = LOSSES[base]
    for u in _gradcheck_cases():
        logits = torch.randn(4, u.n_actions, generator=gen, dtype=torch.float64)
        y = torch.randint(0, u.n_classes, (4,), generator=gen)
        assert torch.autograd.gradcheck(
            lambda x, u=u, y=y: fn(x, y, u, reduction=reduction), (logits.requires_grad_(),)
        )
        # Gradients also reach a tensor utility (class weights or a matrix). The
        # numerical derivative pushes zero utilities below 0, hence validate=False.
        ut = torch.tensor(
            u.class_weights if u.is_diagonal else u.matrix, dtype=torch.float64
        ).requires_grad_()
        assert torch.autograd.gradcheck(
            lambda x, t, y=y: fn(x, y, t, reduction=reduction, validate=False),
            (logits.detach().requires_grad_(), ut),
            fast_mode=True,
        )


def test_gradcheck_expost_log_probs_with_zeros_in_u():
    gen = torch.Generator().manual_seed(6)
    for u in [*_gradcheck_cases(), expost.Utility([[1.0, 0.0], [0.0, 0.0], [2.0, 5.0]])]:
        alive = torch.tensor(np.flatnonzero(u.matrix.any(axis=1)))
        logits = torch.randn(3, u.n_classes, generator=gen, dtype=torch.float64)
        assert torch.autograd.gradcheck(
            lambda x, u=u, alive=alive: expost_log_probs(x, u)[:, alive],
            (logits.requires_grad_(),),
        )


# ---------------------------------------------------------------- numerics
EXTREME_UTILITIES = [
    expost.Utility.from_class_weights([1e6, 1.0, 1.0]),
    expost.Utility([[1e6, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]),
]


@pytest.mark.parametrize("base", ["log", "brier"])
@pytest.mark.parametrize("u", EXTREME_UTILITIES, ids=["diagonal", "full"])
def test_finite_at_extreme_weights_and_logits_float32(base, u):
    logits = torch.tensor(
        [[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [0.0, 0.0, 1e4], [-1e4, -1e4, -1e4]],
        requires_grad=True,
    )
    y = torch.tensor([1, 0, 0, 2])
    for reduction in REDUCTIONS:
        logits.grad = None
        loss = LOSSES[base](logits, y, u, reduction=reduction)
        assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
        loss.sum().backward()
        assert torch.isfinite(logits.grad).all()
    lp = expost_log_probs(logits, u)
    assert torch.isfinite(lp).all()
    lp[:, 0].sum().backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("base", ["log", "brier"])
@pytest.mark.parametrize("u", EXTREME_UTILITIES, ids=["diagonal", "full"])
def test_finite_under_cpu_autocast_bfloat16(base, u):
    gen = torch.Generator().manual_seed(7)
    layer = torch.nn.Linear(8, 3)
    features = 300 * torch.randn(16, 8, generator=gen)  # logits in the thousands
    y = torch.randint(0, 3, (16,), generator=gen)
    loss_fn = MODULES[base](u)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(features)
        assert logits.dtype == torch.bfloat16
        loss = loss_fn(logits, y)
        ref = LOSSES[base](logits.detach().float(), y, u)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=0)  # accumulated in float32
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("base", ["log", "brier"])
def test_half_precision_inputs_accumulate_in_float32(dtype, base):
    gen = torch.Generator().manual_seed(8)
    rng = np.random.default_rng(8)
    for u in (expost.Utility.from_class_weights([1e3, 1.0, 2.0, 5.0]),
              expost.Utility(rng.uniform(0, 10, (4, 4)))):
        low = (20 * torch.randn(512, 4, generator=gen)).to(dtype).requires_grad_()
        y = torch.randint(0, 4, (512,), generator=gen)
        for reduction in REDUCTIONS:
            got = LOSSES[base](low, y, u, reduction=reduction)
            want = LOSSES[base](low.detach().float(), y, u, reduction=reduction)
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        LOSSES[base](low, y, u).backward()
        assert low.grad.dtype == dtype and torch.isfinite(low.grad).all()
    lp = expost_log_probs(low, u)
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp, expost_log_probs(low.detach().float(), u), rtol=0, atol=0)


# ---------------------------------------------------------------- zero utility, zero probability
# A full utility with zeros off the diagonal; each row's -inf logit sits on an action
# of zero utility for that row's class (u[0, 1] = u[1, 2] = u[2, 0] = 0), so p_a = 0
# there and the term is 0 * log 0 = 0 (the numpy core's xlogy), not NaN.
ZERO_U = expost.Utility([[2.0, 0.0, 1.0], [0.5, 1.0, 0.0], [0.0, 3.0, 1.0]])
ZERO_LOGITS = [[-np.inf, 0.3, 1.2], [0.5, -np.inf, 0.0], [1.0, 2.0, -np.inf]]
ZERO_TARGET = [1, 2, 0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("base", ["log", "brier"])
@pytest.mark.parametrize("form", ["functional", "module", "tensor"])
def test_minus_inf_logit_on_zero_utility_is_finite_and_equals_numpy_core(device, base, form):
    y = torch.tensor(ZERO_TARGET, device=device)
    ut = torch.tensor(ZERO_U.matrix, device=device, requires_grad=True)
    for reduction in REDUCTIONS:
        logits = torch.tensor(ZERO_LOGITS, dtype=torch.float64, device=device, requires_grad=True)
        if form == "module":
            loss = MODULES[base](ZERO_U, reduction=reduction).to(device)(logits, y)
        else:
            utility = ut if form == "tensor" else ZERO_U
            loss = LOSSES[base](logits, y, utility, reduction=reduction)
        want = _reference(np.array(ZERO_LOGITS), np.array(ZERO_TARGET), ZERO_U, base, reduction)
        assert torch.isfinite(loss).all()
        np.testing.assert_allclose(loss.detach().cpu().numpy(), want, rtol=1e-12, atol=1e-12)
        ut.grad = None
        loss.sum().backward()
        assert torch.isfinite(logits.grad).all()
        assert (logits.grad[logits.isneginf()] == 0).all()  # p_a = 0 and u(a, y) = 0
        if form == "tensor":  # d/du(a, y) of the log loss is -log p_a: finite, 0 where p_a = 0
            assert torch.isfinite(ut.grad).all()


def test_minus_inf_logit_gradient_is_eq24s():
    """d/dz of -sum_a u(a, y) log p_a is s_y p - u(., y), s_y = sum_a u(a, y) (Eq 24)."""
    logits = torch.tensor(ZERO_LOGITS, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(ZERO_TARGET)
    utility_weighted_cross_entropy(logits, y, ZERO_U, reduction="sum").backward()
    cols = torch.tensor(ZERO_U.matrix.T)[y]  # u(., y_i)
    p = torch.softmax(logits.detach(), dim=1)
    torch.testing.assert_close(logits.grad, cols.sum(1, keepdim=True) * p - cols, rtol=1e-12,
                               atol=1e-15)


def test_module_guards_zero_utilities_it_loads_later():
    """A module built with a utility without zeros, then loaded with one that has them."""
    module = UtilityWeightedCrossEntropy(np.full((3, 3), 1.0) + np.eye(3), reduction="none")
    logits = torch.tensor(ZERO_LOGITS, dtype=torch.float64)
    y = torch.tensor(ZERO_TARGET)
    assert torch.isposinf(module(logits, y)).all()  # u > 0 where p = 0: +inf, as in numpy
    module.load_state_dict({"utility": torch.tensor(ZERO_U.matrix)})
    want = _reference(np.array(ZERO_LOGITS), np.array(ZERO_TARGET), ZERO_U, "log", "none")
    torch.testing.assert_close(module(logits, y), torch.tensor(want), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(module(logits, y), utility_weighted_cross_entropy(
        logits, y, ZERO_U, reduction="none"), rtol=0, atol=0)


@settings(max_examples=40)
@given(problem=problems(), data=st.data())
def test_minus_inf_logits_on_zero_utilities_equal_numpy_core(problem, data):
    """Any set of -inf logits on actions of zero utility for the row's class."""
    u, logits, y = problem
    cols = u.matrix.T[y]  # (n, n_actions): u(., y_i); each row has a positive entry
    mask = data.draw(hnp.arrays(np.bool_, cols.shape)) & (cols == 0)
    logits = np.where(mask, -np.inf, logits)
    t_logits = torch.tensor(logits, requires_grad=True)
    t_y = torch.tensor(y)
    for base in ("log", "brier"):
        for reduction in REDUCTIONS:
            got = LOSSES[base](t_logits, t_y, u, reduction=reduction)
            want = _reference(logits, y, u, base, reduction)
            assert torch.isfinite(got).all()
            np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-10, atol=1e-10)
            t_logits.grad = None
            got.sum().backward()
            assert torch.isfinite(t_logits.grad).all()


# ---------------------------------------------------------------- modules
def test_module_buffer_state_dict_and_dtype():
    u = expost.Utility([[2.0, 0.5], [0.0, 1.0], [1.0, 1.0]])
    module = UtilityWeightedCrossEntropy(u)
    state = module.state_dict()
    assert list(state) == ["utility"]
    # float64, the core's precision (so that module and functional forms agree exactly)
    assert state["utility"].dtype == torch.float64
    np.testing.assert_array_equal(state["utility"].numpy(), u.matrix)
    assert [name for name, _ in module.named_buffers()] == ["utility"]
    assert list(module.parameters()) == []
    module.to(torch.float32)  # the buffer casts with the module
    assert module.utility.dtype == torch.float32
    module.to(torch.float64)
    assert module.utility.dtype == torch.float64
    logits = torch.randn(5, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    out = module(logits, y)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, utility_weighted_cross_entropy(logits, y, u))
    # float32 logits with a float64 buffer: computed in the logits' dtype
    assert module(logits.float(), y).dtype == torch.float32


@pytest.mark.parametrize("base", ["log", "brier"])
def test_module_follows_its_buffer(base):
    rng = np.random.default_rng(9)
    diag = expost.Utility.from_class_weights([1.0, 4.0, 2.0])
    full = expost.Utility(rng.uniform(0, 3, (3, 3)))
    logits = torch.randn(8, 3)
    y = torch.tensor(rng.integers(0, 3, 8))
    module = MODULES[base](diag)
    before = module(logits, y)
    module.load_state_dict({"utility": torch.tensor(full.matrix, dtype=torch.float32)})
    after = module(logits, y)
    stored = expost.Utility(module.utility.double().numpy())
    torch.testing.assert_close(after, LOSSES[base](logits, y, stored))
    assert not torch.allclose(before, after)
    with torch.no_grad():  # in-place edits are picked up too
        module.utility.mul_(2.0)
    torch.testing.assert_close(module(logits, y), 2 * after)
    with pytest.raises(ValueError, match="`utility` must be nonnegative"):
        module.load_state_dict({"utility": -torch.ones(3, 3)})
    # copies and pickles keep working
    clone = copy.deepcopy(module)
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for m in (clone, loaded):
        torch.testing.assert_close(m(logits, y), module(logits, y))


@pytest.mark.parametrize(
    "u",
    [
        expost.Utility.emphasize(4, 2, ratio=99),
        expost.Utility([[3.0, 1.0, 0.0], [0.5, 2.0, 1.0], [0.0, 1.0, 4.0]]),
    ],
    ids=["class weights", "full"],
)
def test_normalize_prior_applies_eq21(u):
    m = u.n_classes
    mu = np.arange(1.0, m + 1) / np.arange(1.0, m + 1).sum()
    module = UtilityWeightedCrossEntropy(u, reduction="none", normalize_prior=mu).double()
    np.testing.assert_array_equal(module.utility.numpy(), u.normalized(mu).matrix)
    # Eq 21: the expected weighted log loss of predicting the prior is its entropy.
    logits = torch.tensor(np.log(mu)).expand(m, m)
    per_class = module(logits, torch.arange(m))
    entropy = -(mu * np.log(mu)).sum()
    np.testing.assert_allclose(float(torch.tensor(mu) @ per_class), entropy, rtol=1e-12)
    assert "normalized (Eq 21)" in repr(module)


def test_module_repr_and_inputs():
    assert repr(UtilityWeightedCrossEntropy([1.0, 99.0])) == (
        "UtilityWeightedCrossEntropy(utility=class weights [1, 99], reduction='mean')"
    )
    many = repr(UtilityWeightedBrier(np.linspace(1, 10, 12), reduction="sum", validate=False))
    assert "class weights over 12 classes in [1, 10]" in many and "'sum'" in many
    assert "validate=False" in many
    assert "matrix of 2 actions x 3 classes" in repr(
        UtilityWeightedCrossEntropy(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))
    )
    module = UtilityWeightedCrossEntropy(torch.diag(torch.tensor([2.0, 3.0])), "weighted_mean")
    assert module._diagonal
    logits, y = torch.randn(4, 2), torch.tensor([0, 1, 1, 1])
    torch.testing.assert_close(
        module(logits, y), F.cross_entropy(logits, y, weight=torch.tensor([2.0, 3.0]))
    )


@pytest.mark.parametrize("base", ["log", "brier"])
def test_first_call_under_inference_mode_does_not_poison_caches(base):
    """Converted utilities are cached; ones made in inference mode could not train."""
    for u in (expost.Utility.from_class_weights([1.0, 2.0, 3.0]),
              expost.Utility([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])):
        logits = torch.randn(4, 3, requires_grad=True)
        y = torch.tensor([0, 1, 2, 0])
        with torch.inference_mode():
            module = MODULES[base](u)
            evaluated = (LOSSES[base](logits, y, u), module(logits, y))
        LOSSES[base](logits, y, u).backward()
        module(logits, y).backward()
        torch.testing.assert_close(evaluated[1], module(logits, y).detach())
        assert torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------- invalid input
U3 = expost.Utility.from_class_weights([1.0, 2.0, 3.0])
X3 = torch.zeros(4, 3)
Y3 = torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda f: f(X3, torch.tensor([0, 1, 3, 0]), U3), ValueError,
         r"`target` must be class indices in \[0, 3\), got the index 3"),
        (lambda f: f(X3, torch.tensor([0, -1, 2, 0]), U3), ValueError, "got the index -1"),
        (lambda f: f(torch.zeros(3), Y3[:1], U3), ValueError,
         r"`logits` must be a tensor of shape"),
        (lambda f: f(torch.zeros(4, 5), Y3, U3), ValueError,
         "`logits` must be 3 entries along dim 1 .one per action of the utility., got 5"),
        (lambda f: f(X3, Y3, expost.Utility(np.ones((2, 3)))), ValueError, "got 3"),
        (lambda f: f(X3, Y3, np.ones((3, 2))), ValueError,
         r"`target` must be class indices in \[0, 2\)"),
        (lambda f: f(X3, Y3[:3], U3), ValueError, r"`target` must be a tensor of shape \(4,\)"),
        (lambda f: f(torch.zeros(4, 3, 2), Y3, U3), ValueError, r"shape \(4, 2\)"),
        (lambda f: f(X3.long(), Y3, U3), TypeError, "`logits` must be a floating-point tensor"),
        (lambda f: f(X3.numpy(), Y3, U3), TypeError, "`logits` must be a torch.Tensor"),
        (lambda f: f(X3, Y3.float(), U3), TypeError, "`target` must be an integer tensor"),
        (lambda f: f(X3, Y3.bool(), U3), TypeError, "`target` must be an integer tensor"),
        (lambda f: f(X3, Y3.numpy(), U3), TypeError, "`target` must be a torch.Tensor"),
        (lambda f: f(X3[:0], Y3[:0], U3), ValueError, "`logits` must be a non-empty batch"),
        (lambda f: f(X3, Y3, U3, reduction="average"), ValueError, "`reduction` must be one of"),
        (lambda f: f(X3, Y3, -np.eye(3)), ValueError, "`utility` must be nonnegative"),
        (lambda f: f(X3, Y3, torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 1]])), ValueError,
         "nondegenerate"),
        (lambda f: f(X3, Y3, torch.tensor([1.0, 0.0, 2.0])), ValueError,
         r"`utility` \(1-D, read as class weights\)"),
        (lambda f: f(X3, Y3, torch.ones(3, 3, 3)), ValueError, "`utility` must be a 1-D tensor"),
        (lambda f: f(X3, Y3, "costs"), TypeError, "`utility` must be"),
    ],
)
@pytest.mark.parametrize("base", ["log", "brier"])
def test_invalid_inputs_raise_clear_errors(call, error, match, base):
    with pytest.raises(error, match=match):
        call(LOSSES[base])


def test_invalid_inputs_to_modules_and_ex_post():
    module = UtilityWeightedCrossEntropy(U3)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        module(X3, torch.tensor([0, 1, 5, 0]))
    with pytest.raises(TypeError, match="`target` must be an integer tensor"):
        module(X3, Y3.double())
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        UtilityWeightedBrier(U3, reduction="weighted")
    with pytest.raises(ValueError, match="`normalize_prior` must be 3 entries"):
        UtilityWeightedCrossEntropy(U3, normalize_prior=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"`logits` must be 3 entries along dim 1 \(one per class of the utility\), got 4"):
        expost_log_probs(torch.zeros(2, 4), U3)
    with pytest.raises(TypeError, match="`logits` must be a floating-point tensor"):
        decide(torch.zeros(2, 3, dtype=torch.long), U3)
    # validate=False skips the range check (then torch's own kernels complain, on CPU)
    with pytest.raises((IndexError, RuntimeError)) as info:
        utility_weighted_cross_entropy(X3, torch.tensor([0, 1, 7, 0]), U3, validate=False)
    assert "`target` must be" not in str(info.value)


def test_inputs_are_not_mutated():
    rng = np.random.default_rng(10)
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(rng.integers(0, 4, 6), dtype=torch.int32)
    arr = rng.uniform(0, 2, (4, 4))
    for utility in (arr, torch.tensor(arr), torch.tensor(arr[0] + 0.5)):
        before = [logits.detach().clone(), y.clone(),
                  utility.clone() if isinstance(utility, torch.Tensor) else utility.copy()]
        for fn in (*LOSSES.values(),):
            for reduction in REDUCTIONS:
                fn(logits, y, utility, reduction=reduction).sum().backward()
        expost_log_probs(logits, utility)
        decide(logits, utility)
        UtilityWeightedBrier(utility)(logits, y)
        torch.testing.assert_close(logits.detach(), before[0], rtol=0, atol=0)
        assert y.dtype == torch.int32 and torch.equal(y, before[1])
        if isinstance(utility, torch.Tensor):
            assert torch.equal(utility, before[2])
        else:
            np.testing.assert_array_equal(utility, before[2])


def test_importing_expost_does_not_import_torch():
    code = "import sys, expost; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
