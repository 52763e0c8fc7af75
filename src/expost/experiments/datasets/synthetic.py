"""A generative model whose posteriors P(Y | X) are known exactly.

Gaussian class-conditionals with an imbalanced prior: what a trained model
learns (``learned_posteriors``, Proposition 1) can be checked against the
truth, and the Bayes-optimal decisions and losses are available.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import log_softmax

from ..._validation import _error, check_prior, describe
from ._api import register_dataset
from ._base import PAPER_FRACTIONS, DataSplits, stratified_split


def class_means(n_classes: int, n_features: int, separation: float) -> NDArray[np.float64]:
    """Deterministic class means, neighbours ``separation`` apart.

    With two or more features the means lie on a circle in the first two
    coordinates (radius :math:`s / (2 \\sin(\\pi/m))`); with one feature, on a
    centred line with spacing ``s``.

    >>> class_means(3, 2, 1.0).round(3)
    array([[ 0.577,  0.   ],
           [-0.289,  0.5  ],
           [-0.289, -0.5  ]])
    """
    means = np.zeros((n_classes, n_features))
    if n_features == 1:
        means[:, 0] = separation * (np.arange(n_classes) - (n_classes - 1) / 2.0)
    else:
        radius = separation / (2.0 * np.sin(np.pi / n_classes))
        angle = 2.0 * np.pi * np.arange(n_classes) / n_classes
        means[:, 0] = radius * np.cos(angle)
        means[:, 1] = radius * np.sin(angle)
    return means


def posterior(
    x: ArrayLike, means: ArrayLike, class_std: ArrayLike, prior: ArrayLike
) -> NDArray[np.float64]:
    r"""Exact posterior of the Gaussian mixture, row by row.

    With :math:`X \mid Y=k \sim \mathcal N(\mu_k, \sigma_k^2 I_d)` and prior
    :math:`\pi`, Bayes' rule gives

    .. math::

        P(Y = k \mid x) = \operatorname{softmax}_k\Big(\log \pi_k - d \log \sigma_k
            - \frac{\lVert x - \mu_k \rVert^2}{2 \sigma_k^2}\Big),

    computed with a log-softmax (stable for far-away ``x``).

    Examples
    --------
    >>> import numpy as np
    >>> means = np.array([[-1.0], [1.0]])
    >>> posterior([[0.0]], means, [1.0, 1.0], [0.25, 0.75])  # the boundary: the prior
    array([[0.25, 0.75]])
    """
    x = np.asarray(x, dtype=np.float64)
    mu = np.asarray(means, dtype=np.float64)
    sd = np.asarray(class_std, dtype=np.float64)
    sq = ((x[:, None, :] - mu[None, :, :]) ** 2).sum(axis=-1)
    logits = np.log(np.asarray(prior, dtype=np.float64)) - x.shape[1] * np.log(sd) - sq / (2 * sd**2)
    return np.exp(log_softmax(logits, axis=1))


def _geometric_prior(m: int) -> NDArray[np.float64]:
    w = 0.5 ** np.arange(m)
    return w / w.sum()


def _checked(*, n_samples: int, n_classes: int, n_features: int, separation: float,
             prior: Any, class_std: Any, **_: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The options' checks (at config load and when built); the prior and class deviations."""
    if n_samples < 10:
        raise ValueError(_error("n_samples", "an integer >= 10", describe(n_samples)))
    if n_classes < 2:
        raise ValueError(_error("n_classes", "an integer >= 2", describe(n_classes)))
    if n_features < 1:
        raise ValueError(_error("n_features", "an integer >= 1", describe(n_features)))
    if not np.isfinite(separation) or separation < 0:
        raise ValueError(_error("separation", "a finite number >= 0", describe(separation)))
    pi = _geometric_prior(n_classes) if prior is None else check_prior(
        prior, "prior", n_classes=n_classes)
    if class_std is None:
        sd = np.ones(n_classes)
    else:
        sd = np.asarray(class_std, dtype=np.float64)
        if sd.shape != (n_classes,) or not np.isfinite(sd).all() or (sd <= 0).any():
            raise ValueError(
                _error("class_std", f"{n_classes} positive finite numbers", describe(class_std))
            )
    return pi, sd


@register_dataset("synthetic", check=_checked)
def synthetic(
    *,
    seed: int,
    n_samples: int = 6000,
    n_classes: int = 3,
    n_features: int = 2,
    separation: float = 2.0,
    prior: tuple[float, ...] | None = None,
    class_std: tuple[float, ...] | None = None,
) -> DataSplits:
    r"""Gaussian classes with known posteriors (meta["test_posteriors"]).

    Draws :math:`Y \sim \pi` and :math:`X \mid Y=k \sim \mathcal N(\mu_k,
    \sigma_k^2 I)` (see :func:`posterior`), then splits 70/20/10
    train/test/validation, stratified. ``meta`` holds the exact posteriors of
    every split (``train_posteriors``, ``val_posteriors``,
    ``test_posteriors``, float64, computed from the float32 inputs the model
    sees) and the generative parameters (``prior``, ``means``, ``class_std``).

    Parameters
    ----------
    seed : int
        Fixes the draws and the split. The means do not depend on it.
    n_samples : int, default 6000
        Examples in all three splits together.
    n_classes, n_features : int, default 3, 2
    separation : float, default 2.0
        Distance between neighbouring class means (in units of a unit-variance
        class's standard deviation).
    prior : sequence of float, optional
        Class probabilities; default imbalanced, :math:`\pi_k \propto 2^{-k}`.
    class_std : sequence of float, optional
        Per-class standard deviations (default 1); unequal values give
        quadratic Bayes boundaries.

    Examples
    --------
    >>> from expost.experiments.datasets import load_dataset
    >>> data = load_dataset("synthetic", seed=0, n_samples=1000)
    >>> data.meta["test_posteriors"].shape, data.meta["prior"].round(3)
    ((200, 3), array([0.571, 0.286, 0.143]))
    """
    pi, sd = _checked(n_samples=n_samples, n_classes=n_classes, n_features=n_features,
                      separation=separation, prior=prior, class_std=class_std)
    means = class_means(n_classes, n_features, float(separation))
    rng = np.random.default_rng(seed)
    y = rng.choice(n_classes, size=n_samples, p=pi).astype(np.int64)
    x = (means[y] + sd[y, None] * rng.standard_normal((n_samples, n_features))).astype(np.float32)
    post = posterior(x, means, sd, pi)
    train, test, val = stratified_split(y, PAPER_FRACTIONS, seed=seed)
    return DataSplits.from_arrays(
        "synthetic", x, y, (train, val, test),
        class_names=[f"class {k}" for k in range(n_classes)],
        meta={
            "train_posteriors": post[train],
            "val_posteriors": post[val],
            "test_posteriors": post[test],
            "prior": pi,
            "means": means,
            "class_std": sd,
        },
    )
