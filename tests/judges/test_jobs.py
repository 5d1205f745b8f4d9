"""Judge jobs against a real OpenAI-compatible server on loopback (tests/judges/server.py):
verdicts for every pair × principle in both orders, resume after a kill, a 429 storm, the probe."""

import json
import math
import os
import subprocess
import sys
import time

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.datasets import snapshots
from annotation.datasets.importers.judgments import combine_orders
from annotation.models import Judgment, PrincipleVerdict
from annotation.quality import payloads, reports
from common.errors import DomainError
from tests.judges.server import hashed_scores
from tests.support import REPO, test_database_url, wait_for
from training.judges import runner, selectors, services, templates
from training.models import JudgeAnswer, JudgeJob

QUESTIONS = 6 * 3 * 2  # pairs × principles × orders


def _launch(project, server, **config):
    return services.launch_job(
        project=project,
        backend="http",
        config={"base_url": server.base_url, "model": "judge-model", **config},
        enqueue=False,
    )


def test_http_job_writes_every_verdict_with_both_orders(pairs, server, project):
    job = _launch(project, server, concurrency=4, price_prompt_per_m=2.5)
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert (job.total_items, job.done_items, job.requests) == (QUESTIONS, QUESTIONS, QUESTIONS)
    assert len(server.asked) == QUESTIONS == len(set(server.asked))
    assert job.completion_tokens == QUESTIONS and job.prompt_tokens > 0
    assert job.estimated_cost == pytest.approx(job.prompt_tokens * 2.5 / 1e6)
    verdicts = PrincipleVerdict.objects.filter(judgment__annotator=job.annotator)
    assert verdicts.count() == 6 * 3 == job.verdicts
    assert Judgment.objects.filter(annotator=job.annotator, ordering=[]).count() == 6
    assert job.annotator.profile.kind == "model"
    for v in verdicts.select_related("judgment"):
        scores = v.scores
        assert scores["template"] == "principle-verdict@1"
        assert (scores["backend"], scores["model"]) == ("http", "judge-model")
        first, second = scores["orders"]
        assert math.isclose(sum(first.values()), 1.0) and math.isclose(sum(second.values()), 1)
        sign, _ = combine_orders(
            (first["A"], first["B"], first["NA"]), (second["A"], second["B"], second["NA"])
        )
        expected = {1: scores["shown_first"], 0: None}
        if sign < 0:
            expected[-1] = next(
                r
                for r in v.judgment.task.responses.values_list("id", flat=True)
                if r != scores["shown_first"]
            )
        assert v.preferred_response_id == expected[sign]
        assert v.verdict == ("prefers" if sign else "not_applicable")


def test_429_storm_is_retried_and_finishes(pairs, server, project, settings):
    settings.JUDGE_BACKOFF_S = 0.005  # exponential from 5 ms
    server.storm = 40
    job = _launch(project, server, concurrency=8, max_retries=20)
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert server.refused == 40 and job.retries == 40
    assert len(server.asked) == QUESTIONS


@pytest.mark.parametrize(
    "config, message",
    [
        ({"model": "no-such-model"}, "The model `no-such-model` does not exist"),
        ({"base_url": "URL/v2"}, "no route /v2/chat/completions"),
        ({"base_url": "http://127.0.0.1:9/v1"}, "probe: cannot reach http://127.0.0.1:9/v1"),
    ],
)
def test_wrong_url_or_model_fails_in_the_probe(pairs, server, project, config, message):
    if config.get("base_url") == "URL/v2":
        config["base_url"] = server.base_url.replace("/v1", "/v2")
    job = _launch(project, server, **config)
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and message in job.error
    assert job.error.startswith("probe: ")
    assert server.asked == [] and not JudgeAnswer.objects.filter(job=job).exists()


@pytest.mark.django_db(transaction=True)
def test_killed_halfway_then_restarted_asks_only_what_is_missing(pairs, server, project):
    server.delay_s = 0.05
    job = _launch(project, server, concurrency=1)
    env = {"DATABASE_URL": test_database_url(), "JUDGE_CHUNK": "4", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "judge", "run", str(job.pk)],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: JudgeAnswer.objects.filter(job=job).count() >= QUESTIONS // 3, timeout=60)
    process.kill()
    process.wait(timeout=30)
    time.sleep(2 * server.delay_s)  # the killed client's last request reaches the server
    stored = JudgeAnswer.objects.filter(job=job).count()
    assert 0 < stored < QUESTIONS
    job.refresh_from_db()
    assert job.status == "running"  # what a dead worker leaves; its lock is free
    first_run = len(server.asked)
    server.delay_s = 0
    assert services.requeue_orphaned() == 1  # what a starting worker does
    runner.execute(job.pk)  # the message it queued
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    second = server.asked[first_run:]
    assert len(second) == QUESTIONS - stored == len(set(second))
    assert JudgeAnswer.objects.filter(job=job).count() == QUESTIONS
    assert PrincipleVerdict.objects.filter(judgment__annotator=job.annotator).count() == 18


