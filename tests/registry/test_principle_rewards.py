""" "Reward per principle": one launch builds each principle's preference snapshot and trains a
reward model per principle (a run group), through a real Celery worker with ``builtin:tiny``.

Every judgment's verdicts say p favours the careful response and q the blunt one, whatever the
overall choice; so the p model must score careful text above blunt text on held-out pairs and
the q model the reverse, although both come from the same judgments.
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import DatasetSnapshot
from models_registry.cards import render_model_card
from models_registry.models import ModelVersion
from tests.registry.conftest import FAST_RM, POLICY, annotate, make_project, wait_done
from training import groups
from training.models import RunGroup, TrainingRun
from training.validation import LaunchRejected

GROUP_RM = {**FAST_RM, "eval_fraction": 0.25}
FINISHED = ("succeeded", "failed", "cancelled")


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
def test_launch_is_checked_before_anything_is_recorded(pq_set, make_user):
    project = make_project(pq_set, "checks", train=2, probe=0)
    with pytest.raises(LaunchRejected, match="not principles of"):
        groups.launch_principle_rewards(project=project, keys=["p", "nope"])
    with pytest.raises(LaunchRejected, match="min_pairs"):
        groups.launch_principle_rewards(project=project, min_pairs=0)
    with pytest.raises(LaunchRejected):
        groups.launch_principle_rewards(project=project, config={"max_steps": -3})
    with pytest.raises(LaunchRejected, match="base_model"):
        groups.launch_principle_rewards(project=project, base_model="../../etc")
    assert not RunGroup.objects.exists()
    client = api_as(make_user("boss", role="manager"))
    refused = client.post(
        "/api/v1/training-run-groups/",
        {"project": project.pk, "filters": {"annotator_kinds": ["robot"]}},
        format="json",
    )
    assert refused.status_code == 400 and "annotator_kinds" in str(refused.json())
    for role, status in (("annotator", 403), ("viewer", 403)):
        denied = api_as(make_user(f"r-{role}", role=role)).post(
            "/api/v1/training-run-groups/", {"project": project.pk}, format="json"
        )
        assert denied.status_code == status
    assert (
        api_as(make_user("auditor", role="viewer")).get("/api/v1/training-run-groups/").status_code
        == 200
    )
    assert (
        api_as(make_user("worker-bee", role="annotator"))
        .get("/api/v1/training-run-groups/")
        .status_code
        == 403
    )
    assert not RunGroup.objects.exists()


@pytest.mark.django_db
def test_a_group_without_enough_pairs_fails_saying_how_many_each_had(pq_set, make_user):
    project = make_project(pq_set, "few", train=3, probe=0)
    annotate(project, make_user("alice"), side="p", only="train")
    group = RunGroup.objects.create(
        name="few-rm",
        project=project,
        min_pairs=5,
        request={"filters": {}, "aggregation": "raw", "keys": ["p", "q"], "config": FAST_RM,
                 "base_model": "builtin:tiny", "base_model_version": None, "queue": "cpu",
                 "num_processes": 1},
    )  # fmt: skip
    group = groups.prepare_group(group.pk)
    assert group.status == "failed"
    assert group.error == "no principle has 5 pairs or more: p 3, q 3"
    assert group.skipped == {"p": 3, "q": 3}
    assert not TrainingRun.objects.exists()
    assert not DatasetSnapshot.objects.exists()  # one transaction: nothing half made


@pytest.mark.worker
@pytest.mark.training
@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
def test_reward_per_principle_from_the_page_to_the_registry(registry_worker, pq_set, make_user):
    project = make_project(pq_set, "per-principle", train=40, probe=6)
    alice = make_user("alice")
    assert annotate(project, alice, side="alternate", only="train") == 40
    assert annotate(project, make_user("prober"), side="alternate", only="probe") == 6
    admin = make_user("admin-g", role="admin")
    client = APIClient()
    client.force_login(admin)
    page = client.get(reverse("training:principle-rewards"), {"project": project.pk})
    assert page.status_code == 200 and "Verdicts from" in page.content.decode()
    form = {
        "name": "pq-rm",
        "project": project.pk,
        "annotator_kinds": ["human"],
        "annotators": "alice",
        "aggregation": "raw",
        "exclude_flagged": "on",
        "min_pairs": 10,
        "base_model": "builtin:tiny",
        "queue": "cpu",
        "num_processes": 1,
        **{f"config_{k}": v for k, v in GROUP_RM.items()},
    }
    response = client.post(reverse("training:principle-rewards"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    group = RunGroup.objects.get()
    assert response["Location"] == reverse("training:group", args=[group.pk])

    def launched():
        return RunGroup.objects.filter(pk=group.pk).exclude(status="preparing").first()

    group = wait_done(launched, registry_worker)
    assert group.status == "launched", group.error
    runs = {run.snapshot.filters["principle"]: run for run in group.runs.select_related("snapshot")}
    assert set(runs) == {"p", "q"}
    assert {run.snapshot.row_count for run in runs.values()} == {40}

    def done():
        finished = TrainingRun.objects.filter(group=group, status__in=["succeeded", "failed"])
        return list(finished) if finished.count() == 2 else None

    for run in wait_done(done, registry_worker):
        key = run.snapshot.filters["principle"] if run.snapshot_id else None
        assert run.status == "succeeded", f"{key}: {run.error}\n{run.log_tail[-2000:]}"
    for key, run in runs.items():
        run.refresh_from_db()
        assert run.name == f"pq-rm-{key}"
        assert run.eval_metrics["accuracy"] >= 0.8, (key, run.eval_metrics)
        version = ModelVersion.objects.get(pk=run.output_model_version_id)
        assert version.dataset_snapshot.filters["principle"] == key
        lineage = client.get(reverse("registry:version", args=[version.pk])).content.decode()
        assert f"principle={key}" in lineage
    page = client.get(reverse("training:group", args=[group.pk])).content.decode()
    assert page.count('data-testid="group-run"') == 2 and "pq-rm-p" in page
    assert "hx-trigger" not in page  # finished: the page stops polling

    # a policy trained to the declared precedence (p above q), rewarded by both models
    launch = {
        "name": "pq-policy",
        "snapshot": runs["p"].snapshot_id,
        "base_model": "builtin:tiny",
        "queue": "cpu",
        "num_processes": 1,
        "precedence_group": group.pk,
        "weights_from": "declared",
        **{f"config_{k}": v for k, v in POLICY.items()},
        "config_rewards": '[{"type": "principles"}]',
    }
    response = client.post(reverse("training:launch", args=["grpo"]), launch)
    assert response.status_code == 302, response.content.decode()[:3000]
    policy_run = TrainingRun.objects.get(name="pq-policy")
    assert policy_run.precedence["ranking"] == [["p"], ["q"]]

    def profiled():
        run = TrainingRun.objects.filter(pk=policy_run.pk, status__in=FINISHED).first()
        if run is None or run.status != "succeeded":
            return run
        version = run.output_model_version
        return run if version.model_discretion_profile.get("status") else None

    policy_run = wait_done(profiled, registry_worker)
    assert policy_run.status == "succeeded", f"{policy_run.error}\n{policy_run.log_tail[-2000:]}"
    version = policy_run.output_model_version
    assert version.precedence["weights"] == pytest.approx({"p": 2 / 3, "q": 1 / 3})
    reward_parents = set(
        version.parent_links.filter(role="reward").values_list("parent_id", flat=True)
    )
    assert reward_parents == {run.output_model_version_id for run in runs.values()}
    profile = version.model_discretion_profile
    assert profile["status"] == "ready", profile
    assert profile["target"]["ranking"] == [["p"], ["q"]]
    assert [(r["higher"], r["lower"]) for r in profile["follows_target"]] == [("p", "q")]
    page = client.get(reverse("registry:version", args=[version.pk])).content.decode()
    assert 'data-testid="precedence"' in page and "the declared precedence of" in page
    card = render_model_card(version)
    assert "## Trained to a precedence of principles" in card
    assert "DD vs the precedence it was trained to" in card
