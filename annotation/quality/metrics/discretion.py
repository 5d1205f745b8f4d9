"""Discretion metrics of Buyl et al., "AI Alignment at Your Discretion" (arXiv:2502.10441).

Inputs (definitions as in shared/research/discretion.md):

* ``P``: principle verdict matrix, n comparisons × K principles, values +1 (principle prefers
  response 1), −1 (prefers response 0), 0 (indifferent / not applicable). NaN is read as 0.
* ``a``: annotator preference vector of length n, +1 / −1, 0 = abstain (excluded everywhere).

Weights use the encoding ``float`` (finite BT weight), ``+inf`` (never loses a conflict), ``−inf``
(never wins one), ``NaN`` (undefined: in no conflict where the annotator was decisive). JSON form:
``"inf"``, ``"-inf"``, ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import kendalltau

from annotation.quality.metrics._bradley_terry import DEFAULT_L2, fit_bradley_terry

CONSENSUS, CONFLICT, INDIFFERENCE = 0, 1, 2
CATEGORY_NAMES = ("consensus", "conflict", "indifference")
TIE_TOL = 1e-6  # finite weights closer than this are one priority tier
_CHUNK = 1 << 18  # rows per block of the win-count einsum (bounds temporary memory)

#: Declared-precedence tiers (lower = higher precedence). "platform" is the pre-2025-09 name of
#: the OpenAI Model Spec's "root" level; "hard_constraint" is Anthropic's absolute tier.
AUTHORITY_TIERS: dict[str, int] = {
    "hard_constraint": 0,
    "root": 0,
    "platform": 0,
    "system": 1,
    "developer": 2,
    "user": 3,
    "guideline": 4,
}

WeightLike = float | str | None


# ---------------------------------------------------------------- input coercion


def as_verdicts(P: Any) -> np.ndarray:
    """Return ``P`` as an int8 n×K matrix of −1/0/+1 (NaN → 0); raise on other values."""
    x = np.asarray(P)
    if x.ndim != 2:
        raise ValueError(f"P must be 2-D (n × K), got shape {x.shape}")
    if x.dtype == np.int8 and (x.size == 0 or (x.min() >= -1 and x.max() <= 1)):
        return x
    if x.dtype.kind == "f":
        x = np.nan_to_num(x, nan=0.0)
    out = np.sign(x).astype(np.int8)
    if not np.array_equal(out, x):
        raise ValueError("P values must be -1, 0 or +1 (NaN = indifferent)")
    return out


def as_preferences(a: Any, n: int | None = None) -> np.ndarray:
    """Return ``a`` as an int8 vector of −1/0/+1 (NaN → 0 = abstain); check its length."""
    x = np.asarray(a)
    if x.ndim != 1:
        raise ValueError(f"a must be 1-D, got shape {x.shape}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"a has length {x.shape[0]}, P has {n} rows")
    if x.dtype.kind == "f":
        x = np.nan_to_num(x, nan=0.0)
    out = np.sign(x).astype(np.int8)
    if not np.array_equal(out, x):
        raise ValueError("a values must be -1, 0 or +1 (NaN = abstain)")
    return out


# ---------------------------------------------------------------- categories


@dataclass(frozen=True)
class Categories:
    """Per-comparison category codes (0 consensus, 1 conflict, 2 indifference) and the consensus
    sign (+1/−1 on consensus rows, 0 elsewhere)."""

    category: np.ndarray
    sign: np.ndarray

    @property
    def counts(self) -> dict[str, int]:
        c = np.bincount(self.category, minlength=3)
        return {name: int(c[i]) for i, name in enumerate(CATEGORY_NAMES)}


def categories(P: Any) -> Categories:
    """Classify every comparison as consensus / conflict / indifference (research §1.4)."""
    v = as_verdicts(P)
    pos = (v > 0).any(axis=1)
    neg = (v < 0).any(axis=1)
    category = np.full(v.shape[0], CONSENSUS, dtype=np.int8)
    category[pos & neg] = CONFLICT
    category[~pos & ~neg] = INDIFFERENCE
    sign = pos.astype(np.int8) - neg.astype(np.int8)  # 0 on conflict and indifference rows
    return Categories(category=category, sign=sign)


# ---------------------------------------------------------------- DA


@dataclass(frozen=True)
class Arbitrariness:
    """DA = numerator / denominator; ``value`` None when no decisive consensus row exists."""

    value: float | None
    numerator: int
    denominator: int
    sd: float | None


def _da_from_sign(
    sign: np.ndarray, a: np.ndarray, bootstrap: int, seed: int | None
) -> Arbitrariness:
    decisive = (sign != 0) & (a != 0)
    den = int(decisive.sum())
    num = int((decisive & (sign * a < 0)).sum())
    if den == 0:
        return Arbitrariness(None, 0, 0, None)
    p = num / den
    sd = None
    if bootstrap:
        # Resampling den Bernoulli outcomes with replacement: the error count is exactly
        # Binomial(den, p), so the nonparametric bootstrap of the mean needs no row indices.
        draws = np.random.default_rng(seed).binomial(den, p, size=bootstrap) / den
        sd = float(draws.std(ddof=1)) if bootstrap > 1 else 0.0
    return Arbitrariness(p, num, den, sd)


def discretion_arbitrariness(
    P: Any, a: Any, bootstrap: int = 0, seed: int | None = None
) -> Arbitrariness:
    """Share of decisive consensus comparisons where ``a`` contradicts the consensus (§1.5).

    ``bootstrap`` resamples of the decisive consensus rows give ``sd`` (None when 0).
    """
    cats = categories(P)
    return _da_from_sign(cats.sign, as_preferences(a, cats.sign.shape[0]), bootstrap, seed)


# ---------------------------------------------------------------- PS


class Supremacy(NamedTuple):
    """``ps[c, c']`` = share of decisive (c, c′) conflicts won by c (NaN where ``n`` = 0);
    ``n[c, c′]`` = number of those conflicts (symmetric)."""

    ps: np.ndarray
    n: np.ndarray

    @property
    def wins(self) -> np.ndarray:
        return np.rint(np.nan_to_num(self.ps) * self.n).astype(np.int64)


def _win_counts(v: np.ndarray, a: np.ndarray, row_weights: np.ndarray | None = None) -> np.ndarray:
    """W[c, c′] = Σ_rows weight · [c agrees with a] · [c′ disagrees with a].

    Blocked integer einsum: exact, bounded memory, and no BLAS call (OpenBLAS threads spin
    badly on the small matrices of a typical dataset on a shared worker).
    """
    k = v.shape[1]
    wins = np.zeros((k, k), dtype=np.float64 if row_weights is not None else np.int64)
    for start in range(0, v.shape[0], _CHUNK):
        s = v[start : start + _CHUNK] * a[start : start + _CHUNK, None]  # int8, -1/0/+1
        disagree = (s < 0).astype(np.int32)
        if row_weights is None:
            wins += np.einsum("ij,ik->jk", (s > 0).astype(np.int32), disagree)
        else:
            agree = (s > 0) * row_weights[start : start + _CHUNK, None]
            wins += np.einsum("ij,ik->jk", agree, disagree)
    return wins


def _supremacy_from_wins(wins: np.ndarray) -> Supremacy:
    n = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        ps = np.where(n > 0, wins / np.where(n > 0, n, 1), np.nan)
    return Supremacy(ps=ps, n=n)


def principle_supremacy(P: Any, a: Any) -> Supremacy:
    """K×K principle supremacy PS and conflict counts N for one annotator (§1.6).

    A conflict between c and c′ on a row where ``a`` ≠ 0 means exactly one of them agrees with
    ``a``; so with W = Agree.T @ Disagree, N = W + W.T and PS = W / N.
    """
    v = as_verdicts(P)
    return _supremacy_from_wins(_win_counts(v, as_preferences(a, v.shape[0])))


# ---------------------------------------------------------------- priorities


@dataclass(frozen=True)
class Priorities:
    """Principle priority weights w* (+inf / −inf / NaN = undefined) and the induced ranking.

    ``ranking``: tiers from highest to lowest priority, each a list of tied keys; undefined
    principles are not ranked and listed in ``undefined``.
    """

    keys: list[Hashable]
    weights: np.ndarray
    ranking: list[list[Hashable]]
    undefined: list[Hashable]

    def as_dict(self) -> dict[Hashable, float]:
        return {k: float(w) for k, w in zip(self.keys, self.weights, strict=True)}

    def encoded(self) -> dict[Hashable, float | str | None]:
        return {k: encode_weight(w) for k, w in zip(self.keys, self.weights, strict=True)}


def _dense_tiers(x: np.ndarray, tol: float) -> np.ndarray:
    """Dense ranks (0 = lowest) of non-NaN values; values within ``tol`` (chained) share one."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    with np.errstate(invalid="ignore"):
        same = (np.diff(xs) <= tol) | (xs[1:] == xs[:-1])
    tiers = np.empty(x.shape[0], dtype=np.int64)
    tiers[order] = np.concatenate([[0], np.cumsum(~same)])
    return tiers


def _ranking(keys: Sequence[Hashable], w: np.ndarray, tol: float) -> list[list[Hashable]]:
    defined = np.flatnonzero(~np.isnan(w))
    if defined.size == 0:
        return []
    tiers = _dense_tiers(w[defined], tol)
    groups: list[list[Hashable]] = [[] for _ in range(int(tiers.max()) + 1)]
    for idx, t in zip(defined, tiers, strict=True):
        groups[t].append(keys[idx])
    return groups[::-1]


def priority_weights(
    PS: Any,
    N: Any,
    keys: Sequence[Hashable] | None = None,
    *,
    l2: float = DEFAULT_L2,
    tol: float = TIE_TOL,
) -> Priorities:
    """Bradley–Terry priority weights from PS and N (§1.7).

    Principles in no conflict (N row all 0) are undefined (NaN). Of the others, one that never
    loses gets +inf, one that never wins −inf (the authors' convention, one pass); the remaining
    ones are fitted by L-BFGS on Σ N·BCE(σ(w_c − w_c′), PS) restricted to finite pairs, with a
    tiny L2 that fixes the gauge (Σw = 0 per fit). Only the ranking is meaningful.
    """
    N = np.asarray(N, dtype=np.float64)
    PS = np.asarray(PS, dtype=np.float64)
    k = N.shape[0]
    if N.shape != (k, k) or PS.shape != (k, k):
        raise ValueError("PS and N must be K×K")
    keys = list(range(k)) if keys is None else list(keys)
    if len(keys) != k:
        raise ValueError(f"{len(keys)} keys for {k} principles")
    wins = np.where(N > 0, np.nan_to_num(PS) * N, 0.0)
    won, lost = wins.sum(axis=1), wins.sum(axis=0)
    involved = N.sum(axis=1) > 0
    w = np.full(k, np.nan)
    w[involved & (lost == 0)] = np.inf
    w[involved & (won == 0)] = -np.inf
    finite = np.flatnonzero(involved & (won > 0) & (lost > 0))
    if finite.size:
        sub = wins[np.ix_(finite, finite)]
        win_idx, lose_idx = np.nonzero(sub > 0)
        w[finite] = fit_bradley_terry(win_idx, lose_idx, sub[win_idx, lose_idx], finite.size, l2=l2)
    return Priorities(
        keys=keys,
        weights=w,
        ranking=_ranking(keys, w, tol),
        undefined=[keys[i] for i in np.flatnonzero(~involved)],
    )


# ---------------------------------------------------------------- weights encoding, DD


def encode_weight(x: float | None) -> float | str | None:
    """JSON form of a weight: +inf → "inf", −inf → "-inf", NaN/None → None, else float."""
    if x is None or math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x)