def test_cancel_stops_between_chunks_and_resume_finishes(pairs, server, project, settings):
    settings.JUDGE_CHUNK = 4
    job = _launch(project, server, concurrency=1)
    services.request_cancel(job)  # a queued job is cancelled at once
    job.refresh_from_db()
    assert job.status == "cancelled"
    runner.execute(job.pk)
    assert server.asked == []  # nothing asked for a cancelled job
    services.resume(job, enqueue=False)
    JudgeJob.objects.filter(pk=job.pk).update(cancel_requested=True)  # as if during the probe
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "cancelled" and len(server.asked) == 1 == job.done_items
    services.resume(job, enqueue=False)
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and len(server.asked) == QUESTIONS == len(set(server.asked))


def test_without_logprobs_the_parsed_answer_has_probability_one(pairs, server, project):
    server.logprobs = False
    job = _launch(project, server)
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    for answer in JudgeAnswer.objects.filter(job=job):
        assert sorted(answer.probs.values()) == [0.0, 0.0, 1.0]
        assert answer.probs[answer.answer] == 1.0


def test_cli_launch_here_status_and_templates(pairs, server, project, capsys):
    call_command(
        "judge", "launch", "--project", project.slug, "--base-url", server.base_url,
        "--model", "judge-model", "--template", "principle-verdict@1", "--here",
    )  # fmt: skip
    out = capsys.readouterr().out
    job = JudgeJob.objects.get()
    assert f"judge job {job.pk}" in out and f"{job.pk}\tsucceeded\t36/36\t18 verdicts" in out
    call_command("judge", "templates")
    assert "principle-verdict@1\tprinciple" in capsys.readouterr().out
    with pytest.raises(CommandError, match="The model `nope` does not exist"):
        call_command(
            "judge", "launch", "--project", project.slug, "--base-url", server.base_url,
            "--model", "nope", "--here",
        )  # fmt: skip
    with pytest.raises(CommandError, match="no judge template 'principle-verdict@9'"):
        call_command("judge", "launch", "--project", project.slug, "--template",
                     "principle-verdict@9")  # fmt: skip


def test_agreement_with_humans_per_principle(pairs, server, project, annotator, admin_user, client):
    job = _launch(project, server)
    runner.execute(job.pk)
    principles = {p.key: p for p in project.principle_set.principles.all()}
    oracle = {
        (v.judgment.task_id, v.principle.key): v
        for v in PrincipleVerdict.objects.filter(judgment__annotator=job.annotator).select_related(
            "judgment", "principle"
        )
    }
    for task in pairs[:4]:  # a human copies the oracle on "harmless", says n/a on "honest"
        judgment = Judgment.objects.create(task=task, annotator=annotator, ordering=[])
        mine = oracle[(task.pk, "harmless")]
        PrincipleVerdict.objects.create(
            judgment=judgment,
            principle=principles["harmless"],
            verdict=mine.verdict,
            preferred_response_id=mine.preferred_response_id,
        )
        PrincipleVerdict.objects.create(
            judgment=judgment, principle=principles["honest"], verdict="not_applicable"
        )
    rows = {r["principle"]: r for r in selectors.human_agreement(job)}
    assert rows["harmless"]["n"] == 4 and rows["harmless"]["agreement"] == 1.0
    na = sum(oracle[(t.pk, "honest")].verdict == "not_applicable" for t in pairs[:4])
    assert rows["honest"]["n"] == 4 and rows["honest"]["agreement"] == na / 4
    assert rows["helpful"] == {
        "principle": "helpful", "title": "Be helpful", "n": 0, "agreement": None, "kappa": None
    }  # fmt: skip
    # the quality page shows the same table for every oracle of the project
    payload = reports.compute_and_store(project, "quality", {"scope": "humans"}).payload
    [section] = payload["oracles"]
    assert section["annotator"] == job.annotator.username and section["units"] == 8
    assert {r["principle"]: r for r in section["principles"]} == rows
    client.force_login(admin_user)
    page = client.get(reverse("quality:project", args=[project.slug])).content.decode()
    assert "Oracles against the human annotators" in page and job.annotator.username in page


