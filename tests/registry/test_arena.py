"""Arena leaderboard: Bradley–Terry recovers known strengths with honest intervals (pure), and
the project leaderboard from real judgments (overall and per principle) on the API and page."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotation.datasets import bulk
from annotation.projects import services as project_services
from annotation.quality.metrics import consensus as cons
from annotation.workspace import judging, leasing
from models_registry import arena

SCALE = 400 / math.log(10)


def simulate(strengths: dict[str, float], n: int, rng: np.random.Generator) -> list:
    names = list(strengths)
    battles = []
    for _ in range(n):
        i, j = rng.choice(len(names), size=2, replace=False)
        a, b = names[i], names[j]
        p = 1 / (1 + math.exp(strengths[b] - strengths[a]))
        battles.append((a, b, arena.A_WINS if rng.random() < p else arena.B_WINS))
    return battles


def test_bradley_terry_recovers_order_and_intervals_cover_at_nominal_rate():
    strengths = {"m1": -1.0, "m2": -0.4, "m3": 0.1, "m4": 0.6, "m5": 1.2}
    mean = np.mean(list(strengths.values()))
    truth = {k: 1000 + SCALE * (w - mean) for k, w in strengths.items()}
    true_order = sorted(strengths, key=strengths.get, reverse=True)
    rng = np.random.default_rng(7)
    covered = total = recovered = 0
    replicates = 12
    for r in range(replicates):
        board = arena.leaderboard(simulate(strengths, 1500, rng), n_boot=80, seed=r)
        rows = board["rows"]
        recovered += [row["source"] for row in rows] == true_order
        for row in rows:
            total += 1
            covered += row["ci_low"] <= truth[row["source"]] <= row["ci_high"]
            assert row["ci_low"] <= row["score"] <= row["ci_high"]
    coverage = covered / total
    assert recovered >= replicates - 1, recovered
    assert 0.85 <= coverage <= 1.0, coverage  # nominal 95 %; 60 intervals (here 0.93)


def test_battles_from_orderings_ties_both_bad_and_same_source():
    sources = {1: "model:a@1", 2: "model:b@1", 3: "model:c@1", 4: "model:a@1"}
    assert arena.battles_from_ordering([[1], [2, 3]], sources) == [
        ("model:a@1", "model:b@1", "a_wins"),
        ("model:a@1", "model:c@1", "a_wins"),
        ("model:b@1", "model:c@1", "tie"),
    ]
    assert arena.battles_from_ordering([[1], [4]], sources) == []  # same source: no battle
    assert arena.battles_from_ordering([[1], [2]], sources, both_bad=True) == [
        ("model:a@1", "model:b@1", "both_bad")
    ]
    assert arena.battles_from_verdict(2, "prefers", [1, 2, 3], sources) == [
        ("model:b@1", "model:a@1", "a_wins"),
        ("model:b@1", "model:c@1", "a_wins"),
    ]
    assert arena.battles_from_verdict(None, "not_applicable", [1, 2], sources) == []


def test_both_bad_is_a_tie_or_ignored():
    battles = [("a", "b", "a_wins")] * 3 + [("a", "b", "both_bad")] * 3
    tie = arena.leaderboard(battles, n_boot=20)
    ignore = arena.leaderboard(battles, n_boot=20, both_bad="ignore")
    assert tie["battles"] == 6 and ignore["battles"] == 3
    row_tie = {r["source"]: r for r in tie["rows"]}["a"]
    row_ignore = {r["source"]: r for r in ignore["rows"]}["a"]
    assert (row_tie["wins"], row_tie["ties"], row_tie["both_bad"]) == (3, 3, 3)
    assert (row_ignore["wins"], row_ignore["ties"], row_ignore["both_bad"]) == (3, 0, 3)
    assert row_tie["win_rate"] == pytest.approx(0.75) and row_ignore["win_rate"] == 1.0
    # ties pull the strengths together: the gap is smaller when both-bad counts as a tie
    gap = lambda board: board["rows"][0]["score"] - board["rows"][1]["score"]  # noqa: E731
    assert gap(tie) < gap(ignore)
    assert row_tie["elo"] > 1000 and row_tie["elo"] == pytest.approx(
        cons.elo([b for b in battles], both_bad="tie")["a"]
    )
    assert arena.leaderboard([("a", "a", "tie")])["rows"] == []


@pytest.mark.django_db
def test_project_leaderboard_from_judgments_overall_and_per_principle(pq_set, make_user, client):
    from rest_framework.test import APIClient

    from annotation.specs import PromptSpec, ResponseSpec

    project = project_services.create_project(
        name="Arena",
        slug="arena",
        principle_set=pq_set,
        task_kinds=["compare"],
        annotations_per_task=1,
    )
    strong, mid, weak = "model:strong@1", "model:mid@1", "model:weak@1"
    rank = {strong: 0, mid: 1, weak: 2}
    specs = [
        PromptSpec(
            messages=[{"role": "user", "content": f"Battle {i}?"}],
            responses=[ResponseSpec(f"{x} says {i}", x), ResponseSpec(f"{y} says {i}", y)],
            kind="compare",
        )
        for i, (x, y) in enumerate([(strong, weak), (mid, strong), (weak, mid)] * 6)
    ]
    bulk.create_tasks(project=project, specs=specs)
    judge = make_user("arena-judge")
    while (a := leasing.next_task(annotator=judge, project=project)) is not None:
        (r1, s1), (r2, s2) = a.task.task_responses.values_list(
            "response_id", "response__source"
        ).order_by("position")
        better, worse = (r1, r2) if rank[s1] < rank[s2] else (r2, r1)
        n = a.task.pk % 6
        ordering = [[r1, r2]] if n == 5 else [[better], [worse]]
        judging.submit_judgment(
            assignment=a,
            annotator=judge,
            ordering=ordering,
            both_bad=n == 4,
            verdicts={"p": better, "q": worse},  # q favours the weaker model throughout
        )
    admin = make_user("arena-admin", role="admin")
    api = APIClient()
    api.force_authenticate(admin)
    response = api.get("/api/v1/registry/leaderboard", {"project": "arena", "n_boot": 50})
    assert response.status_code == 200, response.content
    board = response.json()
    overall = [row["source"] for row in board["overall"]["rows"]]
    assert overall == [strong, mid, weak]
    assert board["overall"]["battles"] == 18
    assert sum(r["both_bad"] for r in board["overall"]["rows"]) == 2 * 3  # 3 judgments × 2 sides
    assert [r["source"] for r in board["principles"]["p"]["rows"]] == [strong, mid, weak]
    assert [r["source"] for r in board["principles"]["q"]["rows"]] == [weak, mid, strong]
    top = board["overall"]["rows"][0]
    assert top["ci_low"] <= top["score"] <= top["ci_high"] and top["elo"] > 1000

    one = api.get(
        "/api/v1/registry/leaderboard", {"project": "arena", "principle": "q", "n_boot": 10}
    )
    assert list(one.json()["principles"]) == ["q"]
    assert api.get("/api/v1/registry/leaderboard", {"project": "nope"}).status_code == 404
    bad = api.get("/api/v1/registry/leaderboard", {"project": "arena", "principle": "zz"})
    assert bad.status_code == 400

    client.force_login(admin)
    page = client.get("/registry/arena/arena/?n_boot=10&both_bad=ignore")
    assert page.status_code == 200
    assert b"model:strong@1" in page.content and b"Principle q" in page.content
