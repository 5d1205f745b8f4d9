"""DB → metrics inputs on small hand-made projects, checked against the pure functions."""

import json
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from annotation.datasets.importers.judgments import import_judgments
from annotation.models import Assignment, Judgment, Principle, PrincipleVerdict, TaskResponse
from annotation.quality import inputs as quality_inputs
from annotation.quality import payloads
from annotation.quality.metrics import agreement as agr
from annotation.quality.metrics.discretion import discrepancy, discretion_report
from annotation.vocabulary import SLOT_LETTERS

from .conftest import pair_of

KEYS = ["harmless", "honest", "helpful"]
# oracle verdicts per row (+1 chosen, -1 rejected, 0 n/a): 2 consensus, 1 indifference, 3 conflict
P_ROWS = [
    [1, 0, 0],
    [-1, -1, 0],
    [0, 0, 0],
    [1, 0, -1],
    [0, 1, -1],
    [-1, 1, 0],
]
RM_A = [1, 1, -1, 1, 1, -1]
RM_B = [-1, -1, 0, -1, -1, 1]


def _oracle_csv(write_csv):
    probs = {1: "0.8,0.1,0.1", -1: "0.1,0.8,0.1", 0: "0.1,0.1,0.8"}
    lines = ["row_id,principle_id,prob_A,prob_B,prob_NA"]
    for row, verdicts in enumerate(P_ROWS):
        lines += [f"{row},{c},{probs[v]}" for c, v in enumerate(verdicts)]
    return write_csv("oracle.csv", "\n".join(lines) + "\n")


def _rm_csv(write_csv, name, prefs):
    rewards = {1: "1,0", -1: "0,1", 0: "0.5,0.5"}
    body = "".join(f"{row},{rewards[p]}\n" for row, p in enumerate(prefs))
    return write_csv(f"{name}.csv", "row_id,reward_a,reward_b\n" + body)


@pytest.fixture
def discretion_project(labelled_project, write_csv):
    import_judgments(
        project=labelled_project,
        path=_oracle_csv(write_csv),
        fmt="principle-oracle",
        annotator="oracle",
    )
    for name, prefs in (("rm_a", RM_A), ("rm_b", RM_B)):
        import_judgments(
            project=labelled_project,
            path=_rm_csv(write_csv, name, prefs),
            fmt="reward-model",
            annotator=name,
        )
    return labelled_project


def test_inputs_match_hand_made_matrix(discretion_project):
    inputs = quality_inputs.discretion_inputs(discretion_project, reference="oracle")
    order = [
        int(e)
        for e in discretion_project.tasks.order_by("id").values_list(
            "prompt__external_id", flat=True
        )
    ]
    assert inputs.keys == KEYS
    np.testing.assert_array_equal(inputs.P, np.asarray([P_ROWS[r] for r in order]))
    assert set(inputs.annotators) == {"human", "rm_a", "rm_b"}  # the reference is not one
    np.testing.assert_array_equal(inputs.annotators["human"], np.ones(6))
    np.testing.assert_array_equal(inputs.annotators["rm_a"], [RM_A[r] for r in order])
    np.testing.assert_array_equal(inputs.annotators["rm_b"], [RM_B[r] for r in order])
    assert inputs.declared == {"harmless": 0, "honest": 3, "helpful": 4}
    assert inputs.kinds == {"human": "dataset", "rm_a": "model", "rm_b": "model"}


