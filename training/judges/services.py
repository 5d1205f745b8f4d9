"""Judge jobs, the writes: launch (validated), cancel, resume, and turning a job's answers into
the judgments of its model annotator.

A job asks about every pair (× principle for a principle template) in both presentation orders;
each answer is a ``JudgeAnswer`` row, so a restarted job asks only what has no row yet. When all
are in, :func:`record_verdicts` combines the two orders with the importers' rule
(``combine_orders``) and replaces the annotator's judgments on those tasks in one transaction:
one judgment per task (``ordering=[]`` for a principle oracle, the preferred response first for
a preference judge) and one ``PrincipleVerdict`` per principle whose ``scores`` keep both
orders' raw probabilities, the template version, the backend and the model.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.datasets import selectors as dataset_selectors
from annotation.datasets.importers.judgments import NAME, combine_orders
from annotation.models import (
    AnnotatorProfile,
    DatasetSnapshot,
    Judgment,
    Principle,
    PrincipleVerdict,
    Project,
    Task,
    TaskResponse,
)
from annotation.projects import services as project_services
from common import background, events
from common.errors import DomainError
from common.process_lock import ProcessLock
from models_registry.models import ModelVersion, RegisteredModel
from training.judges import templates
from training.judges.backends import ENV_NAME
from training.models import JudgeAnswer, JudgeJob, JudgeTemplate

RUN_TASK = "training.run_judge_job"
Status = JudgeJob.Status
HTTP_DEFAULTS = {
    "base_url": "",
    "model": "",
    "api_key_env": "",
    "concurrency": 8,
    "max_retries": 6,
    "top_logprobs": 5,
    "max_requests_per_s": 0.0,
    "price_prompt_per_m": 0.0,
    "price_completion_per_m": 0.0,
}
MODEL_DEFAULTS = {"batch_size": 8, "queue": "cpu"}
CRITIQUE_DEFAULTS = {"max_tokens": 512}  # critique jobs: the longest critique or revision


def _number(config: dict, key: str, kind: type, low: float, high: float):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DomainError(f"config.{key} must be a number")
    if kind is int and value != int(value):
        raise DomainError(f"config.{key} must be a whole number")
    if not low <= value <= high:
        raise DomainError(f"config.{key} must be between {low} and {high}, got {value}")
    return kind(value)


def clean_config(
    backend: str, config: dict, model_version: ModelVersion | None, critique: bool = False
) -> dict:
    """The job's config with defaults filled in; a DomainError names the first bad field."""
    if not isinstance(config, dict):
        raise DomainError("config must be an object")
    defaults = HTTP_DEFAULTS if backend == JudgeJob.Backend.HTTP else MODEL_DEFAULTS
    if critique:
        defaults = {**defaults, **CRITIQUE_DEFAULTS}
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise DomainError(f"config: unknown field(s) {', '.join(unknown)} for {backend}")
    out = {**defaults, **config}
    if critique:
        out["max_tokens"] = _number(out, "max_tokens", int, 1, 8192)
    if backend == JudgeJob.Backend.HTTP:
        if model_version is not None:
            raise DomainError("model_version is for the model backend")
        url = urlsplit(str(out["base_url"]))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise DomainError("config.base_url must be an http(s) URL, e.g. http://host:8000/v1")
        if not isinstance(out["model"], str) or not out["model"].strip():
            raise DomainError("config.model: the model name the server serves")
        if out["api_key_env"] and not ENV_NAME.fullmatch(str(out["api_key_env"])):
            raise DomainError(
                "config.api_key_env is the NAME of an environment variable holding the key "
                "(letters, digits, _), never the key"
            )
        out["concurrency"] = _number(out, "concurrency", int, 1, settings.JUDGE_MAX_CONCURRENCY)
        out["max_retries"] = _number(out, "max_retries", int, 0, 20)
        out["top_logprobs"] = _number(out, "top_logprobs", int, 1, 20)
        out["max_requests_per_s"] = _number(out, "max_requests_per_s", float, 0, 100_000)
        for key in ("price_prompt_per_m", "price_completion_per_m"):
            out[key] = _number(out, key, float, 0, 1e6)
        return out
    if backend != JudgeJob.Backend.MODEL:
        raise DomainError(f"backend must be one of {', '.join(JudgeJob.Backend.values)}")
    if model_version is None:
        raise DomainError("the model backend needs a registered model_version")
    if model_version.registered_model.kind == RegisteredModel.Kind.REWARD:
        raise DomainError("a reward model has no next-token probabilities: choose a policy")
    if not model_version.artifact_uri:
        raise DomainError(f"model version {model_version.pk} has no artifact to load")
    out["batch_size"] = _number(out, "batch_size", int, 1, 256)
    if out["queue"] not in ("cpu", "gpu"):
        raise DomainError("config.queue must be cpu or gpu")
    return out


