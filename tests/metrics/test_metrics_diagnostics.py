"""Per-annotator diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.quality.metrics.diagnostics import (
    GoldRow,
    JudgmentRow,
    annotator_diagnostics,
    gold_accuracy,
    length_bias,
    majority_disagreements,
    position_bias,
    sequential_outlier,
    speed,
)


def test_position_bias():
    biased = position_bias([0] * 45 + [1] * 5 + [None] * 10)
    assert biased.n == 50 and biased.share == 0.9 and biased.p_value < 1e-6
    fair = position_bias([0, 1] * 25)
    assert fair.share == 0.5 and fair.p_value == pytest.approx(1.0)
    four = position_bias([0, 1, 2, 3] * 10, n_positions=4)
    assert four.expected == 0.25 and four.p_value == pytest.approx(1.0)
    assert position_bias([None]).share is None


def test_length_bias_and_speed():
    lb = length_bias([True] * 30 + [False] * 10 + [None] * 5)
    assert lb.share == 0.75 and lb.n == 40 and lb.p_value < 0.01
    sp = speed([1.0, 2.0, 2.5, 10.0, None], too_fast_s=3.0)
    assert sp.median_s == 2.25 and sp.too_fast and sp.share_too_fast == 0.75
    assert not speed([5, 6, 7], too_fast_s=3.0).too_fast


def test_sequential_outlier():
    rng = np.random.default_rng(0)
    honest = rng.random(300) < 0.15
    assert not sequential_outlier(honest, 0.15).flagged
    random_clicker = rng.random(300) < 0.5
    out = sequential_outlier(random_clicker, 0.15, alpha=0.01)
    assert out.flagged and out.at is not None and out.at < 100
    assert out.p_value < 0.01
    # the flag fires exactly where the Bonferroni bound is first crossed
    early = sequential_outlier(random_clicker[: out.at], 0.15, horizon=300)
    assert early.flagged and early.at == out.at
    late = sequential_outlier(random_clicker[: out.at - 1], 0.15, horizon=300)
    assert not late.flagged
    assert sequential_outlier([], 0.1).p_value is None


def test_majority_disagreements_leave_one_out():
    rows = [
        JudgmentRow("u", 1, "a"),
        JudgmentRow("v", 1, "a"),
        JudgmentRow("w", 1, "b"),
        JudgmentRow("u", 2, "a"),
        JudgmentRow("v", 2, "b"),
    ]
    dis = majority_disagreements(rows)
    # item 1: u's others = {a, b} tie → skipped; w's others = {a, a} → disagrees
    assert dis["w"].tolist() == [True]
    assert dis["u"].tolist() == [True]  # item 2: v alone says b
    assert dis["v"].tolist() == [True]
    dis2 = majority_disagreements(rows, min_others=2)
    assert "v" not in dis2 and dis2["w"].tolist() == [True]


def test_gold_accuracy():
    rows = [
        GoldRow("u", "a", "a", ["harm"], ["harm"]),
        GoldRow("u", "b", "a", ["help"], ["harm", "honest"]),
        GoldRow("u", "a", "a", [], []),
    ]
    g = gold_accuracy(rows)["u"]
    assert g.n == 3 and g.answer_accuracy == pytest.approx(2 / 3)
    assert g.n_principles == 2 and g.principle_hit == 0.5
    assert g.principle_jaccard == pytest.approx((1 + 0) / 2)


def test_annotator_diagnostics_flags():
    rng = np.random.default_rng(1)
    rows = []
    for item in range(200):
        truth = "a" if rng.random() < 0.5 else "b"
        for ann in ("u", "v", "w"):
            rows.append(
                JudgmentRow(
                    ann,
                    item,
                    truth,
                    picked_position=int(rng.integers(2)),
                    chose_longer=bool(rng.integers(2)),
                    seconds=20.0,
                )
            )
        lazy = "a" if rng.random() < 0.5 else "b"
        rows.append(
            JudgmentRow("lazy", item, lazy, picked_position=0, chose_longer=True, seconds=1.0)
        )
    gold = [GoldRow("u", "a", "a", ["x"], ["x"]), GoldRow("lazy", "b", "a", ["y"], ["x"])]
    diag = annotator_diagnostics(rows, gold)
    assert set(diag["lazy"].flags) == {"position", "length", "too_fast", "outlier"}
    assert diag["u"].flags == []
    assert diag["u"].majority_agreement == 1.0
    assert diag["lazy"].majority_agreement == pytest.approx(0.5, abs=0.1)
    assert diag["u"].gold.answer_accuracy == 1.0 and diag["lazy"].gold.principle_hit == 0.0
    assert diag["v"].gold is None
    assert diag["lazy"].as_dict()["outlier"]["flagged"] is True