def test_payload_equals_pure_report(discretion_project):
    payload = payloads.discretion_payload(discretion_project, reference="oracle")
    P = np.asarray(P_ROWS)
    ann = {"human": np.ones(6), "rm_a": np.asarray(RM_A), "rm_b": np.asarray(RM_B)}
    pure = discretion_report(P, ann, KEYS, declared={"harmless": 0, "honest": 3, "helpful": 4})
    assert payload["pairs"] == 6
    assert payload["categories"] == {"consensus": 2, "conflict": 3, "indifference": 1}
    for name, prof in pure["annotators"].items():
        mine = payload["annotators"][name]
        assert (mine["da"], mine["da_n"], mine["da_sd"]) == (prof["da"], prof["da_n"], None)
        assert mine["priority"] == prof["priority"]
        assert mine["weights"] == prof["weights"]
        assert mine["dd"]["declared"] == prof["dd_declared"]
        assert payload["supremacy"][name] == prof["supremacy"]
        for other in pure["annotators"]:
            if other != name:
                assert mine["dd"][other] == discrepancy(prof["weights"], ann_w(pure, other))
    # human: +1 everywhere; consensus rows 0 (+1) and 1 (-1) → one arbitrary decision of two
    assert payload["annotators"]["human"]["da"] == 0.5
    assert payload["annotators"]["rm_a"]["da"] == 0.5
    assert payload["annotators"]["rm_b"]["da"] == 0.5
    # rm_a sides with harmless over helpful (row 3) and honest over helpful (row 4), and with
    # harmless over honest (row 5): harmless never loses, helpful never wins
    assert payload["annotators"]["rm_a"]["weights"]["harmless"] == "inf"
    assert payload["annotators"]["rm_a"]["weights"]["helpful"] == "-inf"
    assert payload["annotators"]["rm_a"]["priority"] == [["harmless"], ["honest"], ["helpful"]]
    assert payload["annotators"]["rm_a"]["dd"]["declared"] == 0.0
    assert payload["annotators"]["rm_b"]["dd"]["declared"] == 1.0
    assert payload["meta"]["declared"]["priority"] == [["harmless"], ["honest"], ["helpful"]]
    assert payload["meta"]["da_errors"] == {"human": 1, "rm_a": 1, "rm_b": 1}
    json.dumps(payload, allow_nan=False)


def ann_w(pure, name):
    return pure["annotators"][name]["weights"]


def test_subset_and_horizon(discretion_project):
    first_three = [pair_of(discretion_project, r)[0] for r in range(3)]
    payload = payloads.discretion_payload(
        discretion_project, reference="oracle", task_ids=first_three
    )
    assert payload["pairs"] == 3
    assert payload["categories"] == {"consensus": 2, "conflict": 0, "indifference": 1}
    horizon = Judgment.objects.filter(annotator__username="rm_a").order_by("id").first().id
    payload = payloads.discretion_payload(
        discretion_project, reference="oracle", max_judgment_id=horizon
    )
    assert set(payload["annotators"]) == {"human", "rm_a"}
    assert payload["meta"]["judgments"]["rm_a"] == 1


def _human_judgment(project, user, row, ordering_sign, verdicts, **extra):
    """A human judgment on row ``row`` with verdicts {principle key: +1/-1/0/"tie"}."""
    task_id, chosen, rejected = pair_of(project, row)
    ordering = {1: [[chosen], [rejected]], -1: [[rejected], [chosen]], 0: [[chosen, rejected]]}
    j = Judgment.objects.create(
        task_id=task_id, annotator=user, ordering=ordering[ordering_sign], **extra
    )
    principles = dict(
        Principle.objects.filter(principle_set=project.principle_set).values_list("key", "id")
    )
    for key, v in verdicts.items():
        PrincipleVerdict.objects.create(
            judgment=j,
            principle_id=principles[key],
            verdict="prefers" if v in (1, -1) else ("tie" if v == "tie" else "not_applicable"),
            preferred_response_id={1: chosen, -1: rejected}.get(v),
        )
    return j