def model_label(job: JudgeJob) -> str:
    """What answered: the endpoint's model name, or ``name@version`` of the registered model."""
    if job.backend == JudgeJob.Backend.HTTP:
        return job.config.get("model", "")
    version = job.model_version
    return f"{version.registered_model.name}@{version.version}" if version else ""


def _default_annotator(template: JudgeTemplate, model: str) -> str:
    base = re.sub(r"[^\w.@+-]+", "-", model).strip("-")[:100] or "judge"
    return f"{base}-{template.name}-v{template.version}"


def _annotator(name: str, model_ref: str):
    if not NAME.fullmatch(name or ""):
        raise DomainError("annotator: 1–150 letters, digits and @ . + - _ (no spaces)")
    user = project_services.get_or_create_model_annotator(name=name, model_ref=model_ref)
    kind = AnnotatorProfile.objects.filter(user=user).values_list("kind", flat=True).first()
    if kind != AnnotatorProfile.Kind.MODEL:
        raise DomainError(f"{name!r} is a human annotator; a judge needs a model annotator")
    return user


def launch_job(
    *,
    project: Project,
    backend: str,
    config: dict | None = None,
    template: JudgeTemplate | None = None,
    model_version: ModelVersion | None = None,
    task_ids: list[int] | None = None,
    snapshot: DatasetSnapshot | None = None,
    annotator: str = "",
    name: str = "",
    principle: str = "",
    created_by=None,
    enqueue: bool = True,
) -> JudgeJob:
    """Validate, store and queue a judge job (``enqueue=False``: the caller runs it). The scope
    is every two-response compare task of ``project``, or ``task_ids``, or the tasks of a
    ``snapshot``'s frozen judgment set (its id horizon and annotator, date, gold and flag
    filters), or both intersected. A critique template needs ``principle`` (its key): every
    response of the scope (compare and rank tasks) is critiqued against it and revised."""
    if not project.is_active:
        raise DomainError(f"project {project.slug} is archived")
    if template is None:
        template = templates.ensure_defaults()[templates.PRINCIPLE_DEFAULT]
    critique = template.kind == JudgeTemplate.Kind.CRITIQUE
    if critique != bool(principle):
        raise DomainError(
            "a critique template needs a principle"
            if critique
            else "principle is for a critique template"
        )
    chosen = principle_of(project, principle) if critique else None
    config = clean_config(backend, config or {}, model_version, critique)
    task_ids = sorted(set(task_ids or []))
    if snapshot is not None:
        if snapshot.project_id != project.pk:
            raise DomainError(f"snapshot {snapshot.pk} is not a snapshot of {project.slug}")
        in_snapshot = dataset_selectors.snapshot_task_ids(snapshot)
        task_ids = sorted(in_snapshot & set(task_ids)) if task_ids else sorted(in_snapshot)
        if not task_ids:
            raise DomainError(f"snapshot {snapshot.pk} holds no task to judge")
    if task_ids:
        kinds = [Task.Kind.COMPARE, Task.Kind.RANK] if critique else [Task.Kind.COMPARE]
        found = set(
            Task.objects.filter(project=project, kind__in=kinds, id__in=task_ids).values_list(
                "id", flat=True
            )
        )
        stray = [t for t in task_ids if t not in found]
        if stray:
            what = "compare or rank" if critique else "compare"
            raise DomainError(f"task_ids: {stray[:10]} are not {what} tasks of {project.slug}")
    with transaction.atomic():
        job = JudgeJob(
            name=name,
            project=project,
            template=template,
            backend=backend,
            model_version=model_version,
            config=config,
            task_ids=task_ids,
            snapshot=snapshot,
            principle=chosen,
            created_by=created_by,
        )
        label = model_label(job)
        ref = f"{backend}:{label}"
        job.annotator = _annotator(annotator or _default_annotator(template, label), ref)
        job.save()
    if enqueue:
        queue_job(job)
    return job


