r"""Paired uncertainty for Table 1's gain: seeds resampled jointly, win count, sign test.

The regimes of one seed share initial weights, data order and (for views of one
training) the model itself, so their best values are paired by seed. The
uncertainty about the Mean row's % gain resamples *seeds* with replacement and
takes both regimes' values of the drawn seeds (a paired bootstrap); the win
count says in how many seeds the treatment is better, and the exact two-sided
sign test turns the count into a p-value. With fewer than :data:`MIN_SEEDS`
paired seeds no interval is given: a percentile interval of two or one values
says nothing (one seed gives a zero-width "interval").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._scoring import percent_gain
from ..experiments.metrics import higher_is_better
from ..experiments.regimes import regime_label

__all__ = ["MIN_SEEDS", "PairedGain", "min_resamples", "paired_gains", "paired_values",
           "sign_test", "unpaired_bootstrap"]

#: Fewest seeds with a finished run in both regimes for an interval to be given. With
#: n seeds a resample draws one seed n times with probability n^(1 - n): 11% at 3, so
#: the 95% percentile interval is about the range of the seeds' gains, and excludes 0
#: whenever they agree in sign (which an exact sign test puts at p = 0.25); 1.6% at 4,
#: still in the 2.5% tail; 0.16% at 5, the paper's number of seeds.
MIN_SEEDS = 5


@dataclass(frozen=True)
class PairedGain:
    """Paired evidence about one metric's gain (treatment against baseline).

    Attributes
    ----------
    metric : str
    seeds : tuple
        The seeds with a run of both regimes (the pairs).
    wins, losses, ties : int
        Seeds where the treatment's best value is better, worse, equal.
    sign_p : float
        Exact two-sided sign-test p-value of ``wins`` against ``losses`` (ties
        dropped); 1.0 without untied pairs.
    ci : tuple of float or None
        The bootstrap interval of the Mean row's % gain; None when not computed.
    reason : str
        Why ``ci`` is None ("" otherwise).
    """

    metric: str
    seeds: tuple[Any, ...]
    wins: int
    losses: int
    ties: int
    sign_p: float
    ci: tuple[float, float] | None
    reason: str = ""

    @property
    def n_seeds(self) -> int:
        """Number of paired seeds."""
        return len(self.seeds)

    @property
    def significant(self) -> bool:
        """True when the interval exists and excludes zero."""
        return self.ci is not None and (self.ci[0] > 0 or self.ci[1] < 0)

    def wins_text(self) -> str:
        """``"5/5 seeds, sign test p = 0.062"``."""
        return f"{self.wins}/{self.n_seeds} seeds, sign test p = {self.sign_p:.3g}"


def min_resamples(level: float) -> int:
    """The fewest bootstrap resamples for a percentile interval at ``level``: one in each
    tail of (1 - level) / 2 (40 at 95%). Fewer give an interval of one or two values,
    often of zero width, that looks decisive.

    >>> min_resamples(0.95), min_resamples(0.9)
    (40, 20)
    """
    return math.ceil(2.0 / (1.0 - level) - 1e-9)


def sign_test(wins: int, losses: int) -> float:
    r"""Exact two-sided sign test: the probability of a split at least as uneven.

    .. math:: p = \min\Big(1,\; 2 \sum_{i=0}^{\min(w, l)} \binom{n}{i} 2^{-n}\Big),
              \qquad n = w + l

    Examples
    --------
    >>> sign_test(5, 0), sign_test(4, 1), sign_test(2, 2), sign_test(0, 0)
    (0.0625, 0.375, 1.0, 1.0)
    """
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    return min(1.0, 2.0 * sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n)


def paired_values(best: Sequence[dict[str, Any]], metric: str, baseline: str, treatment: str
                  ) -> tuple[tuple[Any, ...], np.ndarray, np.ndarray]:
    """The seeds run by both regimes and each one's best values (baseline, treatment).

    A regime with two runs of one seed (not a harness layout) pairs its first.
    Records without a seed pair nothing.
    """
    by: dict[str, dict[Any, float]] = {baseline: {}, treatment: {}}
    for r in best:
        g, s = str(r["regime"]), r.get("seed")
        if g in by and s is not None:
            by[g].setdefault(s, float(r[metric]))
    seeds = tuple(s for s in by[baseline] if s in by[treatment])
    b = np.array([by[baseline][s] for s in seeds], dtype=np.float64)
    t = np.array([by[treatment][s] for s in seeds], dtype=np.float64)
    return seeds, b, t


def _undefined(gains: np.ndarray, b: np.ndarray, t: np.ndarray, b_means: np.ndarray,
               regimes: tuple[str, str], n_boot: int) -> str:
    """Why the resampled % gains give no interval ("" when every one is a number).

    The % gain divides by the baseline's mean, so a resample whose baseline mean is
    0 has none (an infinite or undefined gain, not a large one); nor has any resample
    when a run's best value is not a number. A percentile of such gains would be
    NaN, and an interval of NaNs would read as significant.
    """
    if np.isfinite(gains).all():
        return ""
    for g, v in zip(regimes, (b, t), strict=True):
        if not np.isfinite(v).all():
            return f"a {regime_label(g)} run's best value is not a finite number"
    zero = int(np.count_nonzero(b_means == 0.0))
    if zero == 0:  # finite values whose gain overflows
        return "the % gain is not a finite number in some resamples"
    return (f"the {regime_label(regimes[0])} mean is 0 in {zero} of {n_boot} resamples, "
            "where the % gain is undefined")


def paired_gains(
    best: dict[str, list[dict[str, Any]]], baseline: str, treatment: str, *, n_boot: int,
    seed: int, level: float,
) -> dict[str, PairedGain]:
    r"""Per metric: the paired bootstrap interval of the Mean row's % gain, wins and sign test.

    With the paired seeds :math:`s = 1..n` and their best values :math:`b_s, t_s`,
    each resample draws :math:`n` seed indices :math:`I` with replacement (one
    draw serves every metric) and computes
    :math:`\text{percent\_gain}(\bar b_I, \bar t_I)`; the interval is the
    :math:`(1 - \text{level})/2` and :math:`(1 + \text{level})/2` quantiles
    (``numpy.random.default_rng(seed)``). No interval with ``n_boot == 0`` or
    fewer than :data:`MIN_SEEDS` seeds.

    Examples
    --------
    >>> best = {"weighted_loss": [
    ...     {"regime": g, "seed": s, "weighted_loss": v + 0.1 * s}
    ...     for g, v in (("weighted", 0.8), ("expost", 0.7)) for s in range(5)]}
    >>> pg = paired_gains(best, "weighted", "expost", n_boot=100, seed=0, level=0.95)
    >>> g = pg["weighted_loss"]
    >>> g.wins, g.losses, g.sign_p, g.significant
    (5, 0, 0.0625, True)
    """
    out: dict[str, PairedGain] = {}
    idx = None
    for m, recs in best.items():
        seeds, b, t = paired_values(recs, m, baseline, treatment)
        hib = higher_is_better(m)
        diff = (t - b) if hib else (b - t)  # positive: the treatment is better
        wins, losses = int(np.sum(diff > 0)), int(np.sum(diff < 0))
        ci, reason = None, ""
        if n_boot == 0:
            reason = "bootstrap off"
        elif n_boot < min_resamples(level):
            reason = (f"{n_boot} bootstrap resamples; a {100 * level:g}% interval needs at least "
                      f"{min_resamples(level)}")
        elif len(seeds) < MIN_SEEDS:
            reason = (f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} with finished runs of "
                      f"both regimes; an interval needs at least {MIN_SEEDS}")
        else:
            if idx is None or idx.shape[1] != len(seeds):
                idx = np.random.default_rng(seed).integers(0, len(seeds),
                                                           size=(n_boot, len(seeds)))
            b_means = b[idx].mean(axis=1)
            gains = percent_gain(b_means, t[idx].mean(axis=1), higher_is_better=hib)
            reason = _undefined(gains, b, t, b_means, (baseline, treatment), n_boot)
            if not reason:
                tail = (1.0 - level) / 2.0
                lo, hi = np.quantile(gains, [tail, 1.0 - tail])
                ci = (float(lo), float(hi))
        out[m] = PairedGain(m, seeds, wins, losses, len(seeds) - wins - losses,
                            sign_test(wins, losses), ci, reason)
    return out


def unpaired_bootstrap(values: dict[str, dict[str, np.ndarray]], baseline: str, treatment: str,
                       n_boot: int, seed: int, level: float
                       ) -> dict[str, tuple[float, float] | None]:
    """Percentile interval of the Mean row's % gain, runs resampled within each regime.

    Ignores the pairing by seed (for comparison with :func:`paired_gains`); None
    for every metric when a regime has fewer than :data:`MIN_SEEDS` runs.
    """
    first = next(iter(values.values()))
    if min(first[baseline].size, first[treatment].size) < MIN_SEEDS or n_boot < min_resamples(level):
        return dict.fromkeys(values)
    rng = np.random.default_rng(seed)
    idx = {g: rng.integers(0, first[g].size, size=(n_boot, first[g].size))
           for g in (baseline, treatment)}
    tail = (1.0 - level) / 2.0
    boot: dict[str, tuple[float, float] | None] = {}
    for m, v in values.items():
        mb = v[baseline][idx[baseline]].mean(axis=1)
        mt = v[treatment][idx[treatment]].mean(axis=1)
        gains = percent_gain(mb, mt, higher_is_better=higher_is_better(m))
        if not np.isfinite(gains).all():  # a baseline mean of 0, or a value that is not a number
            boot[m] = None
            continue
        lo, hi = np.quantile(gains, [tail, 1.0 - tail])
        boot[m] = (float(lo), float(hi))
    return boot
