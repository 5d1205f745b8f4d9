"""Inter-annotator agreement: Krippendorff's α (nominal), Fleiss' κ, pairwise Cohen's κ.

Input shape: ``(item_id, annotator_id, label)`` triples (labels are any hashable, treated as
nominal categories), turned into a :class:`LabelMatrix` (annotators × items, float codes, NaN =
missing). Every function also accepts a ready ``LabelMatrix``.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import krippendorff
import numpy as np
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa

from annotation.vocabulary import NOT_APPLICABLE

Triple = tuple[Hashable, Hashable, Hashable]


@dataclass(frozen=True)
class LabelMatrix:
    """``data[annotator, item]`` = index into ``labels`` (float), NaN where not labelled."""

    data: np.ndarray
    items: list[Hashable]
    annotators: list[Hashable]
    labels: list[Hashable]

    @classmethod
    def from_codes(cls, data: Any, labels: Iterable[Hashable] | None = None) -> LabelMatrix:
        """Wrap an annotators × items array of integer codes (NaN = missing)."""
        x = np.asarray(data, dtype=np.float64)
        n_labels = int(np.nanmax(x)) + 1 if np.isfinite(x).any() else 0
        labels = list(range(n_labels)) if labels is None else list(labels)
        return cls(x, list(range(x.shape[1])), list(range(x.shape[0])), labels)

    def counts(self) -> np.ndarray:
        """items × labels matrix of how many annotators gave each label."""
        ann, item = np.nonzero(~np.isnan(self.data))
        codes = self.data[ann, item].astype(np.int64)
        n_items, n_labels = self.data.shape[1], len(self.labels)
        flat = np.bincount(item * n_labels + codes, minlength=n_items * n_labels)
        return flat.reshape(n_items, n_labels)


def _index(values: Iterable[Hashable]) -> dict[Hashable, int]:
    return {v: i for i, v in enumerate(dict.fromkeys(values))}


def label_matrix(
    triples: Iterable[Triple], labels: Iterable[Hashable] | None = None
) -> LabelMatrix:
    """Build a :class:`LabelMatrix`; duplicate (item, annotator) pairs raise ValueError.

    ``labels`` fixes the label order (and includes labels nobody used); default: first seen.
    None labels (abstentions) are skipped.
    """
    rows = [t for t in triples if t[2] is not None]
    items = _index(t[0] for t in rows)
    anns = _index(t[1] for t in rows)
    labs = _index(labels if labels is not None else (t[2] for t in rows))
    data = np.full((len(anns), len(items)), np.nan)
    for item, ann, lab in rows:
        i, j = anns[ann], items[item]
        if not np.isnan(data[i, j]):
            raise ValueError(f"annotator {ann!r} labelled item {item!r} twice")
        if lab not in labs:
            raise ValueError(f"label {lab!r} not in labels")
        data[i, j] = labs[lab]
    return LabelMatrix(data, list(items), list(anns), list(labs))


def _as_matrix(x: LabelMatrix | Iterable[Triple]) -> LabelMatrix:
    return x if isinstance(x, LabelMatrix) else label_matrix(x)


def krippendorff_alpha(x: LabelMatrix | Iterable[Triple]) -> float | None:
    """Nominal Krippendorff's α; None when undefined (no item with two labels, or a single
    label value among pairable items so expected disagreement is 0)."""
    m = _as_matrix(x)
    counts = m.counts()
    pairable = counts[counts.sum(axis=1) >= 2]
    if pairable.size == 0 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return None
    return float(
        krippendorff.alpha(
            value_counts=pairable,
            value_domain=list(range(len(m.labels))),
            level_of_measurement="nominal",
        )
    )


def fleiss(
    x: LabelMatrix | Iterable[Triple], n_raters: int | None = None
) -> tuple[float | None, int]:
    """Fleiss' κ and the number of items used.

    Fleiss' κ needs a constant number of raters per item: only items with exactly ``n_raters``
    labels are used (default: the most common count among items with ≥ 2 labels).
    """
    counts = _as_matrix(x).counts()
    per_item = counts.sum(axis=1)
    if n_raters is None:
        multi = per_item[per_item >= 2]
        if multi.size == 0:
            return None, 0
        n_raters = int(np.bincount(multi).argmax())
    table = counts[per_item == n_raters]
    if table.shape[0] == 0 or n_raters < 2:
        return None, 0
    p = table.sum(axis=0) / table.sum()
    if np.isclose((p * p).sum(), 1.0):
        return None, int(table.shape[0])  # one category only: chance agreement is 1
    return float(fleiss_kappa(table, method="fleiss")), int(table.shape[0])


def cohen_pairs(x: LabelMatrix | Iterable[Triple], min_items: int = 2) -> list[dict[str, Any]]:
    """Cohen's κ for every annotator pair with ≥ ``min_items`` shared items:
    ``[{"a", "b", "kappa", "n"}]`` (kappa None when chance agreement is 1)."""
    m = _as_matrix(x)
    n_labels = len(m.labels)
    out = []
    for i, j in itertools.combinations(range(len(m.annotators)), 2):
        both = ~np.isnan(m.data[i]) & ~np.isnan(m.data[j])
        n = int(both.sum())
        if n < min_items:
            continue
        u, v = m.data[i, both].astype(np.int64), m.data[j, both].astype(np.int64)
        table = np.bincount(u * n_labels + v, minlength=n_labels * n_labels).reshape(
            n_labels, n_labels
        )
        pe = (table.sum(axis=0) @ table.sum(axis=1)) / n**2
        kappa = None if np.isclose(pe, 1.0) else float(cohens_kappa(table, return_results=False))
        out.append({"a": m.annotators[i], "b": m.annotators[j], "kappa": kappa, "n": n})
    return out


def agreement_with_reference(
    reference: dict[Hashable, Hashable], labels: Iterable[Triple]
) -> dict[str, Any]:
    """How far a reference rater (an oracle) agrees with other raters: ``labels`` are
    ``(item, rater, label)``; each (item, rater) whose item the reference labelled is a unit.
    ``{"n": units, "agreement": share of equal labels, "kappa": Cohen's κ of the reference
    against the pooled raters}`` (agreement None without units, κ None with fewer than 2 units
    or when chance agreement is 1)."""
    triples: list[Triple] = []
    agree = 0
    for item, rater, label in labels:
        mine = reference.get(item)
        if mine is None:
            continue
        unit = (item, rater)
        triples += [(unit, "reference", mine), (unit, "others", label)]
        agree += mine == label
    n = len(triples) // 2
    pairs = cohen_pairs(triples) if n >= 2 else []
    return {
        "n": n,
        "agreement": agree / n if n else None,
        "kappa": pairs[0]["kappa"] if pairs else None,
    }


def percent_agreement(x: LabelMatrix | Iterable[Triple]) -> float | None:
    """Observed pairwise agreement: share of agreeing (annotator, annotator) pairs per item,
    pooled over items with ≥ 2 labels."""
    counts = _as_matrix(x).counts().astype(np.float64)
    n = counts.sum(axis=1)
    pairs = (n * (n - 1)).sum()
    return float((counts * (counts - 1)).sum() / pairs) if pairs else None


@dataclass(frozen=True)
class AgreementReport:
    """All agreement statistics of one labelling (JSON-ready via ``dataclasses.asdict``)."""

    alpha: float | None
    fleiss_kappa: float | None
    fleiss_items: int
    cohen_mean: float | None
    percent_agreement: float | None
    n_items: int  # items with ≥ 2 labels
    n_annotators: int
    n_labels: int
    cohen: list[dict[str, Any]] = field(default_factory=list)


def agreement(x: LabelMatrix | Iterable[Triple], *, pairwise: bool = True) -> AgreementReport:
    """Krippendorff's α, Fleiss' κ, (mean) pairwise Cohen's κ and percent agreement."""
    m = _as_matrix(x)
    kappa, k_items = fleiss(m)
    pairs = cohen_pairs(m) if pairwise else []
    defined = [p["kappa"] for p in pairs if p["kappa"] is not None]
    return AgreementReport(
        alpha=krippendorff_alpha(m),
        fleiss_kappa=kappa,
        fleiss_items=k_items,
        cohen_mean=float(np.mean(defined)) if defined else None,
        percent_agreement=percent_agreement(m),
        n_items=int((m.counts().sum(axis=1) >= 2).sum()),
        n_annotators=len(m.annotators),
        n_labels=len(m.labels),
        cohen=pairs,
    )


