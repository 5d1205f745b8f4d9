"""Bulk task creation: prompts, responses and tasks from specs, in batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from django.db import transaction

from annotation.datasets import pg
from annotation.models import (
    Project,
    Prompt,
    Response,
    Task,
    TaskResponse,
)
from annotation.specs import PromptSpec


def task_kind_for(spec: PromptSpec) -> str:
    if spec.kind:
        return spec.kind
    count = len(spec.responses)
    if count == 0:
        return Task.Kind.DEMONSTRATE
    if count == 1:
        return Task.Kind.RATE
    return Task.Kind.COMPARE if count == 2 else Task.Kind.RANK


@transaction.atomic
def create_tasks(
    *,
    project: Project,
    specs: Iterable[PromptSpec],
    batch_size: int | None = None,
    on_batch: Callable[[list[PromptSpec], list[int], list[list[int]]], None] | None = None,
) -> int:
    """Store prompts, responses and one task per prompt in bulk; returns the task count.

    ``on_batch(specs, task_ids, response_ids)`` runs after each batch (response ids per task in
    position order), e.g. to attach imported judgments in the same transaction. ``specs`` may be
    lazy (a file being parsed); on PostgreSQL a worker thread advances it, so it must not use
    the database."""
    batch_size = batch_size or (5000 if pg.enabled() else 2000)
    batches = _batches(specs, batch_size)
    if pg.enabled():
        total = pg.copy_tasks(project, batches, task_kind_for, on_batch)
    else:
        total = sum(_create_task_batch(project, batch, on_batch) for batch in batches)
    Project.objects.filter(pk=project.pk).update(task_count=project.tasks.count())
    return total


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _create_task_batch(project: Project, specs: list[PromptSpec], on_batch=None) -> int:
    prompts = Prompt.objects.bulk_create(
        Prompt(project=project, messages=s.messages, metadata=s.metadata, external_id=s.external_id)
        for s in specs
    )
    responses = Response.objects.bulk_create(
        Response(prompt=prompt, text=r.text, source=r.source, generation_params=r.generation_params)
        for prompt, spec in zip(prompts, specs, strict=True)
        for r in spec.responses
    )
    tasks = Task.objects.bulk_create(
        Task(
            project=project, prompt=prompt, kind=task_kind_for(spec), submitted_count=spec.submitted
        )
        for prompt, spec in zip(prompts, specs, strict=True)
    )
    links = []
    response_iter = iter(responses)
    for task, spec in zip(tasks, specs, strict=True):
        for position, response_spec in enumerate(spec.responses):
            links.append(
                TaskResponse(
                    task=task,
                    response=next(response_iter),
                    position=position,
                    source_label=response_spec.label,
                )
            )
    TaskResponse.objects.bulk_create(links)
    if on_batch is not None:
        ids = iter(r.pk for r in responses)
        on_batch(
            specs,
            [t.pk for t in tasks],
            [[next(ids) for _ in spec.responses] for spec in specs],
        )
    return len(tasks)
