"""Bulk task creation: prompts, responses and tasks from specs, in batches."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from django.db import transaction
from django.utils.crypto import salted_hmac

from annotation.datasets import pg
from annotation.models import (
    Project,
    Prompt,
    Response,
    Task,
    TaskResponse,
)
from annotation.specs import PromptSpec
from common import events


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

    Each task's responses are stored (ids and positions) in a seeded random order of their own
    (``stored_order``), so that neither a response id nor a position tells which one the source
    listed first (e.g. the dataset's "chosen" reply). ``on_batch(specs, task_ids,
    response_ids)`` runs after each batch with the response ids per task in the *spec's* order
    (``spec.responses[i]`` is ``response_ids[k][i]``), e.g. to attach imported judgments in the
    same transaction. ``specs`` may be lazy (a file being parsed); on PostgreSQL a worker
    thread advances it, so it must not use the database."""
    batch_size = batch_size or (5000 if pg.enabled() else 2000)
    shuffled = (
        replace(spec, responses=[spec.responses[i] for i in stored_order(project.pk, spec)])
        for spec in specs
    )

    def in_spec_order(stored_specs, task_ids, stored_ids) -> None:
        if on_batch is None:
            return
        originals, by_spec = [], []
        for spec, ids in zip(stored_specs, stored_ids, strict=True):
            # the same permutation: the seed does not depend on the responses' order
            slot = {
                original: stored for stored, original in enumerate(stored_order(project.pk, spec))
            }
            by_spec.append([ids[slot[i]] for i in range(len(ids))])
            originals.append(
                replace(spec, responses=[spec.responses[slot[i]] for i in range(len(ids))])
            )
        on_batch(originals, task_ids, by_spec)

    batches = _batches(shuffled, batch_size)
    if pg.enabled():
        total = pg.copy_tasks(project, batches, task_kind_for, in_spec_order)
    else:
        total = sum(_create_task_batch(project, batch, in_spec_order) for batch in batches)
    if total:  # the project's counts are recounted after the commit
        events.publish("tasks.created", project_id=project.pk, tasks=total)
    return total


def stored_order(project_id: int, spec: PromptSpec) -> list[int]:
    """The order ``spec.responses`` are stored in: a permutation of their indexes seeded by the
    task's stable identity (project, then external id or else the prompt and the responses'
    texts, in any order), so that a re-import stores the same order; keyed with the deployment's
    secret (an HMAC), so that knowing a task's identity does not tell its order."""
    identity = spec.external_id or json.dumps(
        [spec.messages, sorted(r.text for r in spec.responses)], sort_keys=True, default=str
    )
    digest = salted_hmac("annotation.stored_order", f"{project_id}\0{identity}").digest()
    order = list(range(len(spec.responses)))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


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
