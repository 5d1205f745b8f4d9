"""Critique and revise (the supervised phase of Constitutional AI) as a judge job.

A job whose template is of the critique kind takes every response of its tasks (compare and
rank tasks; every task, or the job's ``task_ids``) and asks the judge, greedily, for a critique
of the response against the job's principle, then — the critique request, the critique and the
template's revision request as one conversation — for the revised response. Chunk by chunk,
each answered response becomes, in one transaction, a ``JudgeRevision`` row and (when the
revision is not empty) a demonstrate task on the same prompt: the revision at position 0 (its
``generation_params`` name the principle, the critique and the job), the original at position
1, so that annotators accept the revision (``based_on`` it) or edit it. A restarted job asks
only about responses that have no row yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import Prompt, Response, Task, TaskResponse
from common import events
from common.errors import DomainError
from training.judges import templates
from training.judges.backends import Answer, HttpJudge
from training.models import JudgeJob, JudgeRevision

Status = JudgeJob.Status
SOURCE_KINDS = (Task.Kind.COMPARE, Task.Kind.RANK)


@dataclass(frozen=True)
class Item:
    task_id: int
    response_id: int


def plan(job: JudgeJob) -> list[Item]:
    """Every response of the job's tasks, once (its first task), task by task."""
    links = TaskResponse.objects.filter(
        task__project_id=job.project_id, task__kind__in=SOURCE_KINDS
    )
    if job.task_ids:
        links = links.filter(task_id__in=job.task_ids)
    seen: dict[int, Item] = {}
    for task_id, response_id in links.order_by("task_id", "position").values_list(
        "task_id", "response_id"
    ):
        seen.setdefault(response_id, Item(task_id, response_id))
    return list(seen.values())


def missing(job: JudgeJob, items: list[Item]) -> list[Item]:
    done = set(JudgeRevision.objects.filter(job=job).values_list("response_id", flat=True))
    return [i for i in items if i.response_id not in done]


def render(job: JudgeJob, items: list[Item]) -> list[list[dict]]:
    """The critique requests of ``items`` (two queries)."""
    responses = {
        pk: (prompt_id, text)
        for pk, prompt_id, text in Response.objects.filter(
            id__in=[i.response_id for i in items]
        ).values_list("id", "prompt_id", "text")
    }
    prompts = dict(
        Prompt.objects.filter(id__in={p for p, _ in responses.values()}).values_list(
            "id", "messages"
        )
    )
    principle = job.principle.text or job.principle.title
    return [
        templates.render_critique(
            job.template,
            prompt=templates.prompt_text(prompts[responses[i.response_id][0]]),
            response=responses[i.response_id][1],
            principle=principle,
        )
        for i in items
    ]


def _chunks(items: list[Item], size: int) -> Iterator[list[Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@transaction.atomic
def record(job: JudgeJob, items: list[Item], critiques: list[Answer], revisions: list[Answer]):
    """Store a chunk's critiques and revisions, each non-empty revision as a demonstrate task."""
    prompt_of = dict(
        Response.objects.filter(id__in=[i.response_id for i in items]).values_list(
            "id", "prompt_id"
        )
    )
    label = f"{job.template.name}@{job.template.version}"
    created = 0
    for item, critique, revision in zip(items, critiques, revisions, strict=True):
        row = JudgeRevision(
            job=job,
            task_id=item.task_id,
            response_id=item.response_id,
            principle=job.principle,
            critique=critique.answer,
            revision=revision.answer,
            prompt_tokens=critique.prompt_tokens + revision.prompt_tokens,
            completion_tokens=critique.completion_tokens + revision.completion_tokens,
        )
        if revision.answer:
            revised = Response.objects.create(
                prompt_id=prompt_of[item.response_id],
                text=revision.answer,
                source=f"judge:{job.pk}",
                generation_params={
                    "judge_job": job.pk,
                    "principle": job.principle.key,
                    "revises": item.response_id,
                    "critique": critique.answer,
                    "template": label,
                },
            )
            task = Task.objects.create(
                project_id=job.project_id,
                prompt_id=prompt_of[item.response_id],
                kind=Task.Kind.DEMONSTRATE,
            )
            TaskResponse.objects.bulk_create(
                [
                    TaskResponse(task=task, response=revised, position=0),
                    TaskResponse(task=task, response_id=item.response_id, position=1),
                ]
            )
            row.revised_response, row.demonstrate_task = revised, task
            created += 1
        row.save()
    JudgeJob.objects.filter(pk=job.pk).update(
        done_items=F("done_items") + len(items),
        requests=F("requests") + 2 * len(items),
        retries=F("retries") + sum(a.retries for a in (*critiques, *revisions)),
        prompt_tokens=F("prompt_tokens") + sum(a.prompt_tokens for a in (*critiques, *revisions)),
        completion_tokens=F("completion_tokens")
        + sum(a.completion_tokens for a in (*critiques, *revisions)),
        verdicts=F("verdicts") + created,
    )
    if created:  # the project's counts are recounted after the commit
        events.publish("tasks.created", project_id=job.project_id, tasks=created)


def run(job: JudgeJob, backend) -> None:
    """Critique and revise what is missing (the job is already claimed)."""
    if job.principle is None:
        raise DomainError("a critique job needs the principle to critique against")
    items = plan(job)
    if not items:
        raise DomainError(f"project {job.project.slug} has no response to critique")
    todo = missing(job, items)
    JudgeJob.objects.filter(pk=job.pk).update(
        total_items=len(items), done_items=len(items) - len(todo)
    )
    max_tokens = job.config["max_tokens"]
    probe = isinstance(backend, HttpJudge)  # fail before thousands of requests
    size = max(settings.JUDGE_CHUNK // 4, 8 * job.config.get("concurrency", 1))
    for chunk in _chunks(todo, size):
        if JudgeJob.objects.filter(pk=job.pk, cancel_requested=True).exists():
            JudgeJob.objects.filter(pk=job.pk).update(
                status=Status.CANCELLED, finished_at=timezone.now()
            )
            return
        asked = render(job, chunk)
        critiques: list[Answer] = []
        if probe:
            critiques.append(backend.probe(asked[0], max_tokens=max_tokens))
            probe = False
        critiques += backend.write(asked[len(critiques) :], max_tokens)
        follow_ups = [
            templates.revision_request(job.template, messages, critique.answer)
            for messages, critique in zip(asked, critiques, strict=True)
        ]
        record(job, chunk, critiques, backend.write(follow_ups, max_tokens))
    JudgeJob.objects.filter(pk=job.pk).update(status=Status.SUCCEEDED, finished_at=timezone.now())
