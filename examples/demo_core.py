"""Ex Post Weighting in a dozen lines of the numpy core.

A synthetic binary problem with known posteriors: the rare class 1 matters 99
times more than class 0. Weighted Training reports p^u(q) (Theorem 1); Ex Post
Weighting reports calibrated q and applies p^u afterwards. With perfect
knowledge both coincide; the paper's point is about what imperfect learners
*learn*, which the harness (`expost run`) measures on real training.
"""

import numpy as np

import expost

rng = np.random.default_rng(0)
n = 20_000
q1 = rng.beta(0.3, 6.0, size=n)  # true posteriors of the rare class
q = np.column_stack([1 - q1, q1])
y = (rng.random(n) < q1).astype(int)

u = expost.Utility.emphasize(2, emphasized=1, ratio=99).normalized(q.mean(axis=0))
print("utility (Eq 21 normalised):", np.round(u.class_weights, 4))
p_u = expost.weighted_prediction(q, u)  # Theorem 1
print("Elkan threshold on q_1:", round(expost.elkan_threshold(u), 4))
print(
    "mean weighted loss of p^u(q):",
    round(float(expost.weighted_loss(p_u, y, u, reduction="mean")), 4),
)
print(
    "mean weighted loss of q as is:",
    round(float(expost.weighted_loss(q, y, u, reduction="mean")), 4),
)
actions = expost.decide(q, u)
print(
    "classification utility:",
    round(float(expost.classification_utility(actions, y, u, reduction="mean")), 4),
)
print(
    "round trip |recover(p^u(q)) - q|:", float(np.abs(expost.recover_posterior(p_u, u) - q).max())
)