def decode_weight(x: WeightLike) -> float:
    """Inverse of :func:`encode_weight` (None → NaN)."""
    if x is None:
        return math.nan
    if isinstance(x, str):
        if x not in ("inf", "-inf"):
            raise ValueError(f"bad weight {x!r}")
        return math.inf if x == "inf" else -math.inf
    return float(x)


def _weight_map(w: Any) -> dict[Hashable, float]:
    if isinstance(w, Priorities):
        return w.as_dict()
    if isinstance(w, Mapping):
        return {k: decode_weight(v) for k, v in w.items()}
    return {i: decode_weight(v) for i, v in enumerate(np.asarray(w, dtype=object).tolist())}


def discrepancy(w_a: Any, w_b: Any, *, tol: float = TIE_TOL) -> float | None:
    """Discretion discrepancy DD = (1 − τ_b) / 2 between two priority weightings (§1.8).

    ``w_a``/``w_b``: :class:`Priorities`, mappings key → weight (floats or JSON-encoded), or
    aligned sequences. Only principles defined (not NaN/None) in both are compared; ±inf are
    the extreme ranks and tie among themselves; finite weights within ``tol`` tie. Returns None
    when τ_b is undefined (fewer than 2 common principles or one side all tied).
    """
    ma, mb = _weight_map(w_a), _weight_map(w_b)
    common = [k for k, v in ma.items() if not math.isnan(v) and not math.isnan(mb.get(k, math.nan))]
    if len(common) < 2:
        return None
    ra = _dense_tiers(np.array([ma[k] for k in common]), tol)
    rb = _dense_tiers(np.array([mb[k] for k in common]), tol)
    if ra.max() == 0 or rb.max() == 0:
        return None
    tau = kendalltau(ra, rb, variant="b").statistic
    # rounding removes float noise of τ_b (identical rankings give exactly 0)
    return None if np.isnan(tau) else round(min(max((1.0 - float(tau)) / 2.0, 0.0), 1.0), 12)


