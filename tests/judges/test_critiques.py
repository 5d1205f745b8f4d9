"""Critique and revise: every response critiqued against a principle and revised, through the
loopback server (scripted text) and a registered model; each revision a demonstrate task that a
human accepts or edits; a restarted job asks only about what is missing."""

from io import StringIO
from unittest.mock import patch

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import Demonstration, Task, TaskResponse
from annotation.workspace import demonstrations, leasing
from common.errors import DomainError
from models_registry import services as registry
from tests.judges.server import JudgeServer, scripted_text
from training.judges import runner, services, templates
from training.models import JudgeRevision
from training.tiny import save_tiny


def _critique(project, **kwargs):
    return services.launch_job(
        project=project,
        template=templates.ensure_defaults()[templates.CRITIQUE_DEFAULT],
        principle="harmless",
        enqueue=False,
        **kwargs,
    )


def test_http_critiques_and_revisions_become_demonstrate_tasks(pairs, server, project, annotator):
    job = _critique(
        project,
        backend="http",
        config={"base_url": server.base_url, "model": "judge-model", "max_tokens": 64},
    )
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert (job.total_items, job.done_items, job.requests, job.verdicts) == (12, 12, 24, 12)
    assert job.prompt_tokens > 0 and job.completion_tokens > 0
    principle = job.principle
    for row in JudgeRevision.objects.filter(job=job).select_related("response", "task__prompt"):
        asked = templates.render_critique(
            job.template,
            prompt=templates.prompt_text(row.task.prompt.messages),
            response=row.response.text,
            principle=principle.text or principle.title,
        )
        assert row.critique == scripted_text(asked)
        follow_up = templates.revision_request(job.template, asked, row.critique)
        assert follow_up[-2] == {"role": "assistant", "content": row.critique}
        assert row.revision == scripted_text(follow_up) and row.principle == principle
        task = row.demonstrate_task
        assert (task.kind, task.prompt_id) == ("demonstrate", row.task.prompt_id)
        links = list(TaskResponse.objects.filter(task=task).order_by("position"))
        assert [(x.response_id, x.position) for x in links] == [
            (row.revised_response_id, 0), (row.response_id, 1)
        ]  # fmt: skip
        assert row.revised_response.text == row.revision
        assert row.revised_response.generation_params["principle"] == "harmless"

    # killed halfway: the lost rows (and their tasks) are asked again, nothing else
    lost = JudgeRevision.objects.filter(job=job).order_by("-id")[:5]
    Task.objects.filter(id__in=[r.demonstrate_task_id for r in lost]).delete()
    JudgeRevision.objects.filter(id__in=[r.pk for r in lost]).delete()
    before = len(server.asked)
    services.resume(job, enqueue=False)
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and len(server.asked) - before == 5 * 2
    assert Task.objects.filter(project=project, kind="demonstrate").count() == 12

    # the command line: one task's two responses, run here
    out = StringIO()
    call_command(
        "judge", "launch", "--project", project.slug, "--template", "critique-revision",
        "--principle", "honest", "--base-url", server.base_url, "--model", "judge-model",
        "--max-tokens", "8", "--tasks", str(pairs[0].pk), "--here", stdout=out,
    )  # fmt: skip
    assert "2/2\t2 revisions" in out.getvalue()
    assert JudgeRevision.objects.filter(principle__key="honest").count() == 2


def test_api_launch_page_and_a_human_accepting_a_revision(pairs, project, annotator, admin_user):
    hostile = "<script>alert(1)</script> **Safer** answer"
    critique = templates.ensure_defaults()[templates.CRITIQUE_DEFAULT]
    api = APIClient()
    api.force_authenticate(admin_user)
    with JudgeServer(write=lambda messages: hostile) as server:
        body = {
            "project": project.pk, "backend": "http", "template": critique.pk,
            "principle": "harmless", "task_ids": [pairs[0].pk],
            "config": {"base_url": server.base_url, "model": "judge-model", "max_tokens": 16},
        }  # fmt: skip
        with patch.object(services, "queue_job"):  # run here rather than on a worker
            created = api.post("/api/v1/judge-jobs/", body, format="json")
        assert created.status_code == 201 and created.json()["principle"] == "harmless"
        runner.execute(created.json()["id"])
    listed = api.get(f"/api/v1/judge-jobs/{created.json()['id']}/revisions/").json()["results"]
    assert len(listed) == 2 and all(r["revision"] == hostile for r in listed)
    client = Client()
    client.force_login(admin_user)
    page = client.get(f"/training/judges/{created.json()['id']}/revisions/").content.decode()
    assert "<strong>Safer</strong>" in page and "<script>alert" not in page

    full = project.annotations_per_task  # the compare tasks are done: only revisions to do
    Task.objects.filter(project=project, kind="compare").update(submitted_count=full)
    lease = leasing.next_task(annotator=annotator, project=project)
    row = JudgeRevision.objects.get(demonstrate_task=lease.task_id)
    demo = demonstrations.create_demonstration(
        annotator=annotator,
        task=lease.task,
        text=row.revision,
        based_on=row.revised_response,
        cited=[row.principle.key],
    )
    demo = Demonstration.objects.get(pk=demo.pk)
    assert demo.based_on_id == row.revised_response_id
    assert [p.key for p in demo.cited_principles.all()] == ["harmless"]


def test_registered_model_critiques_and_revises(pairs, project, tmp_path):
    version = registry.register_model_version(
        name="tiny-critic", kind="sft", artifact_uri=str(save_tiny(tmp_path)), sha256="0" * 64,
        size_bytes=1,
    )  # fmt: skip
    job = _critique(
        project,
        backend="model",
        model_version=version,
        config={"batch_size": 2, "max_tokens": 3},
        task_ids=[pairs[0].pk],
    )
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    rows = list(JudgeRevision.objects.filter(job=job))
    assert len(rows) == 2 and job.requests == 4 and job.prompt_tokens > 0
    assert all(0 < r.completion_tokens <= 6 for r in rows)
    assert job.verdicts == sum(1 for r in rows if r.revision)


def test_bad_critique_jobs_are_refused(project, pairs):
    http = {"backend": "http", "config": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}}
    with pytest.raises(DomainError, match="not in"):
        services.launch_job(
            project=project,
            template=templates.ensure_defaults()[templates.CRITIQUE_DEFAULT],
            principle="nope",
            enqueue=False,
            **http,
        )
    with pytest.raises(DomainError, match="needs a principle"):
        services.launch_job(
            project=project,
            template=templates.ensure_defaults()[templates.CRITIQUE_DEFAULT],
            enqueue=False,
            **http,
        )
    with pytest.raises(DomainError, match="principle is for a critique"):
        services.launch_job(project=project, principle="harmless", enqueue=False, **http)
    with pytest.raises(DomainError, match="max_tokens"):
        _critique(project, backend="http", config={**http["config"], "max_tokens": 0})
    with pytest.raises(DomainError, match="needs the revision request"):
        templates.create_version(
            name="c2", kind="critique", system="s", user="{prompt}{response}{principle}",
            options=[],
        )  # fmt: skip
    with pytest.raises(DomainError, match="must contain"):
        templates.create_version(
            name="c2", kind="critique", system="s", user="{prompt}{response}", options=[],
            revision="Rewrite it.",
        )  # fmt: skip
