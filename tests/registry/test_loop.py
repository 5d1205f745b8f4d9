"""The registry end to end through a real Celery worker (``builtin:tiny`` models, few steps):

* the chain SFT → reward model → PPO and its lineage API / model card;
* a reward model retrained on data whose annotators resolved the p-vs-q conflict the other way
  flips its measured priority between p and q;
* the closed loop: tiny policies generate candidates → scripted annotators judge them with the
  assignment engine → snapshot → reward model → registry (with an arena leaderboard).
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from annotation.datasets import snapshots
from annotation.models import Prompt, Task
from annotation.principles import services as principle_services
from annotation.projects import services as project_services
from annotation.specs import PrincipleSpec
from annotation.workspace import judging, leasing
from models_registry import profiles
from models_registry import services as registry_services
from models_registry.models import GenerationJob, ModelVersion
from tests.registry.conftest import FAST_RM, POLICY, annotate, make_project, wait_done
from training import services as training_services
from training.models import TrainingRun
from training.tiny import save_tiny

pytestmark = [pytest.mark.worker, pytest.mark.training, pytest.mark.django_db(transaction=True)]
FINISHED = ("succeeded", "failed", "cancelled")


def finished(run: TrainingRun, worker) -> ModelVersion:
    """Wait until ``run`` finished and its model's own discretion was measured."""
    run = wait_done(
        lambda: TrainingRun.objects.filter(pk=run.pk, status__in=FINISHED).first(), worker
    )
    assert run.status == "succeeded", f"{run.kind}: {run.error}\n{run.log_tail[-3000:]}"
    version = wait_done(
        lambda: ModelVersion.objects.filter(
            pk=run.output_model_version_id,
            model_discretion_profile__status__in=["ready", "unavailable", "failed"],
        ).first(),
        worker,
    )
    profile = version.model_discretion_profile
    assert profile["status"] == "ready", profile
    return version


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.e2e
def test_chain_sft_reward_ppo_lineage_and_model_card(registry_worker, pq_set, make_user):
    project = make_project(pq_set, "chain", train=12, probe=4, overlap=2)
    alice, bob, prober = make_user("alice"), make_user("bob"), make_user("prober")
    annotate(project, alice, side="p", only="train", demonstrate=True)
    annotate(project, bob, side="p", only="train")
    annotate(project, prober, side="alternate", only="probe")
    sft_snapshot = snapshots.create_snapshot(project=project, kind="sft", run="inline")
    preference = snapshots.create_snapshot(
        project=project,
        kind="preference",
        filters={"annotators": [alice.pk, bob.pk], "annotator_kinds": ["human"]},
        run="inline",
    )
    assert sft_snapshot.row_count == 12 and preference.row_count == 24

    sft_run = training_services.launch_run(kind="sft", config=POLICY, snapshot=sft_snapshot)
    rm_run = training_services.launch_run(kind="reward", config=FAST_RM, snapshot=preference)
    sft, rm = finished(sft_run, registry_worker), finished(rm_run, registry_worker)
    rl = {k: v for k, v in POLICY.items() if k != "eval_fraction"} | {"batch_size": 4}
    ppo_run = training_services.launch_run(
        kind="ppo",
        config=rl,
        snapshot=preference,
        base_model_version=sft,
        reward_model_version=rm,
    )
    ppo = finished(ppo_run, registry_worker)

    viewer = make_user("auditor", role="viewer")
    response = api_as(viewer).get(
        "/api/v1/registry/model-versions/lineage",
        {"name": ppo.registered_model.name, "version": ppo.version},
    )
    assert response.status_code == 200, response.content
    lineage = response.json()
    parents = {(p["role"], p["label"]) for p in lineage["parents"]}
    assert ("base", str(sft)) in parents and ("reward", str(rm)) in parents
    assert {n["label"] for n in lineage["chain"]} == {str(ppo), str(sft), str(rm)}
    assert lineage["base"][0]["base_model"] == "builtin:tiny"
    snaps = {s["id"]: s for s in lineage["snapshots"]}
    assert set(snaps) == {sft_snapshot.pk, preference.pk}
    assert snaps[preference.pk]["sha256"] == preference.sha256
    pseudonyms = snaps[preference.pk]["filters"]["annotators"]  # never raw user ids
    assert sorted(pseudonyms) == sorted(preference.per_annotator_counts)
    assert [ps["label"] for ps in lineage["principle_sets"]] == [pq_set.label]
    annotators = lineage["annotators"]
    assert len(annotators) == 2 and all(name.startswith("a-") for name in annotators)
    assert sorted(a["total"] for a in annotators.values()) == [12, 24]  # alice also demonstrated
    assert {c["judgments"] for c in lineage["annotator_contributions"].values()} == {12}

    data = lineage["data_discretion_profile"]
    assert data["status"] == "ready" and data["categories"]["conflict"] == 12
    assert data["annotators"][profiles.POOLED]["priority"] == [["p"], ["q"]]
    own = lineage["model_discretion_profile"]
    assert own["status"] == "ready" and own["method"] == "policy-logprob"
    assert own["probe"]["held_out"] and own["pairs"] == 4
    assert own["annotator"] == f"model:{ppo.registered_model.name}@{ppo.version}"
    rm_own = ModelVersion.objects.get(pk=rm.pk).model_discretion_profile
    assert rm_own["method"] == "reward-model" and rm_own["probe"]["held_out"]
    assert sum(row["n"] for row in rm_own["supremacy"]) == 2 * 4  # both orientations

    card = api_as(viewer).get(
        "/api/v1/registry/model-versions/model-card",
        {"name": ppo.registered_model.name, "version": ppo.version},
    )
    text = card.content.decode()
    for expected in (
        str(sft),
        str(rm),
        pq_set.label,
        "## Discretion of the training data",
        "## The model's own discretion",
        "policy-logprob",
        *annotators,
        f"| {sft_snapshot.pk} | sft",
        f"| {preference.pk} | preference",
    ):
        assert expected in text, expected

    from django.test import Client

    browser = Client()
    browser.force_login(make_user("chain-manager", role="manager"))
    page = browser.get(f"/registry/versions/{ppo.pk}/").content.decode()
    for expected in ("What fed this model", str(sft), str(rm), "policy-logprob", pq_set.label):
        assert expected in page, expected
    side = browser.get(f"/registry/compare/?a={rm.pk}&b={ppo.pk}")
    assert side.status_code == 200 and b"reward-model" in side.content

    # re-measure the policy through its reward model on a chosen probe project (API → worker)
    queued = api_as(make_user("chain-admin", role="admin")).post(
        "/api/v1/registry/model-versions/profile",
        {"name": ppo.registered_model.name, "version": ppo.version, "probe_project": "chain",
         "reward_model": {"name": rm.registered_model.name, "version": rm.version}},
        format="json",
    )  # fmt: skip
    assert queued.status_code == 202, queued.content
    again = wait_done(
        lambda: ModelVersion.objects.filter(
            pk=ppo.pk, model_discretion_profile__status__in=["ready", "failed"]
        ).first(),
        registry_worker,
    ).model_discretion_profile
    assert again["status"] == "ready", again
    assert again["method"] == f"reward-model:{rm}"
    assert again["probe"]["project"] == "chain" and again["probe"]["held_out"]