def test_human_verdict_plurality(labelled_project, make_user):
    a, b, c = (make_user(n) for n in ("ann-a", "ann-b", "ann-c"))
    _human_judgment(labelled_project, a, 0, 1, {"harmless": 1, "honest": 1, "helpful": -1})
    _human_judgment(labelled_project, b, 0, 1, {"harmless": 1, "honest": -1, "helpful": -1})
    _human_judgment(labelled_project, c, 0, -1, {"harmless": 0, "honest": 0, "helpful": 1})
    # row 3 keeps the rejected response at position 0: orientation follows the labels
    _human_judgment(labelled_project, a, 3, 1, {"harmless": 1, "honest": "tie"})
    inputs = quality_inputs.discretion_inputs(labelled_project)
    rows = {
        int(e): i
        for i, e in enumerate(
            labelled_project.tasks.order_by("id").values_list("prompt__external_id", flat=True)
        )
    }
    # harmless +1,+1,0 → +1; honest +1,-1,0 → tie → 0; helpful -1,-1,+1 → -1
    assert inputs.P[rows[0]].tolist() == [1, 0, -1]
    assert inputs.P[rows[3]].tolist() == [1, 0, 0]
    assert inputs.covered == 2
    assert inputs.annotators["ann-a"][rows[0]] == 1
    assert inputs.annotators["ann-c"][rows[0]] == -1
    assert quality_inputs.default_reference(labelled_project) is None


def test_tie_bucket_and_empty_ordering_abstain(labelled_project, make_user):
    user = make_user("ann-t")
    _human_judgment(labelled_project, user, 0, 0, {})
    task_id, _, _ = pair_of(labelled_project, 1)
    Judgment.objects.create(task_id=task_id, annotator=user, ordering=[])
    inputs = quality_inputs.discretion_inputs(labelled_project)
    assert not inputs.annotators["ann-t"].any()


@pytest.fixture
def crowd(labelled_project, make_user):
    """Three humans with assignments (display order), times and a gold task."""
    now = timezone.now()
    users = [make_user(n) for n in ("alice", "bob", "carol")]
    task5, chosen5, rejected5 = pair_of(labelled_project, 5)
    labelled_project.tasks.filter(pk=task5).update(
        is_gold=True, gold_answer={"ordering": [[chosen5], [rejected5]], "decisive": ["harmless"]}
    )
    harmless = Principle.objects.get(principle_set=labelled_project.principle_set, key="harmless")
    # alice always picks what she was shown first; her display order puts chosen first
    for row in range(6):
        task_id, chosen, rejected = pair_of(labelled_project, row)
        for k, user in enumerate(users):
            display = (
                [chosen, rejected]
                if (user.username == "alice" or row % 2)
                else [
                    rejected,
                    chosen,
                ]
            )
            sign = 1 if user.username != "carol" or row < 2 else -1
            assignment = Assignment.objects.create(
                task_id=task_id,
                annotator=user,
                state="submitted",
                display_order=display,
                leased_at=now,
                leased_until=now + timedelta(minutes=5),
                submitted_at=now,
            )
            j = _human_judgment(
                labelled_project,
                user,
                row,
                sign,
                {"harmless": sign, "helpful": 0 if k else sign},
                assignment=assignment,
                time_spent_ms=2000 if user.username == "bob" else 20000,
            )
            if row == 5 and user.username == "alice":
                j.decisive_principles.add(harmless)
    return users


