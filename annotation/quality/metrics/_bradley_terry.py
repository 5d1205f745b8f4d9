"""Shared maximum-likelihood Bradley–Terry fit (private helper).

Model: P(i beats j) = σ(w_i − w_j). Data: directed (winner, loser, weight) triples, weights may be
fractional (ties = half a win each way, bootstrap multiplicities). Objective (L-BFGS):

    mean_weighted( softplus(w_loser − w_winner) ) + l2/2 · ‖w‖²

The tiny L2 term fixes the translation gauge (the optimum has Σw = 0) and keeps weights finite
when a sub-group is perfectly separated; it changes no ranking of a well-posed problem.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

DEFAULT_L2 = 1e-6


def fit_bradley_terry(
    winners: np.ndarray,
    losers: np.ndarray,
    weights: np.ndarray,
    n: int,
    *,
    l2: float = DEFAULT_L2,
) -> np.ndarray:
    """Return log-strengths w (length n) maximizing the weighted BT likelihood.

    Items that appear in no positive-weight pair get 0 (the gauge centre); callers that care
    must mark them separately.
    """
    if l2 <= 0:
        raise ValueError("l2 must be > 0 (it fixes the translation gauge)")
    winners = np.asarray(winners, dtype=np.intp)
    losers = np.asarray(losers, dtype=np.intp)
    weights = np.asarray(weights, dtype=np.float64)
    keep = weights > 0
    winners, losers, weights = winners[keep], losers[keep], weights[keep]
    w0 = np.zeros(n)
    total = weights.sum()
    if n == 0 or total <= 0:
        return w0
    # aggregate duplicate directed pairs: makes each evaluation O(#distinct pairs)
    pair = winners * n + losers
    uniq, inv = np.unique(pair, return_inverse=True)
    wts = np.bincount(inv, weights=weights) / total
    win, los = uniq // n, uniq % n

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        d = w[los] - w[win]
        loss = float(wts @ np.logaddexp(0.0, d)) + 0.5 * l2 * float(w @ w)
        g = wts * expit(d)  # d loss / d d
        grad = np.bincount(los, weights=g, minlength=n) - np.bincount(win, weights=g, minlength=n)
        return loss, grad + l2 * w

    res = minimize(
        objective,
        w0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-11},
    )
    return np.asarray(res.x)