def declared_weights(
    priorities: Mapping[Hashable, Any], tiers: Mapping[str, int] = AUTHORITY_TIERS
) -> dict[Hashable, float | None]:
    """Turn declared precedence into weights comparable by :func:`discrepancy`.

    Values: a number (declared priority, lower = higher precedence), an authority tier name
    (looked up in ``tiers``), a tuple of those compared lexicographically, e.g.
    ``("developer", 2)``, or None (undeclared → undefined). Weight = dense rank from the
    lowest precedence (0) up, so the highest precedence gets the largest weight and equal
    declarations tie.
    """

    def sort_key(v: Any) -> tuple[float, ...]:
        if isinstance(v, tuple | list):
            return tuple(x for item in v for x in sort_key(item))
        if isinstance(v, str):
            if v not in tiers:
                raise ValueError(f"unknown authority tier {v!r}")
            return (float(tiers[v]),)
        return (float(v),)

    declared = {k: sort_key(v) for k, v in priorities.items() if v is not None}
    levels = sorted(set(declared.values()), reverse=True)  # lowest precedence first
    weight = {key: float(r) for r, key in enumerate(levels)}
    return {k: (weight[declared[k]] if k in declared else None) for k in priorities}


# ---------------------------------------------------------------- one-call profiles


def _profile(
    v: np.ndarray,
    sign: np.ndarray,
    a: np.ndarray,
    keys: list[Hashable],
    bootstrap: int,
    seed: int | None,
) -> tuple[dict[str, Any], Priorities]:
    da = _da_from_sign(sign, a, bootstrap, seed)
    sup = _supremacy_from_wins(_win_counts(v, a))
    pri = priority_weights(sup.ps, sup.n, keys)
    ii, jj = np.nonzero(sup.n > 0)
    order = np.lexsort((jj, ii, -sup.n[ii, jj]))
    supremacy = [
        {"winner": keys[i], "loser": keys[j], "ps": float(sup.ps[i, j]), "n": int(sup.n[i, j])}
        for i, j in zip(ii[order], jj[order], strict=True)
    ]
    profile = {
        "da": da.value,
        "da_n": da.denominator,
        "da_sd": da.sd,
        "priority": pri.ranking,
        "weights": pri.encoded(),
        "supremacy": supremacy,
    }
    return profile, pri


