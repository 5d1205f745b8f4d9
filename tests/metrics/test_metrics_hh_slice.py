"""Reference values of the alignment-discretion HH-RLHF slice (research/discretion.md §2.3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from annotation.quality.metrics.discretion import (
    categories,
    discrepancy,
    discretion_arbitrariness,
    discretion_report,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "../shared/data"

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data absent")


@pytest.fixture(scope="module")
def slice_data():
    import hh_slice_data

    return hh_slice_data.principle_matrix(), hh_slice_data.annotators()


def test_category_counts(slice_data):
    P, _ = slice_data
    assert P.shape == (2312, 21)
    assert categories(P).counts == {"consensus": 1172, "conflict": 376, "indifference": 764}


def test_human_arbitrariness(slice_data):
    P, ann = slice_data
    da = discretion_arbitrariness(P, ann["human"], bootstrap=200, seed=0)
    assert (da.numerator, da.denominator) == (339, 1172)
    assert da.value == 339 / 1172
    assert 0.005 < da.sd < 0.03


def test_all_annotators_profiles(slice_data):
    P, ann = slice_data
    rep = discretion_report(P, ann, reference="human")
    assert set(rep["annotators"]) == {
        "human",
        "rm_llama3_8b",
        "rm_mistral_7b",
        "rm_most_downloaded",
        "judge_gpt4o",
        "judge_deepseek_v3",
        "judge_sonnet_3_5",
        "policy_llama3_8b",
    }
    # Mistral RM: 438 exact reward ties abstain (README), so fewer decisive consensus rows
    assert rep["annotators"]["rm_mistral_7b"]["da_n"] < rep["annotators"]["rm_llama3_8b"]["da_n"]
    assert int((ann["rm_mistral_7b"] == 0).sum()) == 438
    for name, prof in rep["annotators"].items():
        assert 0.0 <= prof["da"] <= 1.0
        dd = prof["dd_reference"]
        assert dd == 0.0 if name == "human" else 0.0 < dd < 1.0
    # every principle is in some conflict the human decided: all 21 ranked
    assert sum(len(g) for g in rep["annotators"]["human"]["priority"]) == 21
    assert (
        discrepancy(rep["annotators"]["human"]["weights"], rep["annotators"]["human"]["weights"])
        == 0.0
    )
    assert np.isin(ann["judge_gpt4o"], [-1, 0, 1]).all()
