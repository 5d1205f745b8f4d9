"""Majority vote, Dawid–Skene, Bradley–Terry, Elo and the bootstrap leaderboard."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotation.quality.metrics.consensus import (
    bradley_terry,
    bt_leaderboard,
    dawid_skene,
    elo,
    majority_vote,
)


def test_majority_vote_and_ties():
    trip = [(1, "u", "a"), (1, "v", "a"), (1, "w", "b"), (2, "u", "a"), (2, "v", "b")]
    votes = majority_vote(trip)
    assert votes[1].label == "a" and votes[1].support == 2 and votes[1].n == 3
    assert votes[1].tied == ()
    assert votes[2].label is None and set(votes[2].tied) == {"a", "b"}
    picks = {majority_vote(trip, ties="random", seed=s)[2].label for s in range(20)}
    assert picks == {"a", "b"}


def _noisy_crowd(seed=0, n_items=300):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_items)
    accuracy = {"good1": 0.95, "good2": 0.9, "spam1": 0.5, "spam2": 0.5, "flip": 0.1}
    trip = []
    for ann, acc in accuracy.items():
        for i in range(n_items):
            lab = truth[i] if rng.random() < acc else 1 - truth[i]
            trip.append((i, ann, int(lab)))
    return truth, accuracy, trip


def test_dawid_skene_beats_majority_and_ranks_annotators():
    truth, accuracy, trip = _noisy_crowd()
    ds = dawid_skene(trip)
    assert ds.converged
    np.testing.assert_allclose(ds.posterior.sum(axis=1), 1.0)
    np.testing.assert_allclose(ds.confusion.sum(axis=2), 1.0)
    labels = ds.item_labels()
    ds_acc = np.mean([labels[i] == truth[i] for i in labels])
    votes = majority_vote(trip)
    mv_acc = np.mean([v.label == truth[i] for i, v in votes.items()])
    assert ds_acc > mv_acc
    assert ds_acc > 0.95
    for ann, acc in accuracy.items():
        assert ds.accuracy[ann] == pytest.approx(acc, abs=0.06)


def test_bradley_terry_two_players_closed_form():
    cmp = [("x", "y", "a_wins")] * 6 + [("x", "y", "b_wins")] * 2 + [("y", "x", "tie")] * 2
    w = bradley_terry(cmp)
    # ties = half wins: x has 7 of 10, so w_x − w_y = log(7/3)
    assert w["x"] - w["y"] == pytest.approx(math.log(7 / 3), abs=1e-3)
    assert w["x"] + w["y"] == pytest.approx(0.0, abs=1e-6)


def test_bradley_terry_both_bad_modes():
    cmp = [("x", "y", "a_wins"), ("x", "y", "b_wins"), ("x", "y", "both_bad"), ("y", "z", "tie")]
    assert bradley_terry(cmp)["x"] == pytest.approx(bradley_terry(cmp)["y"], abs=1e-6)
    assert "z" in bradley_terry(cmp)
    with pytest.raises(ValueError):
        bradley_terry([("x", "y", "draw")])
    ignored = bradley_terry([("x", "y", "a_wins"), ("x", "y", "both_bad")], both_bad="ignore")
    assert ignored["x"] > ignored["y"]


def test_bradley_terry_recovers_order():
    rng = np.random.default_rng(3)
    strength = {"m0": 1.0, "m1": 0.3, "m2": -0.2, "m3": -1.1}
    names = list(strength)
    cmp = []
    for _ in range(3000):
        a, b = rng.choice(names, 2, replace=False)
        p = 1 / (1 + math.exp(strength[b] - strength[a]))
        cmp.append((a, b, "a_wins" if rng.random() < p else "b_wins"))
    w = bradley_terry(cmp)
    assert sorted(w, key=w.get, reverse=True) == names
    for n in names:
        assert w[n] - w["m3"] == pytest.approx(strength[n] - strength["m3"], abs=0.2)


def test_elo_updates():
    r = elo([("x", "y", "a_wins")], k=32)
    assert r["x"] == pytest.approx(1016.0) and r["y"] == pytest.approx(984.0)
    r = elo([("x", "y", "a_wins"), ("x", "y", "tie"), ("y", "z", "both_bad")], k=16)
    assert sum(r.values()) == pytest.approx(3000.0)
    assert r["x"] > 1000 > r["y"]


def test_leaderboard_ci_and_rank():
    cmp = [("strong", "weak", "a_wins")] * 40 + [("strong", "weak", "b_wins")] * 10
    cmp += [("mid", "weak", "a_wins")] * 26 + [("mid", "weak", "b_wins")] * 24
    cmp += [("strong", "mid", "tie")] * 4
    board = bt_leaderboard(cmp, n_boot=60, seed=0)
    assert [r["item"] for r in board] == ["strong", "mid", "weak"]
    for r in board:
        assert r["ci_low"] <= r["score"] <= r["ci_high"]
    n = {r["item"]: r["n"] for r in board}
    assert n == {"strong": 54, "mid": 54, "weak": 100}
    rank = {r["item"]: r["rank"] for r in board}
    assert rank["strong"] == 1 and rank["weak"] > rank["strong"]
    assert sum(r["score"] for r in board) / 3 == pytest.approx(1000.0)
    assert bt_leaderboard(cmp, n_boot=60, seed=0) == board