def _queue(job: JudgeJob) -> str:
    return job.config.get("queue", "cpu") if job.backend == JudgeJob.Backend.MODEL else "cpu"


def queue_job(job: JudgeJob) -> None:
    """Publish the job (``send_or_fail``: an unreachable broker fails it with the reason)."""
    background.send_or_fail(
        RUN_TASK,
        job.pk,
        queue=_queue(job),
        what=f"judge job {job.pk}",
        fail=lambda message: fail_job(job.pk, message),
    )


def job_lock(job_id: int) -> ProcessLock:
    """The lock a job's runner holds while it runs (under ``ARTIFACT_ROOT``, shared by workers)."""
    folder = Path(settings.ARTIFACT_ROOT) / "judges"
    folder.mkdir(parents=True, exist_ok=True)
    return ProcessLock(folder / f"job-{job_id}.lock")


def requeue_orphaned() -> int:
    """Queue again every running job whose runner died (its lock is free); when a worker
    starts. Returns how many."""
    count = 0
    for job in JudgeJob.objects.filter(status=Status.RUNNING):
        lock = job_lock(job.pk)
        if lock.acquire():
            lock.release(remove=True)
            background.send(RUN_TASK, job.pk, queue=_queue(job), fail_silently=True)
            count += 1
    return count


def fail_job(job_id: int, error: str) -> None:
    JudgeJob.objects.filter(pk=job_id).update(
        status=Status.FAILED, error=error, finished_at=timezone.now()
    )


@transaction.atomic
def request_cancel(job: JudgeJob) -> JudgeJob:
    """A queued job is cancelled at once; a running one stops after its current chunk."""
    job = JudgeJob.objects.select_for_update().get(pk=job.pk)
    if job.is_finished:
        raise DomainError(f"judge job {job.pk} has already {job.status}")
    job.cancel_requested = True
    if job.status == Status.QUEUED:
        job.status, job.finished_at = Status.CANCELLED, timezone.now()
    job.save(update_fields=["cancel_requested", "status", "finished_at"])
    return job


def resume(job: JudgeJob, *, enqueue: bool = True) -> JudgeJob:
    """Queue the job again: it asks only the questions that have no answer yet (a failed or
    cancelled job; a running one is resumed only if its runner died, see ``runner.execute``)."""
    updated = (
        JudgeJob.objects.filter(pk=job.pk)
        .exclude(status=Status.QUEUED)
        .update(status=Status.QUEUED, cancel_requested=False, error="", finished_at=None)
    )
    if not updated:
        raise DomainError(f"judge job {job.pk} is already queued")
    job.refresh_from_db()
    if enqueue:
        queue_job(job)
    return job


