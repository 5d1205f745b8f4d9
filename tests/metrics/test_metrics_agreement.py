"""Agreement statistics against published worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotation.quality.metrics.agreement import (
    LabelMatrix,
    agreement,
    applicability_agreement,
    cohen_pairs,
    fleiss,
    krippendorff_alpha,
    label_matrix,
    percent_agreement,
    principle_agreement,
)

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal example: α = 0.743
K_DATA = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]

# Fleiss (1971) example as on Wikipedia: 10 subjects × 14 raters × 5 categories, κ = 0.210
F_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def _triples_from_rows(rows):
    return [(j, f"coder{i}", v) for i, row in enumerate(rows) for j, v in enumerate(row)]


def _triples_from_table(table):
    out = []
    for item, counts in enumerate(table):
        rater = 0
        for label, c in enumerate(counts):
            for _ in range(c):
                out.append((item, rater, f"cat{label}"))
                rater += 1
    return out


def test_label_matrix_shape_and_duplicates():
    m = label_matrix([("i1", "u", "a"), ("i1", "v", "b"), ("i2", "u", None), ("i2", "v", "a")])
    assert m.items == ["i1", "i2"] and m.annotators == ["u", "v"] and m.labels == ["a", "b"]
    assert np.isnan(m.data[0, 1]) and m.data[1, 1] == 0
    assert m.counts().tolist() == [[1, 1], [1, 0]]
    with pytest.raises(ValueError, match="twice"):
        label_matrix([("i", "u", "a"), ("i", "u", "b")])


def test_krippendorff_worked_example():
    assert krippendorff_alpha(_triples_from_rows(K_DATA)) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_undefined_and_perfect():
    assert krippendorff_alpha([(1, "u", "a"), (1, "v", "a"), (2, "u", "a")]) is None
    perfect = [(i, u, i % 2) for i in range(6) for u in "uvw"]
    assert krippendorff_alpha(perfect) == pytest.approx(1.0)


def test_fleiss_worked_example():
    kappa, n = fleiss(_triples_from_table(F_TABLE))
    assert n == 10
    assert kappa == pytest.approx(0.210, abs=5e-4)


def test_fleiss_uses_modal_rater_count():
    trip = [(i, u, "a" if (i + k) % 3 else "b") for i in range(8) for k, u in enumerate("uvw")]
    trip += [(99, "u", "a"), (99, "v", "b")]  # an item with 2 raters is left out
    kappa, n = fleiss(trip)
    assert n == 8
    assert kappa == pytest.approx(fleiss(trip[:-2])[0])


def test_cohen_worked_example():
    # Wikipedia: 50 items, yes/yes 20, yes/no 5, no/yes 10, no/no 15 → κ = 0.4
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    trip = [t for i, (x, y) in enumerate(pairs) for t in ((i, "A", x), (i, "B", y))]
    (res,) = cohen_pairs(trip)
    assert (res["a"], res["b"], res["n"]) == ("A", "B", 50)
    assert res["kappa"] == pytest.approx(0.4)
    assert percent_agreement(trip) == pytest.approx(0.7)


def test_agreement_report_pairs_and_missing():
    m = LabelMatrix.from_codes([[0, 1, 1, np.nan], [0, 1, 0, 1], [np.nan, 1, 1, 1]])
    rep = agreement(m)
    assert rep.n_annotators == 3 and rep.n_items == 4 and rep.n_labels == 2
    assert len(rep.cohen) == 3
    assert rep.cohen_mean == pytest.approx(
        np.mean([p["kappa"] for p in rep.cohen if p["kappa"] is not None])
    )


def test_principle_and_applicability_agreement():
    verdicts = []
    for item in range(6):
        for ann in ("u", "v"):
            verdicts.append((item, ann, "harm", "a" if item % 2 else "b"))  # full agreement
            verdicts.append(
                (item, ann, "help", "not_applicable" if (item + (ann == "v")) % 2 else "a")
            )
    per = principle_agreement(verdicts)
    assert per["harm"].alpha == pytest.approx(1.0)
    assert per["help"].n_items == 0  # each help item has at most one applicable verdict
    app = applicability_agreement(verdicts)
    assert app["harm"].alpha is None  # always applicable: no variation
    assert app["help"].percent_agreement == 0.0  # u and v never agree on applicability
    assert app[None].n_items == 12
    assert not math.isnan(app[None].alpha)