def choice_agreement(triples: Iterable[Triple]) -> AgreementReport:
    """Agreement on the overall choice; triples ``(item, annotator, choice)``, e.g. choice
    "a" / "b" / "tie"; None = abstain (skipped)."""
    return agreement(triples)


def _by_principle(
    verdicts: Iterable[tuple[Hashable, Hashable, Hashable, Hashable]],
) -> dict[Hashable, list[tuple[Hashable, Hashable, Hashable]]]:
    grouped: dict[Hashable, list[tuple[Hashable, Hashable, Hashable]]] = {}
    for item, ann, principle, verdict in verdicts:
        grouped.setdefault(principle, []).append((item, ann, verdict))
    return grouped


def principle_agreement(
    verdicts: Iterable[tuple[Hashable, Hashable, Hashable, Hashable]],
    *,
    na_label: Hashable = NOT_APPLICABLE,
    include_na: bool = False,
) -> dict[Hashable, AgreementReport]:
    """Per-principle agreement on verdicts from ``(item, annotator, principle, verdict)``.

    By default ``na_label`` verdicts count as missing, so this measures agreement on the
    direction where the principle applies; see :func:`applicability_agreement` for n/a itself.
    """
    return {
        p: agreement([t for t in rows if include_na or t[2] != na_label])
        for p, rows in _by_principle(verdicts).items()
    }


def applicability_agreement(
    verdicts: Iterable[tuple[Hashable, Hashable, Hashable, Hashable]],
    *,
    na_label: Hashable = NOT_APPLICABLE,
) -> dict[Hashable, AgreementReport]:
    """Agreement on *whether* each principle applies (verdict == ``na_label`` or not).

    Returns per-principle reports plus key ``None`` pooling all (item, principle) units.
    """
    verdicts = list(verdicts)
    binary = [(i, a, p, v != na_label) for i, a, p, v in verdicts]
    out: dict[Hashable, AgreementReport] = {
        p: agreement(rows, pairwise=True) for p, rows in _by_principle(binary).items()
    }
    out[None] = agreement([((i, p), a, v) for i, a, p, v in binary])
    return out