def test_retrained_reward_model_flips_its_principle_priority(registry_worker, pq_set, make_user):
    project = make_project(pq_set, "flip", train=16, probe=8, overlap=4)
    p_side = [make_user("p-1"), make_user("p-2")]
    q_side = [make_user("q-1"), make_user("q-2")]
    for user in p_side:
        annotate(project, user, side="p", only="train")
    for user in q_side:
        annotate(project, user, side="q", only="train")
    annotate(project, make_user("prober"), side="alternate", only="probe")

    def snapshot(users):
        return snapshots.create_snapshot(
            project=project,
            kind="preference",
            run="inline",
            filters={"annotators": [u.pk for u in users], "annotator_kinds": ["human"]},
        )

    first = training_services.launch_run(
        kind="reward", config=FAST_RM, snapshot=snapshot(p_side), name="flip-rm"
    )
    second = training_services.launch_run(
        kind="reward", config=FAST_RM, snapshot=snapshot(q_side), name="flip-rm"
    )
    v1, v2 = finished(first, registry_worker), finished(second, registry_worker)
    assert (v1.registered_model_id, v1.version, v2.version) == (v2.registered_model_id, 1, 2)

    # the data: p wins every conflict in the first snapshot, q in the second
    pooled = [v.data_discretion_profile["annotators"][profiles.POOLED] for v in (v1, v2)]
    assert [p["priority"] for p in pooled] == [[["p"], ["q"]], [["q"], ["p"]]]
    # the models, measured on the same 8 held-out conflicts the prober labelled
    ps1, n1 = profiles.supremacy_of(v1.model_discretion_profile, "p", "q")
    ps2, n2 = profiles.supremacy_of(v2.model_discretion_profile, "p", "q")
    assert v1.model_discretion_profile["probe"]["held_out"]
    assert n1 == n2 == 8
    assert ps1 >= 0.75 and ps2 <= 0.25, (ps1, ps2)
    assert v1.model_discretion_profile["priority"][0] == ["p"]
    assert v2.model_discretion_profile["priority"][0] == ["q"]
    assert v1.model_discretion_profile["dd_declared"] == 0.0  # p is declared above q
    assert v2.model_discretion_profile["dd_declared"] == 1.0

    compare = api_as(make_user("admin-c", role="admin")).get(
        "/api/v1/registry/model-versions/compare", {"a": "flip-rm@1", "b": "flip-rm@2"}
    )
    assert compare.json()["model_discretion"]["dd_between"] == 1.0