def test_generic_preference_template_ranks_each_pair(pairs, server, project):
    job = services.launch_job(
        project=project,
        backend="http",
        config={"base_url": server.base_url, "model": "judge-model"},
        template=templates.ensure_defaults()[templates.PREFERENCE_DEFAULT],
        enqueue=False,
    )
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.requests == 6 * 2 and job.verdicts == 0
    shown_first = services.compare_pairs(job)
    for judgment in Judgment.objects.filter(annotator=job.annotator):
        probs = {
            a.order: (a.probs["A"], a.probs["B"], a.probs["NA"])
            for a in JudgeAnswer.objects.filter(job=job, task=judgment.task_id)
        }
        sign, reason = combine_orders(probs[0], probs[1])
        x, y = shown_first[judgment.task_id]
        assert judgment.ordering == {1: [[x], [y]], -1: [[y], [x]], 0: []}[sign]
        assert judgment.rationale == reason and judgment.origin == f"judge:{job.pk}"


def test_snapshot_scope_is_its_frozen_judgment_set(
    pairs, server, project, annotator, admin_user, client
):
    for task in pairs[:3]:
        first, second = task.responses.values_list("id", flat=True)
        Judgment.objects.create(task=task, annotator=annotator, ordering=[[first], [second]])
    snapshot = snapshots.create_snapshot(project=project, kind="preference", run="inline")
    Judgment.objects.create(task=pairs[3], annotator=annotator, ordering=[])  # after the freeze
    job = services.launch_job(
        project=project,
        backend="http",
        config={"base_url": server.base_url, "model": "judge-model"},
        snapshot=snapshot,
        enqueue=False,
    )
    assert job.task_ids == sorted(t.pk for t in pairs[:3]) and job.snapshot == snapshot
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and len(server.asked) == 3 * 3 * 2 == job.requests

    # the snapshot's card takes the oracle (asked after the build) as its verdict source
    expected = payloads.discretion_payload(
        project, reference=job.annotator.username, task_ids=job.task_ids
    )
    client.force_login(admin_user)
    url = reverse("snapshot", args=[snapshot.pk])
    assert job.annotator.username in client.get(url).content.decode()  # offered
    page = client.get(url, {"oracle": job.annotator.username}).content.decode()
    cats = expected["categories"]
    assert (
        sum(cats.values()) == 3
        and (
            f"on 3 pairs: consensus {cats['consensus']} · conflict {cats['conflict']} · "
            f"indifference {cats['indifference']}"
        )
        in page
    )
    assert "on 3 pairs" not in client.get(url, {"oracle": "nobody"}).content.decode()
    with pytest.raises(DomainError, match="holds no task to judge"):
        services.launch_job(
            project=project,
            backend="http",
            config={"base_url": server.base_url, "model": "judge-model"},
            snapshot=snapshot,
            task_ids=[pairs[4].pk],
        )


def test_a_failed_chunk_keeps_its_answers_and_resume_asks_the_rest(
    pairs, server, project, settings
):
    settings.JUDGE_BACKOFF_S = 0.001

    def broken_for_the_last_pair(messages):
        if "Question 5?" in messages[-1]["content"]:
            raise RuntimeError("the server breaks on this one")  # the connection just closes
        return hashed_scores(messages)

    server.score = broken_for_the_last_pair
    job = _launch(project, server, concurrency=1, max_retries=2)
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "gave up after 2 retries" in job.error
    assert JudgeAnswer.objects.filter(job=job).count() == QUESTIONS - 6  # all but the last pair
    server.score = hashed_scores
    asked = len(server.asked)
    services.resume(job, enqueue=False)
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and len(server.asked) - asked == 6


def test_the_api_key_comes_from_the_named_variable_never_the_database(
    pairs, server, project, monkeypatch
):
    server.api_key = "sk-test-123"
    job = _launch(project, server, api_key_env="JUDGE_TEST_KEY")
    runner.execute(job.pk)  # the variable is not set on this "worker"
    job.refresh_from_db()
    assert job.status == "failed" and "JUDGE_TEST_KEY is not set on this worker" in job.error
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-wrong")
    services.resume(job, enqueue=False)
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "HTTP 401: Incorrect API key" in job.error
    assert "check the API key variable" in job.error
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-test-123")
    services.resume(job, enqueue=False)
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.config["api_key_env"] == "JUDGE_TEST_KEY"
    assert "sk-test-123" not in json.dumps(list(JudgeJob.objects.values()), default=str)


def test_requests_are_paced_to_the_configured_rate(pairs, server, project):
    job = _launch(project, server, concurrency=8, max_requests_per_s=60)
    started = time.perf_counter()
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded"
    # 1 probe, then 35 requests at most 60 per second whatever the concurrency
    assert time.perf_counter() - started >= 34 / 60
