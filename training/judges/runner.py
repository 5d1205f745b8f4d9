"""Running a judge job inside a worker: claim it, list the questions that have no answer yet,
probe the endpoint with the first, ask the rest chunk by chunk (storing each chunk's answers,
counting tokens, honouring a cancel between chunks), then record the verdicts."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from annotation.models import Prompt, Response, Task
from common.errors import DomainError
from models_registry import storage
from training.judges import critiques, services, templates
from training.judges.backends import Answer, HttpJudge, local_judge
from training.models import JudgeAnswer, JudgeJob, JudgeTemplate
from training.services import failure_text

log = logging.getLogger(__name__)
Status = JudgeJob.Status


@dataclass(frozen=True)
class Question:
    task_id: int
    principle_id: int | None
    order: int  # 0: the position-0 response is shown as A; 1: as B


def plan(job: JudgeJob, pairs: dict[int, tuple[int, int]]) -> list[Question]:
    """Every question of the job, task by task (principle, then order)."""
    principles = [p.pk for p in services.principles_of(job)] or [None]
    return [
        Question(task_id, principle_id, order)
        for task_id in sorted(pairs)
        for principle_id in principles
        for order in (0, 1)
    ]


def missing(job: JudgeJob, questions: list[Question]) -> list[Question]:
    answered = set(
        JudgeAnswer.objects.filter(job=job).values_list("task_id", "principle_id", "order")
    )
    return [q for q in questions if (q.task_id, q.principle_id, q.order) not in answered]


class Renderer:
    """Chat messages of questions, reading each chunk's texts in two queries."""

    def __init__(self, job: JudgeJob, pairs: dict[int, tuple[int, int]]):
        self.template = job.template
        self.pairs = pairs
        self.principles = {p.pk: p.text or p.title for p in services.principles_of(job)}

    def __call__(self, questions: list[Question]) -> list[list[dict]]:
        task_ids = {q.task_id for q in questions}
        prompts = dict(Task.objects.filter(id__in=task_ids).values_list("id", "prompt_id"))
        messages = dict(
            Prompt.objects.filter(id__in=set(prompts.values())).values_list("id", "messages")
        )
        response_ids = {r for t in task_ids for r in self.pairs[t]}
        texts = dict(Response.objects.filter(id__in=response_ids).values_list("id", "text"))
        out = []
        for q in questions:
            x, y = self.pairs[q.task_id]
            a, b = (x, y) if q.order == 0 else (y, x)
            out.append(
                templates.render(
                    self.template,
                    prompt=templates.prompt_text(messages[prompts[q.task_id]]),
                    response_a=texts[a],
                    response_b=texts[b],
                    principle=self.principles.get(q.principle_id, ""),
                )
            )
        return out


def open_backend(job: JudgeJob):
    options = job.template.options
    c = job.config
    if job.backend == JudgeJob.Backend.HTTP:
        return HttpJudge(
            base_url=c["base_url"],
            model=c["model"],
            options=options,
            api_key_env=c.get("api_key_env", ""),
            concurrency=c["concurrency"],
            max_retries=c["max_retries"],
            top_logprobs=c["top_logprobs"],
            max_requests_per_s=c.get("max_requests_per_s", 0.0),
            backoff_s=settings.JUDGE_BACKOFF_S,
        )
    return local_judge(storage.loadable(job.model_version), options, batch_size=c["batch_size"])


def _chunks(items: list[Question], size: int) -> Iterator[list[Question]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _store(job: JudgeJob, questions: list[Question], answers: list[Answer]) -> None:
    JudgeAnswer.objects.bulk_create(
        (
            JudgeAnswer(
                job=job,
                task_id=q.task_id,
                principle_id=q.principle_id,
                order=q.order,
                probs=a.probs,
                answer=a.answer,
                prompt_tokens=a.prompt_tokens,
                completion_tokens=a.completion_tokens,
            )
            for q, a in zip(questions, answers, strict=True)
        ),
        ignore_conflicts=True,  # a second runner of a resumed job wrote it first
    )
    JudgeJob.objects.filter(pk=job.pk).update(
        done_items=F("done_items") + len(questions),
        requests=F("requests") + len(questions),
        retries=F("retries") + sum(a.retries for a in answers),
        prompt_tokens=F("prompt_tokens") + sum(a.prompt_tokens for a in answers),
        completion_tokens=F("completion_tokens") + sum(a.completion_tokens for a in answers),
    )


def _cancelled(job: JudgeJob) -> bool:
    return JudgeJob.objects.filter(pk=job.pk, cancel_requested=True).exists()


def run(job: JudgeJob) -> None:
    """Ask what is missing, then record the verdicts (the job is already claimed); a critique
    job critiques and revises (``critiques.run``)."""
    if job.template.kind == JudgeTemplate.Kind.CRITIQUE:
        return critiques.run(job, open_backend(job))
    pairs = services.compare_pairs(job)
    if not pairs:
        raise DomainError(f"project {job.project.slug} has no two-response compare task to judge")
    questions = plan(job, pairs)
    todo = missing(job, questions)
    JudgeJob.objects.filter(pk=job.pk).update(
        total_items=len(questions), done_items=len(questions) - len(todo)
    )
    render = Renderer(job, pairs)
    if todo:
        backend = open_backend(job)
        if isinstance(backend, HttpJudge):  # fail before thousands of requests
            first = todo[:1]
            _store(job, first, [backend.probe(render(first)[0])])
            todo = todo[1:]
        size = max(settings.JUDGE_CHUNK, 8 * job.config.get("concurrency", 1))
        for chunk in _chunks(todo, size):
            if _cancelled(job):
                JudgeJob.objects.filter(pk=job.pk).update(
                    status=Status.CANCELLED, finished_at=timezone.now()
                )
                return
            answers: list[Answer | None] = [None] * len(chunk)
            try:
                backend.ask(render(chunk), into=answers)
            finally:  # keep what was answered, even when the chunk fails
                kept = [i for i, answer in enumerate(answers) if answer is not None]
                if kept:
                    _store(job, [chunk[i] for i in kept], [answers[i] for i in kept])
    services.record_verdicts(job, pairs)
    JudgeJob.objects.filter(pk=job.pk).update(status=Status.SUCCEEDED, finished_at=timezone.now())


def execute(job_id: int) -> None:
    """The Celery task's body: claim the job, run it, record any failure on it.

    The runner holds the job's ``ProcessLock`` throughout, so a job left ``running`` by a
    process that died (its lock free) is claimed again by a redelivered or re-queued message
    and resumes; one a live process runs is left alone."""
    lock = services.job_lock(job_id)
    if not lock.acquire():
        log.info("judge job %s is being run by a live process", job_id)
        return
    try:
        claimed = JudgeJob.objects.filter(
            pk=job_id, status__in=[Status.QUEUED, Status.RUNNING]
        ).update(status=Status.RUNNING, started_at=timezone.now(), error="")
        if not claimed:
            log.info("judge job %s is not queued (missing or already handled)", job_id)
            return
        job = JudgeJob.objects.select_related(
            "template",
            "project__principle_set",
            "model_version__registered_model",
            "annotator",
            "principle",
        ).get(pk=job_id)
        try:
            run(job)
        except DomainError as exc:
            services.fail_job(job.pk, str(exc))
        except Exception as exc:
            log.exception("judge job %s failed", job_id)
            services.fail_job(job.pk, failure_text(exc, traceback.format_exc()))
    finally:
        lock.release(remove=True)