def test_closed_loop_generate_judge_snapshot_reward_registry(
    registry_worker, make_user, registry_artifacts
):
    principle_set = principle_services.create_principle_set(
        name="loop-principles",
        principles=[
            PrincipleSpec(key="concise", title="Be concise", authority="user"),
            PrincipleSpec(key="detailed", title="Be thorough", authority="guideline"),
        ],
        publish=True,
    )
    project = project_services.create_project(
        name="Loop",
        slug="loop",
        principle_set=principle_set,
        task_kinds=["compare"],
        annotations_per_task=2,
    )
    Prompt.objects.bulk_create(
        Prompt(project=project, messages=[{"role": "user", "content": f"Tell me about {i}."}])
        for i in range(10)
    )
    policies = [
        registry_services.register_from_source(
            name=f"tiny-{tag}",
            kind="base",
            source=str(save_tiny(registry_artifacts / "policies" / f"tiny-{tag}", seed=seed)),
        )
        for tag, seed in (("a", 0), ("b", 1))
    ]
    job = registry_services.request_generation(
        project=project,
        versions=policies,
        samples_per_model=1,
        max_prompts=10,
        max_new_tokens=12,
        seed=3,
    )
    job = wait_done(
        lambda: GenerationJob.objects.filter(pk=job.pk, status__in=["succeeded", "failed"]).first(),
        registry_worker,
    )
    assert job.status == "succeeded", job.error
    assert (job.task_count, job.response_count, job.engine) == (10, 20, "transformers")
    tasks = Task.objects.filter(project=project)
    assert tasks.count() == 10 and set(tasks.values_list("kind", flat=True)) == {"compare"}
    sources = set(tasks.values_list("responses__source", flat=True))
    assert sources == {"model:tiny-a@1", "model:tiny-b@1"}

    judges = [make_user("judge-1"), make_user("judge-2")]
    for judge in judges:  # scripted: concise wins; principle verdicts on every pair
        while (a := leasing.next_task(annotator=judge, project=project)) is not None:
            (r1, t1), (r2, t2) = a.task.task_responses.values_list(
                "response_id", "response__text"
            ).order_by("position")
            if len(t1) == len(t2):
                ordering, verdicts = [[r1, r2]], {"concise": "tie", "detailed": "tie"}
            else:
                short, long = (r1, r2) if len(t1) < len(t2) else (r2, r1)
                ordering, verdicts = [[short], [long]], {"concise": short, "detailed": long}
            judging.submit_judgment(
                assignment=a,
                annotator=judge,
                ordering=ordering,
                verdicts=verdicts,
                decisive=["concise"] if len(ordering) == 2 else [],
            )
    snapshot = snapshots.create_snapshot(
        project=project,
        kind="preference",
        run="inline",
        filters={"annotator_kinds": ["human"]},
    )
    assert snapshot.status == "ready" and snapshot.row_count > 0, snapshot.error
    run = training_services.launch_run(
        kind="reward", config=FAST_RM, snapshot=snapshot, name="loop-rm"
    )
    rm = finished(run, registry_worker)
    assert rm.dataset_snapshot_id == snapshot.pk
    assert len(rm.annotator_contributions) == 2
    assert rm.data_discretion_profile["categories"]["conflict"] > 0
    assert rm.model_discretion_profile["probe"]["project"] == "loop"
    assert rm.annotator.profile.kind == "model"

    admin = make_user("loop-admin", role="admin")
    lineage = (
        api_as(admin)
        .get("/api/v1/registry/model-versions/lineage", {"name": "loop-rm", "version": 1})
        .json()
    )
    assert lineage["snapshots"][0]["project"] == "loop"
    board = (
        api_as(admin).get("/api/v1/registry/leaderboard", {"project": "loop", "n_boot": 20}).json()
    )
    rows = board["overall"]["rows"]
    assert {r["source"] for r in rows} == {"model:tiny-a@1", "model:tiny-b@1"}
    assert board["overall"]["battles"] == 20  # 10 tasks × 2 judges, every pair a battle
    assert {r["source"] for r in board["principles"]["concise"]["rows"]} == sources