@transaction.atomic
def record_verdicts(job: JudgeJob, pairs: dict[int, tuple[int, int]]) -> int:
    """Write the annotator's judgments from the job's answers (see the module doc); ``pairs``
    maps each task to its responses (shown as A, B in order 0). Returns the verdicts written."""
    answers: dict[tuple[int, int | None], dict[int, dict]] = {}
    for task_id, principle_id, order, probs in JudgeAnswer.objects.filter(job=job).values_list(
        "task_id", "principle_id", "order", "probs"
    ):
        if task_id in pairs:
            answers.setdefault((task_id, principle_id), {})[order] = probs
    options = job.template.options
    label = f"{job.template.name}@{job.template.version}"
    model = model_label(job)
    combined: dict[tuple[int, int | None], tuple[int, str, list[dict]]] = {}
    for key, orders in answers.items():
        if len(orders) != 2:
            raise DomainError(f"task {key[0]} has {len(orders)} of 2 orders answered")
        first, second = (tuple(orders[o].get(x, 0.0) for x in _abn(options)) for o in (0, 1))
        sign, reason = combine_orders(first, second)
        combined[key] = (sign, reason, [orders[0], orders[1]])

    task_ids = sorted(pairs)
    replaced = Judgment.objects.filter(annotator=job.annotator, task_id__in=task_ids)
    removed = replaced.count()
    replaced.delete()
    origin = f"judge:{job.pk}"
    principle_kind = job.template.kind == JudgeTemplate.Kind.PRINCIPLE

    def judgment(task_id: int) -> Judgment:
        ordering, reason = [], ""
        if not principle_kind:  # a preference judge ranks the pair
            sign, reason, _ = combined[(task_id, None)]
            x, y = pairs[task_id]
            ordering = [[x], [y]] if sign > 0 else [[y], [x]] if sign < 0 else []
        return Judgment(
            task_id=task_id,
            annotator=job.annotator,
            ordering=ordering,
            rationale=reason,
            origin=origin,
        )

    judgments = Judgment.objects.bulk_create((judgment(t) for t in task_ids), batch_size=2000)
    judgment_of = {j.task_id: j.pk for j in judgments}
    verdicts = []
    if principle_kind:
        for (task_id, principle_id), (sign, reason, raw) in combined.items():
            x, y = pairs[task_id]
            verdicts.append(
                PrincipleVerdict(
                    judgment_id=judgment_of[task_id],
                    principle_id=principle_id,
                    verdict=PrincipleVerdict.Verdict.PREFERS
                    if sign
                    else PrincipleVerdict.Verdict.NOT_APPLICABLE,
                    preferred_response_id=(x if sign > 0 else y) if sign else None,
                    scores={
                        "orders": raw,
                        "shown_first": x,
                        "template": label,
                        "backend": job.backend,
                        "model": model,
                        **({"reason": reason} if reason else {}),
                    },
                )
            )
        PrincipleVerdict.objects.bulk_create(verdicts, batch_size=5000)
    Project.objects.filter(pk=job.project_id).update(
        judgment_count=F("judgment_count") + len(judgments) - removed
    )
    JudgeJob.objects.filter(pk=job.pk).update(verdicts=len(verdicts))
    events.publish("judgments.imported", project_id=job.project_id, judgments=len(judgments))
    return len(verdicts)


def _abn(options: list[str]) -> tuple[str, str, str]:
    """The option labels read as (A, B, NA); a two-option template has no NA."""
    return (options[0], options[1], options[2] if len(options) > 2 else "")


def principle_of(project: Project, key: str) -> Principle:
    found = Principle.objects.filter(principle_set_id=project.principle_set_id, key=key).first()
    if found is None:
        raise DomainError(f"principle {key!r} is not in {project.slug}'s principle set")
    return found


def principles_of(job: JudgeJob) -> list[Principle]:
    if job.template.kind != JudgeTemplate.Kind.PRINCIPLE:
        return []
    return list(job.project.principle_set.principles.order_by("position"))


def compare_pairs(job: JudgeJob) -> dict[int, tuple[int, int]]:
    """task → (response at position 0, response at position 1) for the job's two-response
    compare tasks."""
    links = TaskResponse.objects.filter(
        task__project_id=job.project_id, task__kind=Task.Kind.COMPARE
    )
    if job.task_ids:
        links = links.filter(task_id__in=job.task_ids)
    by_task: dict[int, list[int]] = {}
    for task_id, response_id in links.order_by("task_id", "position").values_list(
        "task_id", "response_id"
    ):
        by_task.setdefault(task_id, []).append(response_id)
    return {t: (r[0], r[1]) for t, r in by_task.items() if len(r) == 2}