def test_quality_payload(crowd, labelled_project, write_csv):
    import_judgments(
        project=labelled_project,
        path=_rm_csv(write_csv, "rm_a", RM_A),
        fmt="reward-model",
        annotator="rm_a",
    )
    q = payloads.quality_payload(labelled_project, scope="humans")
    assert (q["judgments"], q["tasks"], q["annotator_count"]) == (18, 6, 3)
    assert set(q["annotators"]) == {"alice", "bob", "carol"}
    triples = []
    for row in range(6):
        task_id, chosen, rejected = pair_of(labelled_project, row)
        stored = list(  # canonical positions: the import's seeded order, not the file's
            TaskResponse.objects.filter(task_id=task_id)
            .order_by("position")
            .values_list("response_id", flat=True)
        )
        letter, other = (SLOT_LETTERS[stored.index(rid)] for rid in (chosen, rejected))
        for name in ("alice", "bob", "carol"):
            chosen_pick = name != "carol" or row < 2
            triples.append((task_id, name, letter if chosen_pick else other))
    expected = agr.choice_agreement(triples)
    assert q["agreement"]["alpha"] == pytest.approx(expected.alpha)
    assert q["agreement"]["percent_agreement"] == pytest.approx(expected.percent_agreement)
    alice, bob, carol = (q["annotators"][n] for n in ("alice", "bob", "carol"))
    assert alice["position"]["n"] == 6 and alice["position"]["share"] == 1.0
    assert bob["speed"]["median_s"] == 2.0 and "too_fast" in bob["flags"]
    assert alice["speed"]["median_s"] == 20.0
    assert alice["majority_agreement"] == 1.0 and carol["majority_agreement"] == pytest.approx(
        2 / 6
    )
    assert alice["gold"]["answer_accuracy"] == 1.0 and alice["gold"]["principle_hit"] == 1.0
    assert carol["gold"]["answer_accuracy"] == 0.0 and carol["gold"]["principle_hit"] == 0.0
    assert alice["length"]["n"] == 6 and alice["length"]["share"] == 1.0  # chosen is longer
    assert q["consensus"]["majority"]["consensus_rate"] == 1.0
    assert q["consensus"]["dawid_skene"]["accuracy"]["alice"] > 0.9
    per = {p["key"]: p for p in q["per_principle"]}
    assert per["harmless"]["verdicts"] == 18 and per["harmless"]["na_share"] == 0
    assert per["honest"]["verdicts"] == 0
    assert per["harmless"]["alpha"] == pytest.approx(expected.alpha)
    assert per["helpful"]["applicability_alpha"] is not None
    assert len(q["over_time"]["buckets"]) == 1 and q["over_time"]["buckets"][0]["judgments"] == 18
    json.dumps(q, allow_nan=False)

    everyone = payloads.quality_payload(labelled_project, scope="all")
    assert everyone["annotator_count"] == 4 and everyone["judgments"] == 24
    assert payloads.default_scope(labelled_project) == "humans"


def test_discretion_report_command(discretion_project, capsys):
    call_command(
        "discretion_report",
        "--project",
        discretion_project.slug,
        "--reference",
        "oracle",
        "--bootstrap",
        "50",
        "--json",
    )
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"pairs", "categories", "annotators", "supremacy"}
    assert report["categories"] == {"consensus": 2, "conflict": 3, "indifference": 1}
    assert set(report["annotators"]) == set(report["supremacy"]) == {"human", "rm_a", "rm_b"}
    for name, a in report["annotators"].items():
        assert set(a) == {"da", "da_n", "da_sd", "priority", "weights", "dd"}
        assert set(a["dd"]) == {"human", "rm_a", "rm_b", "declared"} - {name}
        assert isinstance(a["da_sd"], float)
        for row in report["supremacy"][name]:
            assert set(row) == {"winner", "loser", "ps", "n"} and row["n"] > 0

    call_command("discretion_report", "--project", discretion_project.slug, "--reference", "oracle")
    text = capsys.readouterr().out
    assert "Categories: consensus 2 (33.3%)" in text and "rm_a" in text and "DD" in text

    with pytest.raises(CommandError, match="no annotator"):
        call_command("discretion_report", "--project", discretion_project.slug, "--reference", "x")
    with pytest.raises(CommandError, match="no project"):
        call_command("discretion_report", "--project", "missing")


def test_agreement_over_time(crowd, labelled_project):
    from annotation.quality.views import _quality_view

    earlier = timezone.now() - timedelta(days=3)
    Judgment.objects.filter(task__prompt__external_id__in=["0", "1", "2"]).update(
        created_at=earlier
    )
    q = payloads.quality_payload(labelled_project)
    buckets = q["over_time"]["buckets"]
    assert q["over_time"]["unit"] == "day"
    assert [b["judgments"] for b in buckets] == [9, 9]
    # rows 0-2: alice and bob pick the majority's answer, carol on rows 0 and 1 only
    assert buckets[0]["majority_agreement"] == pytest.approx(8 / 9)
    assert buckets[1]["majority_agreement"] == pytest.approx(6 / 9)
    assert buckets[-1]["cumulative_alpha"] == pytest.approx(q["agreement"]["alpha"])
    assert buckets[0]["cumulative_alpha"] != buckets[1]["cumulative_alpha"]
    view = _quality_view(q)
    assert view["time_chart"].startswith("<svg") and view["buckets"][0]["label"]
