"""Reading tasks, judgments and demonstrations in batches for export (ORM path)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from django.db import connection, connections

from annotation.datasets import pg
from annotation.datasets.decoding import VERDICT_CODES, Lookups, judgment_records
from annotation.datasets.exports.records import (
    DemoRecord,
    ExportOptions,
    JudgmentRecord,
    TaskContent,
)
from annotation.datasets.exports.rows import TaskShaper, sft_row
from annotation.datasets.filters import (
    SnapshotFilters,
    demonstration_queryset,
    judgment_queryset,
)
from annotation.models import (
    Demonstration,
    Judgment,
    PrincipleVerdict,
    Project,
    Task,
    TaskResponse,
)

BATCH_JUDGMENTS = 4000  # judgments per read batch: bounded memory, few round trips
# An export streamed over HTTP reads smaller batches, in the request's thread: a web process
# serves several requests at once and keeps the memory a batch costs (allocator arenas).
STREAM_BATCH_JUDGMENTS = 500


DEMO_BATCH = 2000


class _OrmLoader:
    """Portable reads (SQLite, or filters only the ORM knows): ``values_list`` queries."""

    def __init__(self, project: Project, f: SnapshotFilters, lookups: Lookups) -> None:
        self.judgments_qs = judgment_queryset(project, f)
        tasks = Task.objects.filter(project=project)
        self.tasks_qs = tasks.filter(is_gold=False) if f.exclude_gold else tasks
        self.lookups = lookups

    def tasks(self, after: int, limit: int, until: int | None = None) -> list[tuple]:
        tasks = self.tasks_qs if until is None else self.tasks_qs.filter(id__lte=until)
        return list(
            tasks.filter(id__gt=after)
            .order_by("id")
            .values_list("id", "prompt_id", "kind", "is_gold", "prompt__messages",
                         "prompt__external_id")[:limit]
        )  # fmt: skip

    def judgments(self, task_ids: list[int]) -> dict[int, list[JudgmentRecord]]:
        rows = list(
            self.judgments_qs.filter(task_id__in=task_ids)
            .order_by("task_id", "id")
            .values_list(
                "id", "task_id", "annotator_id", "ordering", "strength", "both_bad",
                "discretion", "discretion_note", "rationale", "confidence", "time_spent_ms",
                "created_at", "origin",
            )
        )  # fmt: skip
        if not rows:
            return {}
        verdicts: dict[int, dict[str, int | str]] = {}
        decisive: dict[int, list[str]] = {}
        for judgment_id, key, verdict, preferred in (
            PrincipleVerdict.objects.filter(judgment__task_id__in=task_ids)
            .order_by("judgment_id", "principle__position")
            .values_list("judgment_id", "principle__key", "verdict", "preferred_response_id")
        ):
            verdicts.setdefault(judgment_id, {})[key] = (
                preferred if verdict == PrincipleVerdict.Verdict.PREFERS else VERDICT_CODES[verdict]
            )
        for judgment_id, key in (
            Judgment.decisive_principles.through.objects.filter(judgment__task_id__in=task_ids)
            .order_by("judgment_id", "principle__position")
            .values_list("judgment_id", "principle__key")
        ):
            decisive.setdefault(judgment_id, []).append(key)
        return judgment_records(rows, verdicts, decisive, self.lookups)

    def texts(self, task_ids: list[int]) -> dict[int, dict[int, str]]:
        texts: dict[int, dict[int, str]] = {}
        for task_id, response_id, text in (
            TaskResponse.objects.filter(task_id__in=task_ids)
            .order_by("task_id", "position")
            .values_list("task_id", "response_id", "response__text")
        ):
            texts.setdefault(task_id, {})[response_id] = text
        return texts


def _loader(project: Project, f: SnapshotFilters, lookups: Lookups, full: bool = True):
    if pg.enabled():
        return pg.PgLoader(project, f, lookups, full)
    return _OrmLoader(project, f, lookups)


def iter_task_batches(
    project: Project,
    f: SnapshotFilters,
    *,
    target: int = BATCH_JUDGMENTS,
    full: bool = True,
    after: int = 0,
    until: int | None = None,
) -> Iterator[list[tuple[TaskContent, list[JudgmentRecord]]]]:
    """Batches of (task content, its judgments) in task id order, only judged tasks; each
    batch holds about ``target`` judgments (the task count adapts), so memory stays flat.
    ``full=False`` skips the columns only raw rows show (rationale, confidence, …)."""
    loader = _loader(project, f, Lookups(), full)
    size = 64
    last = after
    while True:
        task_rows = loader.tasks(last, size, until)
        if not task_rows:
            return
        last = task_rows[-1][0]
        by_task = loader.judgments([row[0] for row in task_rows])
        judged = sum(len(v) for v in by_task.values())
        size = max(8, min(5000, int(size * target / judged) if judged else size * 4))
        if not by_task:
            continue
        texts = loader.texts(list(by_task))
        yield [
            (
                TaskContent(tid, pid, kind, messages, texts.get(tid, {}), gold, external),
                by_task[tid],
            )
            for tid, pid, kind, gold, messages, external in task_rows
            if tid in by_task
        ]


def prefetched(make_iterator, depth: int = 1):
    """Run a database-reading generator one batch ahead in a thread (its own connection), so
    PostgreSQL works on the next batch while Python shapes and writes this one. Only outside
    a transaction: a second connection cannot see uncommitted rows."""
    if not pg.enabled() or connection.in_atomic_block:
        yield from make_iterator()
        return
    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in make_iterator():
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer
            put(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=work, name="snapshot-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=30)


def iter_demo_batches(
    project: Project, f: SnapshotFilters, *, batch: int = DEMO_BATCH
) -> Iterator[list[DemoRecord]]:
    demos = demonstration_queryset(project, f)
    lookups = Lookups()
    last = 0
    while True:
        rows = list(
            demos.filter(id__gt=last)
            .order_by("id")
            .values_list("id", "prompt_id", "task_id", "annotator_id", "text", "based_on_id",
                         "created_at", "prompt__messages")[:batch]
        )  # fmt: skip
        if not rows:
            return
        last = rows[-1][0]
        cited: dict[int, list[str]] = {}
        cited_rows = list(
            Demonstration.cited_principles.through.objects.filter(
                demonstration_id__in=[r[0] for r in rows]
            ).values_list("demonstration_id", "principle_id")
        )
        known = lookups.principles.known({r[1] for r in cited_rows})
        for demo_id, principle_id in cited_rows:
            cited.setdefault(demo_id, []).append(known[principle_id][1])
        yield [
            DemoRecord(
                demonstration_id=did,
                prompt_id=pid,
                task_id=tid,
                annotator=lookups.pseudonym(uid),
                messages=messages,
                text=text,
                based_on=based_on,
                cited=sorted(cited.get(did, [])),
                created_at=created.isoformat(),
            )
            for did, pid, tid, uid, text, based_on, created, messages in rows
        ]


class RowStream:
    """Row batches of one export plus what the snapshot records about them."""

    def __init__(
        self,
        project: Project,
        options: ExportOptions,
        f: SnapshotFilters,
        task_range: tuple[int, int | None] = (0, None),
        *,
        target: int = BATCH_JUDGMENTS,
        prefetch: bool = True,
    ) -> None:
        self.project = project
        self.target = target
        self.prefetch = prefetch
        self.options = options
        self.filters = f
        self.task_range = task_range
        self.shaper = TaskShaper(options) if options.kind != "sft" else None
        self.sft_annotators: dict[str, int] = {}
        self.sft_rows = 0
        self.processed = 0

    def total(self) -> int:
        if self.options.kind == "sft":
            return demonstration_queryset(self.project, self.filters).count()
        return judgment_queryset(self.project, self.filters).count()

    def __iter__(self) -> Iterator[list[dict]]:
        if self.shaper is None:
            for demos in iter_demo_batches(
                self.project, self.filters, batch=min(DEMO_BATCH, self.target)
            ):
                rows = [
                    sft_row(d, style=self.options.style, spec_version=self.options.spec_version)
                    for d in demos
                ]
                for demo in demos:
                    self.sft_annotators[demo.annotator] = (
                        self.sft_annotators.get(demo.annotator, 0) + 1
                    )
                self.sft_rows += len(rows)
                self.processed += len(demos)
                yield rows
            return
        shaper = self.shaper
        full = self.options.kind == "raw"
        after, until = self.task_range

        def read():
            return iter_task_batches(
                self.project, self.filters, target=self.target, full=full, after=after, until=until
            )

        batches = prefetched(read) if self.prefetch else read()
        for task_batch in batches:
            rows = []
            for task, judgments in task_batch:
                rows.extend(shaper.rows(task, judgments))
                self.processed += len(judgments)
            yield rows

    def merge(self, shard: dict) -> None:
        """Add what an export shard (another process) counted."""
        self.shaper.summary.merge(shard["summary"])
        self.processed += shard["processed"]

    @property
    def row_count(self) -> int:
        return self.sft_rows if self.shaper is None else self.shaper.summary.rows

    def per_annotator_counts(self) -> dict[str, int]:
        if self.shaper is None:
            return dict(sorted(self.sft_annotators.items()))
        return dict(sorted(self.shaper.summary.per_annotator.items()))

    def discretion_summary(self) -> dict:
        if self.shaper is None:
            return {"rows": self.sft_rows, "demonstrations": self.sft_rows}
        return self.shaper.summary.as_dict()
