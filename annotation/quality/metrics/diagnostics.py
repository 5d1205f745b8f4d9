"""Per-annotator quality diagnostics: position and length bias, speed, agreement with the
crowd, a sequential outlier test, and gold accuracy (answer and cited principle)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import binom, binomtest

from annotation.quality.metrics.agreement import label_matrix

DEFAULT_TOO_FAST_S = 3.0
DEFAULT_ALPHA = 0.01


@dataclass(frozen=True)
class JudgmentRow:
    """One submitted judgment, reduced to what the diagnostics need.

    ``label``: the choice (None = abstain). ``picked_position``: display position (0 = shown
    first) of the preferred response, None for ties. ``chose_longer``: None when lengths tie or
    no preference. Rows of one annotator are taken in submission order (``submitted`` if given,
    else input order).
    """

    annotator: Hashable
    item: Hashable
    label: Hashable | None = None
    picked_position: int | None = None
    n_positions: int = 2
    chose_longer: bool | None = None
    seconds: float | None = None
    submitted: float | None = None


@dataclass(frozen=True)
class GoldRow:
    """A judgment on a gold item: the answer vs the expected one, cited vs expected principles."""

    annotator: Hashable
    answer: Hashable
    gold_answer: Hashable
    cited: frozenset[Hashable] | Sequence[Hashable] = ()
    gold_principles: frozenset[Hashable] | Sequence[Hashable] = ()


@dataclass(frozen=True)
class BiasTest:
    """``share`` of n decisive judgments showing the behaviour vs ``expected`` under no bias;
    two-sided exact binomial p-value."""

    n: int
    share: float | None
    expected: float
    p_value: float | None


def _binomial(hits: int, n: int, expected: float) -> BiasTest:
    if n == 0:
        return BiasTest(0, None, expected, None)
    return BiasTest(n, hits / n, expected, float(binomtest(hits, n, expected).pvalue))


def position_bias(picked_positions: Iterable[int | None], n_positions: int = 2) -> BiasTest:
    """Share of picks of the first displayed position (None = tie, skipped); expected 1/K."""
    picks = np.asarray([p for p in picked_positions if p is not None], dtype=np.int64)
    return _binomial(int((picks == 0).sum()), picks.size, 1.0 / n_positions)


def length_bias(chose_longer: Iterable[bool | None]) -> BiasTest:
    """Share of decisive judgments choosing the longer response (None skipped); expected 1/2."""
    x = np.asarray([c for c in chose_longer if c is not None], dtype=bool)
    return _binomial(int(x.sum()), x.size, 0.5)


@dataclass(frozen=True)
class Speed:
    n: int
    median_s: float | None
    share_too_fast: float | None
    too_fast: bool  # median below the threshold


def speed(seconds: Iterable[float | None], too_fast_s: float = DEFAULT_TOO_FAST_S) -> Speed:
    """Median time per judgment and the share under ``too_fast_s`` (None skipped)."""
    s = np.asarray([x for x in seconds if x is not None], dtype=np.float64)
    if s.size == 0:
        return Speed(0, None, None, False)
    med = float(np.median(s))
    return Speed(s.size, med, float((s < too_fast_s).mean()), med < too_fast_s)


@dataclass(frozen=True)
class Outlier:
    """Sequential test result: ``flagged`` at judgment number ``at`` (1-based, None if never);
    ``p_value`` = Bonferroni-adjusted minimum over looks."""

    n: int
    disagreements: int
    p0: float | None
    flagged: bool
    at: int | None
    p_value: float | None


def sequential_outlier(
    disagree: Sequence[bool],
    p0: float | None,
    *,
    alpha: float = DEFAULT_ALPHA,
    horizon: int | None = None,
) -> Outlier:
    """Sequential binomial test of an annotator's disagreements with the crowd majority.

    After each judgment t the running count d_t of disagreements is compared with
    Binomial(t, p0), p0 = the crowd's disagreement rate: p_t = P(X ≥ d_t). The annotator is
    flagged at the first t with p_t < alpha / horizon (Bonferroni over all looks, default
    horizon = number of judgments), so the family-wise false-flag rate is ≤ alpha however
    often one looks — in the spirit of Chatbot Arena's anomalous-user detection.
    """
    d = np.asarray(disagree, dtype=bool)
    n, k = d.size, int(d.sum())
    if n == 0 or p0 is None:
        return Outlier(n, k, p0, False, None, None)
    horizon = max(horizon or n, 1)
    t = np.arange(1, n + 1)
    p = binom.sf(np.cumsum(d) - 1, t, p0)
    hit = np.flatnonzero(p * horizon < alpha)
    return Outlier(
        n=n,
        disagreements=k,
        p0=float(p0),
        flagged=bool(hit.size),
        at=int(hit[0]) + 1 if hit.size else None,
        p_value=float(min(1.0, p.min() * horizon)),
    )


def majority_disagreements(
    rows: Sequence[JudgmentRow], *, min_others: int = 1
) -> dict[Hashable, np.ndarray]:
    """Per annotator, in submission order, whether each judgment disagrees with the strict
    majority of the *other* annotators on that item (leave-one-out, so an annotator never
    votes on its own reference). Judgments without such a majority are skipped."""
    rows = [r for r in rows if r.label is not None]
    if not rows:
        return {}
    m = label_matrix((r.item, r.annotator, r.label) for r in rows)
    item_ix = {it: j for j, it in enumerate(m.items)}
    lab_ix = {lab: k for k, lab in enumerate(m.labels)}
    items = np.fromiter((item_ix[r.item] for r in rows), dtype=np.intp, count=len(rows))
    labs = np.fromiter((lab_ix[r.label] for r in rows), dtype=np.intp, count=len(rows))
    others = m.counts()[items]
    others[np.arange(len(rows)), labs] -= 1
    top = others.max(axis=1)
    valid = ((others == top[:, None]).sum(axis=1) == 1) & (others.sum(axis=1) >= min_others)
    disagree = others.argmax(axis=1) != labs
    order = sorted(
        range(len(rows)), key=lambda i: (rows[i].submitted is None, rows[i].submitted or 0.0, i)
    )
    out: dict[Hashable, list[bool]] = defaultdict(list)
    for i in order:
        if valid[i]:
            out[rows[i].annotator].append(bool(disagree[i]))
    return {a: np.asarray(v, dtype=bool) for a, v in out.items()}


@dataclass(frozen=True)
class GoldScore:
    """Accuracy on gold answers, and on cited principles where gold principles exist:
    ``principle_hit`` = share citing at least one gold principle, ``principle_jaccard`` = mean
    Jaccard overlap of cited and gold principle sets."""

    n: int
    answer_accuracy: float | None
    n_principles: int
    principle_hit: float | None
    principle_jaccard: float | None


def gold_accuracy(rows: Iterable[GoldRow]) -> dict[Hashable, GoldScore]:
    """Per-annotator gold accuracy on the answer and on the cited principle."""
    acc: dict[Hashable, list[bool]] = defaultdict(list)
    hit: dict[Hashable, list[bool]] = defaultdict(list)
    jac: dict[Hashable, list[float]] = defaultdict(list)
    for r in rows:
        acc[r.annotator].append(r.answer == r.gold_answer)
        gold, cited = set(r.gold_principles), set(r.cited)
        if gold:
            hit[r.annotator].append(bool(gold & cited))
            jac[r.annotator].append(len(gold & cited) / len(gold | cited))
    return {
        a: GoldScore(
            n=len(v),
            answer_accuracy=float(np.mean(v)),
            n_principles=len(hit[a]),
            principle_hit=float(np.mean(hit[a])) if hit[a] else None,
            principle_jaccard=float(np.mean(jac[a])) if jac[a] else None,
        )
        for a, v in acc.items()
    }


@dataclass(frozen=True)
class AnnotatorDiagnostics:
    annotator: Hashable
    n: int
    position: BiasTest
    length: BiasTest
    speed: Speed
    majority_agreement: float | None  # share agreeing with the leave-one-out majority
    majority_n: int
    outlier: Outlier
    gold: GoldScore | None = None
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def annotator_diagnostics(
    rows: Sequence[JudgmentRow],
    gold: Iterable[GoldRow] = (),
    *,
    too_fast_s: float = DEFAULT_TOO_FAST_S,
    alpha: float = DEFAULT_ALPHA,
) -> dict[Hashable, AnnotatorDiagnostics]:
    """All diagnostics per annotator. ``flags`` lists which tests fired: "position", "length"
    (p < alpha), "too_fast", "outlier". The outlier test uses, as p0, the pooled disagreement
    rate of all *other* annotators."""
    by_ann: dict[Hashable, list[JudgmentRow]] = defaultdict(list)
    for r in rows:
        by_ann[r.annotator].append(r)
    dis = majority_disagreements(rows)
    total_n = sum(v.size for v in dis.values())
    total_k = sum(int(v.sum()) for v in dis.values())
    golds = gold_accuracy(gold)
    out = {}
    for a, rs in by_ann.items():
        d = dis.get(a, np.zeros(0, dtype=bool))
        rest_n, rest_k = total_n - d.size, total_k - int(d.sum())
        p0 = rest_k / rest_n if rest_n else None
        # position bias over the annotator's most common number of displayed responses
        n_pos = int(np.bincount([r.n_positions for r in rs]).argmax())
        diag = AnnotatorDiagnostics(
            annotator=a,
            n=len(rs),
            position=position_bias(
                (r.picked_position for r in rs if r.n_positions == n_pos), n_pos
            ),
            length=length_bias(r.chose_longer for r in rs),
            speed=speed((r.seconds for r in rs), too_fast_s),
            majority_agreement=float(1.0 - d.mean()) if d.size else None,
            majority_n=int(d.size),
            outlier=sequential_outlier(d, p0, alpha=alpha),
            gold=golds.get(a),
        )
        flags = [
            name
            for name, test in (("position", diag.position), ("length", diag.length))
            if test.p_value is not None and test.p_value < alpha
        ]
        if diag.speed.too_fast:
            flags.append("too_fast")
        if diag.outlier.flagged:
            flags.append("outlier")
        diag.flags.extend(flags)
        out[a] = diag
    return out
