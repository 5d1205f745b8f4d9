"""Aggregating labels: majority vote, Dawid–Skene, Bradley–Terry, Elo and a BT leaderboard.

Pairwise comparisons are ``(a, b, outcome)`` with outcome in ``a_wins`` / ``b_wins`` / ``tie`` /
``both_bad``. Ties count as half a win for each side; ``both_bad`` is a tie by default
(Chatbot Arena's convention) or dropped with ``both_bad="ignore"``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from scipy.special import logsumexp

from annotation.quality.metrics._bradley_terry import DEFAULT_L2, fit_bradley_terry
from annotation.quality.metrics.agreement import LabelMatrix, Triple, label_matrix

A_WINS, B_WINS, TIE, BOTH_BAD = "a_wins", "b_wins", "tie", "both_bad"
Comparison = tuple[Hashable, Hashable, str]
BothBad = Literal["tie", "ignore"]


# ---------------------------------------------------------------- majority vote


class Vote(NamedTuple):
    """Majority label (None when tied and ties are not broken), its vote count, the number of
    votes on the item and the tied top labels (empty when there is a unique winner)."""

    label: Hashable | None
    support: int
    n: int
    tied: tuple[Hashable, ...]


def majority_vote(
    x: LabelMatrix | Iterable[Triple],
    *,
    ties: Literal["abstain", "random"] = "abstain",
    seed: int | None = None,
) -> dict[Hashable, Vote]:
    """Per item plurality label; a tie for first place gives None (``ties="abstain"``) or one
    of the tied labels drawn at random (``ties="random"``, reproducible with ``seed``).
    Items nobody labelled are omitted."""
    m = x if isinstance(x, LabelMatrix) else label_matrix(x)
    if not m.labels:
        return {}
    counts = m.counts()
    n = counts.sum(axis=1)
    top = counts.max(axis=1, initial=0)
    is_top = counts == top[:, None]
    n_top = is_top.sum(axis=1)
    best = is_top.argmax(axis=1)
    labels = np.empty(len(m.labels) + 1, dtype=object)  # 1-D even for tuple labels
    for k, lab in enumerate(m.labels):
        labels[k] = lab
    chosen = labels[np.where(n_top == 1, best, len(m.labels))]
    tied: dict[int, tuple[Hashable, ...]] = {}
    rng = np.random.default_rng(seed)
    for j in np.flatnonzero((n_top > 1) & (n > 0)):
        tied[j] = tuple(labels[np.flatnonzero(is_top[j])].tolist())
        if ties == "random":
            chosen[j] = tied[j][int(rng.integers(len(tied[j])))]
    return {
        item: Vote(lab, sup, tot, tied.get(j, ()))
        for j, (item, lab, sup, tot) in enumerate(
            zip(m.items, chosen.tolist(), top.tolist(), n.tolist(), strict=True)
        )
        if tot > 0
    }


# ---------------------------------------------------------------- Dawid–Skene


@dataclass(frozen=True)
class DawidSkene:
    """EM result. ``posterior[item, label]``; ``confusion[annotator, true, given]`` (rows sum
    to 1); ``accuracy[annotator]`` = expected share of its labels equal to the true label."""

    items: list[Hashable]
    annotators: list[Hashable]
    labels: list[Hashable]
    posterior: np.ndarray
    confusion: np.ndarray
    prior: np.ndarray
    accuracy: dict[Hashable, float]
    n_iter: int
    converged: bool

    def item_labels(self) -> dict[Hashable, Hashable]:
        """Most probable label per item."""
        best = self.posterior.argmax(axis=1)
        return {item: self.labels[b] for item, b in zip(self.items, best, strict=True)}


def dawid_skene(
    x: LabelMatrix | Iterable[Triple],
    *,
    max_iter: int = 100,
    tol: float = 1e-7,
    smoothing: float = 0.01,
) -> DawidSkene:
    """Dawid & Skene (1979) EM for reliability-weighted labels, initialized from vote shares.

    ``smoothing`` is an additive (Dirichlet) pseudo-count on confusion rows and the prior.
    Converged when the log-likelihood improves by less than ``tol`` (relative).
    """
    m = x if isinstance(x, LabelMatrix) else label_matrix(x)
    ann, item = np.nonzero(~np.isnan(m.data))
    lab = m.data[ann, item].astype(np.int64)
    n_items, n_ann, n_lab = len(m.items), len(m.annotators), len(m.labels)
    counts = m.counts().astype(np.float64)
    with np.errstate(invalid="ignore"):
        T = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True), nan=1.0 / max(n_lab, 1))
    ll_old, converged, n_iter = -np.inf, False, 0
    conf = np.full((n_ann, n_lab, n_lab), 1.0 / max(n_lab, 1))
    prior = np.full(n_lab, 1.0 / max(n_lab, 1))
    for it in range(1, max_iter + 1):
        n_iter = it
        # M-step
        prior = T.sum(axis=0) + smoothing
        prior /= prior.sum()
        conf = np.empty((n_ann, n_lab, n_lab))
        for k in range(n_lab):
            conf[:, k, :] = np.bincount(
                ann * n_lab + lab, weights=T[item, k], minlength=n_ann * n_lab
            ).reshape(n_ann, n_lab)
        conf += smoothing
        conf /= conf.sum(axis=2, keepdims=True)
        # E-step
        log_conf = np.log(conf)
        log_t = np.tile(np.log(prior), (n_items, 1))
        for k in range(n_lab):
            log_t[:, k] += np.bincount(item, weights=log_conf[ann, k, lab], minlength=n_items)
        norm = logsumexp(log_t, axis=1, keepdims=True)
        T = np.exp(log_t - norm)
        ll = float(norm.sum())
        if abs(ll - ll_old) <= tol * max(1.0, abs(ll)):
            converged = True
            break
        ll_old = ll
    acc = np.bincount(ann, weights=T[item, lab], minlength=n_ann) / np.maximum(
        np.bincount(ann, minlength=n_ann), 1
    )
    return DawidSkene(
        items=m.items,
        annotators=m.annotators,
        labels=m.labels,
        posterior=T,
        confusion=conf,
        prior=prior,
        accuracy={a: float(v) for a, v in zip(m.annotators, acc, strict=True)},
        n_iter=n_iter,
        converged=converged,
    )


# ---------------------------------------------------------------- pairwise comparisons


@dataclass(frozen=True)
class _Pairs:
    players: list[Hashable]
    winner: np.ndarray  # directed half/full wins, one or two rows per comparison
    loser: np.ndarray
    weight: np.ndarray
    comparison: np.ndarray  # index of the source comparison of each directed row
    n_games: np.ndarray  # comparisons per player


def _pairs(comparisons: Iterable[Comparison], both_bad: BothBad) -> _Pairs:
    index: dict[Hashable, int] = {}
    win, lose, wt, src = [], [], [], []
    games: list[int] = []
    kept = 0
    for a, b, outcome in comparisons:
        if outcome == BOTH_BAD:
            if both_bad == "ignore":
                continue
            outcome = TIE
        if outcome not in (A_WINS, B_WINS, TIE):
            raise ValueError(f"unknown outcome {outcome!r}")
        ia = index.setdefault(a, len(index))
        ib = index.setdefault(b, len(index))
        games.extend((ia, ib))
        if outcome == A_WINS:
            directed = ((ia, ib, 1.0),)
        elif outcome == B_WINS:
            directed = ((ib, ia, 1.0),)
        else:
            directed = ((ia, ib, 0.5), (ib, ia, 0.5))
        for w_, l_, x in directed:
            win.append(w_)
            lose.append(l_)
            wt.append(x)
            src.append(kept)
        kept += 1
    return _Pairs(
        players=list(index),
        winner=np.asarray(win, dtype=np.intp),
        loser=np.asarray(lose, dtype=np.intp),
        weight=np.asarray(wt),
        comparison=np.asarray(src, dtype=np.intp),
        n_games=np.bincount(np.asarray(games, dtype=np.intp), minlength=len(index)),
    )


def bradley_terry(
    comparisons: Iterable[Comparison],
    *,
    both_bad: BothBad = "tie",
    l2: float = DEFAULT_L2,
) -> dict[Hashable, float]:
    """Maximum-likelihood Bradley–Terry log-strengths (natural-log units, mean ≈ 0).

    An item that never wins drifts low and one that never loses drifts high, bounded only by the
    tiny L2 gauge term; rank with care when a comparison graph is disconnected.
    """
    p = _pairs(comparisons, both_bad)
    w = fit_bradley_terry(p.winner, p.loser, p.weight, len(p.players), l2=l2)
    return {k: float(v) for k, v in zip(p.players, w, strict=True)}


def elo(
    comparisons: Iterable[Comparison],
    *,
    k: float = 4.0,
    base: float = 1000.0,
    scale: float = 400.0,
    both_bad: BothBad = "tie",
) -> dict[Hashable, float]:
    """Online Elo ratings, processing comparisons in the given order (tie = 0.5)."""
    ratings: dict[Hashable, float] = {}
    for a, b, outcome in comparisons:
        if outcome == BOTH_BAD:
            if both_bad == "ignore":
                continue
            outcome = TIE
        score = {A_WINS: 1.0, B_WINS: 0.0, TIE: 0.5}.get(outcome)
        if score is None:
            raise ValueError(f"unknown outcome {outcome!r}")
        ra, rb = ratings.setdefault(a, base), ratings.setdefault(b, base)
        expected = 1.0 / (1.0 + 10 ** ((rb - ra) / scale))
        ratings[a] = ra + k * (score - expected)
        ratings[b] = rb - k * (score - expected)
    return ratings


def bt_leaderboard(
    comparisons: Sequence[Comparison],
    *,
    n_boot: int = 100,
    seed: int | None = None,
    ci: float = 0.95,
    base: float = 1000.0,
    scale: float = 400.0,
    both_bad: BothBad = "tie",
    l2: float = DEFAULT_L2,
) -> list[dict[str, Any]]:
    """Bradley–Terry leaderboard on the Elo scale (score = base + scale · w / ln 10) with
    percentile bootstrap CIs over resampled comparisons.

    Rows ``{"item", "score", "ci_low", "ci_high", "rank", "n"}`` sorted by score; ``rank`` =
    1 + number of items whose ``ci_low`` exceeds this item's ``ci_high`` (Chatbot Arena style).
    """
    p = _pairs(comparisons, both_bad)
    n_players = len(p.players)
    if n_players == 0:
        return []
    n_cmp = int(p.comparison.max()) + 1 if p.comparison.size else 0
    to_elo = scale / np.log(10.0)

    # aggregate directed rows into distinct (winner, loser) pairs once; resamples reweight them
    pair, inv = np.unique(p.winner * max(n_players, 1) + p.loser, return_inverse=True)
    win, lose = pair // max(n_players, 1), pair % max(n_players, 1)

    def fit(row_weight: np.ndarray) -> np.ndarray:
        weight = np.bincount(inv, weights=row_weight, minlength=pair.size)
        w = fit_bradley_terry(win, lose, weight, n_players, l2=l2)
        return base + to_elo * (w - w.mean())

    point = fit(p.weight)
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, n_players))
    for r in range(n_boot):
        mult = np.bincount(rng.integers(0, n_cmp, size=n_cmp), minlength=n_cmp)
        boots[r] = fit(p.weight * mult[p.comparison])
    if n_boot:
        lo, hi = np.percentile(boots, [50 * (1 - ci), 50 * (1 + ci)], axis=0)
    else:
        lo = hi = np.full(n_players, np.nan)
    rows = []
    for i in np.argsort(-point, kind="stable"):
        rows.append(
            {
                "item": p.players[i],
                "score": float(point[i]),
                "ci_low": float(lo[i]) if n_boot else None,
                "ci_high": float(hi[i]) if n_boot else None,
                "rank": 1 + int((lo > hi[i]).sum()) if n_boot else None,
                "n": int(p.n_games[i]),
            }
        )
    return rows