def discretion_profile(
    P: Any,
    a: Any,
    keys: Sequence[Hashable] | None = None,
    bootstrap: int = 0,
    seed: int | None = None,
) -> dict[str, Any]:
    """Everything for one annotator as a JSON-serializable dict.

    Keys: ``da``, ``da_n`` (decisive consensus rows), ``da_sd``, ``priority`` (tiers of keys,
    highest first), ``weights`` (key → float | "inf" | "-inf" | None), ``supremacy`` (every
    ordered pair with n > 0: ``{"winner", "loser", "ps", "n"}``, ps = share won by "winner";
    both orientations, sorted by n descending).
    """
    v = as_verdicts(P)
    keys = list(range(v.shape[1])) if keys is None else list(keys)
    a = as_preferences(a, v.shape[0])
    return _profile(v, categories(v).sign, a, keys, bootstrap, seed)[0]


def discretion_report(
    P: Any,
    annotators: Mapping[str, Any],
    keys: Sequence[Hashable] | None = None,
    *,
    reference: str | None = None,
    declared: Mapping[Hashable, Any] | None = None,
    bootstrap: int = 0,
    seed: int | None = None,
) -> dict[str, Any]:
    """Categories once, a profile per annotator, and DD to ``reference`` / to ``declared``.

    Returns ``{"n", "categories": {...}, "annotators": {name: profile + "dd_reference",
    "dd_declared"}}`` (DD entries None when not requested or undefined). JSON-serializable.
    """
    v = as_verdicts(P)
    keys = list(range(v.shape[1])) if keys is None else list(keys)
    cats = categories(v)
    declared_w = declared_weights(declared) if declared is not None else None
    profiles: dict[str, dict[str, Any]] = {}
    fitted: dict[str, Priorities] = {}
    for name, a in annotators.items():
        profiles[name], fitted[name] = _profile(
            v, cats.sign, as_preferences(a, v.shape[0]), keys, bootstrap, seed
        )
    if reference is not None and reference not in fitted:
        raise KeyError(f"reference annotator {reference!r} not given")
    for name, prof in profiles.items():
        ref = fitted[reference] if reference is not None else None
        prof["dd_reference"] = discrepancy(fitted[name], ref) if ref is not None else None
        prof["dd_declared"] = (
            discrepancy(fitted[name], declared_w) if declared_w is not None else None
        )
    return {"n": int(v.shape[0]), "categories": cats.counts, "annotators": profiles}


def discrepancy_bootstrap(
    P: Any,
    annotators: Mapping[str, Any],
    reference: str,
    *,
    n_boot: int = 100,
    seed: int | None = None,
) -> dict[str, dict[str, float | int | None]]:
    """Paired bootstrap of DD(annotator, reference) (§1.8): the same resampled comparisons for
    every annotator, priorities refit per resample. Returns name → {"mean", "sd", "n_valid"}
    over resamples where DD is defined."""
    v = as_verdicts(P)
    n = v.shape[0]
    prefs = {name: as_preferences(a, n) for name, a in annotators.items()}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in prefs}
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
        fits = {}
        for name, a in prefs.items():
            sup = _supremacy_from_wins(_win_counts(v, a, counts))
            fits[name] = priority_weights(sup.ps, sup.n)
        for name in prefs:
            dd = discrepancy(fits[name], fits[reference])
            if dd is not None:
                draws[name].append(dd)
    out: dict[str, dict[str, float | int | None]] = {}
    for name, d in draws.items():
        arr = np.asarray(d)
        out[name] = {
            "mean": float(arr.mean()) if arr.size else None,
            "sd": float(arr.std(ddof=1)) if arr.size > 1 else None,
            "n_valid": int(arr.size),
        }
    return out
