"""Discretion metrics on hand-made cases and random properties (pure, no database)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from annotation.quality.metrics.discretion import (
    CONFLICT,
    CONSENSUS,
    INDIFFERENCE,
    as_verdicts,
    categories,
    declared_weights,
    decode_weight,
    discrepancy,
    discrepancy_bootstrap,
    discretion_arbitrariness,
    discretion_profile,
    discretion_report,
    encode_weight,
    principle_supremacy,
    priority_weights,
)

# rows: consensus +1, consensus −1, conflict, indifference, consensus +1 (one decisive)
P_SMALL = np.array(
    [
        [1, 1, 0],
        [-1, 0, -1],
        [1, -1, 0],
        [0, 0, 0],
        [0, 0, 1],
    ]
)


def test_categories_and_consensus_sign():
    cats = categories(P_SMALL)
    assert cats.category.tolist() == [CONSENSUS, CONSENSUS, CONFLICT, INDIFFERENCE, CONSENSUS]
    assert cats.sign.tolist() == [1, -1, 0, 0, 1]
    assert cats.counts == {"consensus": 3, "conflict": 1, "indifference": 1}


def test_verdict_validation():
    assert as_verdicts(np.array([[np.nan, 1.0]])).tolist() == [[0, 1]]
    with pytest.raises(ValueError):
        as_verdicts(np.array([[2, 0]]))
    with pytest.raises(ValueError):
        as_verdicts(np.array([1, 0]))
    with pytest.raises(ValueError, match="length"):
        discretion_arbitrariness(P_SMALL, [1, 1])


def test_da_counts_only_decisive_consensus_rows():
    # rows 0,1,4 are consensus (+1, −1, +1); row 1 abstains; conflict/indifference ignored
    a = [-1, 0, 1, 1, 1]
    da = discretion_arbitrariness(P_SMALL, a)
    assert (da.numerator, da.denominator) == (1, 2)
    assert da.value == 0.5
    assert da.sd is None


def test_da_undefined_without_decisive_consensus():
    da = discretion_arbitrariness(P_SMALL, [0, 0, 1, -1, 0])
    assert da.value is None and da.denominator == 0


def test_da_bootstrap_sd():
    rng = np.random.default_rng(1)
    P = np.ones((400, 2), dtype=np.int8)
    a = np.where(rng.random(400) < 0.25, -1, 1)
    da = discretion_arbitrariness(P, a, bootstrap=4000, seed=3)
    expected = math.sqrt(da.value * (1 - da.value) / 400)
    assert da.sd == pytest.approx(expected, rel=0.1)
    again = discretion_arbitrariness(P, a, bootstrap=4000, seed=3)
    assert again.sd == da.sd
    assert discretion_arbitrariness(P, np.ones(400), bootstrap=100, seed=0).sd == 0.0


def _supremacy_loop(P, a):
    k = P.shape[1]
    ps, n = np.full((k, k), np.nan), np.zeros((k, k), dtype=int)
    for c in range(k):
        for d in range(k):
            rows = (P[:, c] * P[:, d] < 0) & (a != 0)
            n[c, d] = rows.sum()
            if n[c, d]:
                ps[c, d] = (rows & (P[:, c] * a > 0)).sum() / n[c, d]
    return ps, n


def test_supremacy_matches_definition_loop():
    rng = np.random.default_rng(0)
    P = rng.choice([-1, 0, 0, 1], size=(300, 6))
    a = rng.choice([-1, 0, 1], size=300)
    ps, n = principle_supremacy(P, a)
    ref_ps, ref_n = _supremacy_loop(P, a)
    np.testing.assert_array_equal(n, ref_n)
    np.testing.assert_allclose(ps, ref_ps, equal_nan=True)


def test_supremacy_small_case():
    P = [[1, -1, 0], [1, -1, 0], [-1, 1, 1], [1, 0, -1]]
    ps, n = principle_supremacy(P, [1, 1, 1, 0])
    assert n[0, 1] == n[1, 0] == 3
    assert ps[0, 1] == pytest.approx(2 / 3) and ps[1, 0] == pytest.approx(1 / 3)
    assert n[0, 2] == 1 and ps[2, 0] == 1.0  # row 2: c2 agrees, c0 disagrees
    assert n[1, 2] == 0 and np.isnan(ps[1, 2])  # row 2 has c1, c2 both +1: no conflict
    assert n.diagonal().sum() == 0


def _conflicts(pairs):
    """Rows with principle `win` = +1 and `lose` = −1 (annotator says +1), one per count."""
    rows = []
    for win, lose, count in pairs:
        row = [0] * 5
        row[win], row[lose] = 1, -1
        rows += [row] * count
    return np.array(rows)


def test_priority_weights_inf_undefined_and_bt_fit():
    # c0 never loses, c3 never wins, c1 beats c2 2:1, c4 only in a consensus row
    P = np.vstack(
        [_conflicts([(0, 1, 3), (0, 3, 1), (1, 2, 2), (2, 1, 1), (2, 3, 2)]), [[0, 0, 0, 0, 1]]]
    )
    ps, n = principle_supremacy(P, np.ones(P.shape[0]))
    pri = priority_weights(ps, n, ["c0", "c1", "c2", "c3", "c4"])
    w = pri.weights
    assert w[0] == math.inf and w[3] == -math.inf and math.isnan(w[4])
    # only c1 vs c2 among the finite ones: the BT MLE is w1 − w2 = log(2/1)
    assert w[1] - w[2] == pytest.approx(math.log(2), abs=1e-3)
    assert pri.ranking == [["c0"], ["c1"], ["c2"], ["c3"]]
    assert pri.undefined == ["c4"]
    assert pri.encoded() == {
        "c0": "inf",
        "c1": pytest.approx(w[1]),
        "c2": pytest.approx(w[2]),
        "c3": "-inf",
        "c4": None,
    }


def test_priority_ties_grouped():
    # a and b split 2:2 and both beat c 2:1 → a = b > c; d and e split 1:1 in their own
    # component, which the L2 gauge centres at 0 like the first one (mean of a, b, c = 0).
    P = _conflicts(
        [(0, 1, 2), (1, 0, 2), (0, 2, 2), (1, 2, 2), (2, 0, 1), (2, 1, 1), (3, 4, 1), (4, 3, 1)]
    )
    ps, n = principle_supremacy(P, np.ones(P.shape[0]))
    pri = priority_weights(ps, n, list("abcde"))
    assert pri.ranking == [["a", "b"], ["d", "e"], ["c"]]
    w = pri.weights
    assert w[0] == pytest.approx(w[1], abs=1e-6) and w[0] > 0 > w[2]
    assert w[:3].sum() == pytest.approx(0.0, abs=1e-6)


def test_priority_all_inf_ties():
    P = _conflicts([(0, 2, 1), (1, 2, 1)])
    ps, n = principle_supremacy(P, np.ones(2))
    pri = priority_weights(ps, n, list("abcde"))
    assert pri.ranking == [["a", "b"], ["c"]]
    assert pri.undefined == ["d", "e"]


def test_discrepancy_basic():
    w = {"a": 3.0, "b": 1.0, "c": -1.0, "d": -2.0}
    assert discrepancy(w, w) == 0.0
    assert discrepancy(w, {k: -v for k, v in w.items()}) == 1.0
    assert discrepancy(w, {"a": 1.0, "b": 3.0, "c": -1.0, "d": -2.0}) == pytest.approx(
        (1 - 4 / 6) / 2
    )


def test_discrepancy_ties_inf_and_undefined():
    # tiers a: [0, 0, 1, 2], b: [0, 1, 1, 2] → nc=4, nd=0, one tie on each side:
    # τ_b = 4 / sqrt(5·5) = 0.8, DD = 0.1; "t" undefined in w_a is dropped from both.
    w_a = {"p": -math.inf, "q": "-inf", "r": 0.3, "s": "inf", "t": None}
    w_b = {"p": -2.0, "q": 5.0, "r": 5.0 + 1e-9, "s": math.inf, "t": 3.0}
    assert discrepancy(w_a, w_b) == pytest.approx(0.1)
    assert discrepancy(w_b, w_a) == pytest.approx(0.1)


def test_discrepancy_undefined_cases():
    assert discrepancy({"a": 1.0}, {"a": 2.0}) is None
    assert discrepancy({"a": 1.0, "b": None}, {"a": 2.0, "b": 1.0}) is None
    assert discrepancy({"a": "inf", "b": "inf"}, {"a": 2.0, "b": 1.0}) is None  # all tied
    assert discrepancy([1.0, 2.0, float("nan")], [1.0, 2.0, 0.0]) == 0.0


def test_declared_weights():
    w = declared_weights(
        {
            "safety": "platform",
            "honest": ("developer", 1),
            "style": ("developer", 2),
            "help": "user",
            "misc": None,
        }
    )
    assert w["misc"] is None
    assert w["safety"] > w["honest"] > w["style"] > w["help"]
    num = declared_weights({"a": 1, "b": 2, "c": 2})
    assert num["a"] > num["b"] == num["c"]
    assert num == {"a": 1.0, "b": 0.0, "c": 0.0}
    # revealed order a > c > b: 2 concordant pairs, 0 discordant, the declared tie b=c
    # is a tie on one side only → τ_b = 2 / sqrt(3 · 2)
    revealed = {"a": 5.0, "b": 0.1, "c": 0.2}
    assert discrepancy(num, revealed) == pytest.approx((1 - 2 / math.sqrt(6)) / 2)
    with pytest.raises(ValueError):
        declared_weights({"a": "emperor"})


def test_weight_encoding_roundtrip():
    for x in (math.inf, -math.inf, 1.5):
        assert decode_weight(encode_weight(x)) == x
    assert encode_weight(math.nan) is None and math.isnan(decode_weight(None))


def test_profile_is_json_and_consistent():
    rng = np.random.default_rng(5)
    P = rng.choice([-1, 0, 0, 1], size=(200, 4))
    a = rng.choice([-1, 1], size=200)
    keys = ["w", "x", "y", "z"]
    prof = discretion_profile(P, a, keys, bootstrap=50, seed=1)
    json.dumps(prof, allow_nan=False)
    assert set(prof) == {"da", "da_n", "da_sd", "priority", "weights", "supremacy"}
    da = discretion_arbitrariness(P, a)
    assert (prof["da"], prof["da_n"]) == (da.value, da.denominator)
    ps, n = principle_supremacy(P, a)
    for s in prof["supremacy"]:
        i, j = keys.index(s["winner"]), keys.index(s["loser"])
        assert (s["ps"], s["n"]) == (pytest.approx(ps[i, j]), n[i, j])
    assert len(prof["supremacy"]) == int((n > 0).sum())


def test_report_dd_reference_and_declared():
    rng = np.random.default_rng(2)
    P = rng.choice([-1, 0, 0, 1], size=(300, 4))
    a = rng.choice([-1, 1], size=300)
    rep = discretion_report(
        P, {"h": a, "m": -a}, list("abcd"), reference="h", declared={"a": 1, "b": 2, "c": 3, "d": 4}
    )
    json.dumps(rep, allow_nan=False)
    assert rep["annotators"]["h"]["dd_reference"] == 0.0
    # the opposite annotator reverses every conflict: its priority order is reversed
    assert rep["annotators"]["m"]["dd_reference"] == 1.0
    dd_h, dd_m = (rep["annotators"][k]["dd_declared"] for k in "hm")
    assert dd_h + dd_m == pytest.approx(1.0)
    with pytest.raises(KeyError):
        discretion_report(P, {"h": a}, reference="x")


def test_discrepancy_bootstrap_paired():
    rng = np.random.default_rng(4)
    P = rng.choice([-1, 0, 0, 1], size=(300, 4))
    a = rng.choice([-1, 1], size=300)
    out = discrepancy_bootstrap(P, {"h": a, "same": a.copy(), "rev": -a}, "h", n_boot=10, seed=0)
    assert out["same"]["mean"] == 0.0 and out["same"]["sd"] == 0.0
    assert out["rev"]["mean"] == 1.0
    assert out["h"]["n_valid"] == 10


# ---------------------------------------------------------------- properties

verdicts = arrays(
    np.int8, st.tuples(st.integers(1, 40), st.integers(1, 6)), elements=st.integers(-1, 1)
)


@settings(max_examples=60, deadline=None)
@given(verdicts, st.data())
def test_property_supremacy_complementary(P, data):
    a = data.draw(arrays(np.int8, P.shape[0], elements=st.integers(-1, 1)))
    ps, n = principle_supremacy(P, a)
    np.testing.assert_array_equal(n, n.T)
    defined = n > 0
    np.testing.assert_allclose((ps + ps.T)[defined], 1.0)
    assert np.isnan(ps[~defined]).all()


@settings(max_examples=60, deadline=None)
@given(verdicts, st.data())
def test_property_da_in_unit_interval(P, data):
    a = data.draw(arrays(np.int8, P.shape[0], elements=st.integers(-1, 1)))
    da = discretion_arbitrariness(P, a)
    assert 0 <= da.numerator <= da.denominator
    assert da.value is None or 0.0 <= da.value <= 1.0


@settings(max_examples=60, deadline=None)
@given(verdicts, st.data())
def test_property_dd_self_zero_and_symmetric(P, data):
    a = data.draw(arrays(np.int8, P.shape[0], elements=st.integers(-1, 1)))
    b = data.draw(arrays(np.int8, P.shape[0], elements=st.integers(-1, 1)))
    wa = priority_weights(*principle_supremacy(P, a))
    wb = priority_weights(*principle_supremacy(P, b))
    self_dd = discrepancy(wa, wa)
    assert self_dd is None or self_dd == 0.0
    dd = discrepancy(wa, wb)
    assert dd == discrepancy(wb, wa)
    assert dd is None or 0.0 <= dd <= 1.0
    ranked = [k for group in wa.ranking for k in group]
    assert sorted(ranked + wa.undefined) == list(range(P.shape[1]))
