"""Dataset snapshots: frozen, content-hashed exports with their filters and provenance.

``create_snapshot`` validates the options, freezes the judgment / demonstration id horizon and
either builds inline (small) or queues ``annotation.build_snapshot`` on Celery (large).
``build_snapshot`` streams rows task batch by task batch (``values_list`` queries, bounded
memory) through the pure shapers in ``annotation.exports`` into a temporary file under
``ARTIFACT_ROOT/snapshots``, hashes it, renames it into place and records row counts,
per-annotator counts (HMAC pseudonyms under ``PSEUDONYM_KEY``) and the discretion summary.
``export_lines`` streams the same rows as JSONL for small HTTP exports.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotation.errors import DomainError
from annotation.exports.pseudonyms import Pseudonymizer
from annotation.exports.records import (
    AGGREGATIONS,
    EXPANSIONS,
    KINDS,
    PROMPT_STYLES,
    STYLES,
    TIE_POLICIES,
    DemoRecord,
    ExportOptions,
    JudgmentRecord,
    TaskContent,
)
from annotation.exports.rows import TaskShaper, sft_row
from annotation.exports.writers import encode_lines, open_writer, schema_for
from annotation.gc_pause import cyclic_gc_paused
from annotation.models import (
    AnnotatorProfile,
    DatasetSnapshot,
    Demonstration,
    Judgment,
    Principle,
    PrincipleVerdict,
    Project,
    Prompt,
    Response,
    Task,
    TaskResponse,
)

logger = logging.getLogger(__name__)
FORMATS = tuple(DatasetSnapshot.Format.values)
BATCH_JUDGMENTS = 4000  # judgments per read batch: bounded memory, few round trips
DEMO_BATCH = 2000
VERDICT_CODES = {
    PrincipleVerdict.Verdict.TIE: "tie",
    PrincipleVerdict.Verdict.NOT_APPLICABLE: "n/a",
}


def inline_limit() -> int:
    """Snapshots of at most this many judgments are built in the request; larger by Celery."""
    return int(getattr(settings, "SNAPSHOT_INLINE_MAX_JUDGMENTS", 20_000))


# ---------------------------------------------------------------- options and filters


@dataclass(frozen=True)
class SnapshotFilters:
    """Which judgments (or demonstrations) a snapshot reads."""

    annotators: tuple[int, ...] = ()
    annotator_kinds: tuple[str, ...] = ()
    date_from: datetime | None = None
    date_to: datetime | None = None
    exclude_gold: bool = False
    exclude_flagged: bool = False
    max_judgment_id: int | None = None
    max_demonstration_id: int | None = None


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
        return value.lower() in {"true", "1", "yes"}
    raise DomainError(f"filter {name!r} must be true or false")


def _as_datetime(name: str, value: object) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = parse_datetime(str(value))
        if parsed is None:
            try:
                parsed = datetime.fromisoformat(str(value))
            except ValueError:
                parsed = None
    if parsed is None:
        raise DomainError(f"filter {name!r} must be an ISO 8601 date or datetime")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, timezone.get_default_timezone())
    return parsed


FILTER_KEYS = {
    "annotators", "annotator_kinds", "date_from", "date_to", "min_agreement", "exclude_gold",
    "exclude_flagged", "exclude_discretion", "exclude_both_bad", "tie_policy", "style",
    "prompt_style", "expansion", "principle_set", "include_rationale",
}  # fmt: skip


def prepare(
    *, project: Project, kind: str, aggregation: str = "raw", filters: dict | None = None
) -> tuple[ExportOptions, SnapshotFilters, dict]:
    """Validate export options and filters; return them plus the normalized record to store."""
    filters = dict(filters or {})
    unknown = set(filters) - FILTER_KEYS
    if unknown:
        raise DomainError(f"unknown filters: {', '.join(sorted(unknown))}")
    if kind not in KINDS:
        raise DomainError(f"kind must be one of {', '.join(KINDS)}")
    if aggregation not in AGGREGATIONS:
        raise DomainError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
    principle_set = project.principle_set
    wanted_set = filters.get("principle_set")
    if wanted_set not in (None, "", principle_set.pk, principle_set.label, str(principle_set.pk)):
        raise DomainError(
            f"project {project.slug} uses principle set {principle_set.label}; "
            f"a snapshot cannot select another version"
        )
    annotators = filters.get("annotators") or []
    if not isinstance(annotators, list) or not all(
        isinstance(a, int) and not isinstance(a, bool) for a in annotators
    ):
        raise DomainError("filter 'annotators' must be a list of user ids")
    kinds = filters.get("annotator_kinds") or []
    if not isinstance(kinds, list) or not set(kinds) <= set(AnnotatorProfile.Kind.values):
        raise DomainError("filter 'annotator_kinds' must be a list of human / model")
    min_agreement = filters.get("min_agreement")
    if min_agreement is not None:
        try:
            min_agreement = float(min_agreement)
        except (TypeError, ValueError) as exc:
            raise DomainError("filter 'min_agreement' must be a number in [0, 1]") from exc
    for name, allowed in (
        ("tie_policy", TIE_POLICIES),
        ("style", STYLES),
        ("prompt_style", PROMPT_STYLES),
        ("expansion", EXPANSIONS),
    ):
        if name in filters and filters[name] not in allowed:
            raise DomainError(f"filter {name!r} must be one of {', '.join(allowed)}")
    try:
        options = ExportOptions(
            kind=kind,
            style=filters.get("style", "conversational"),
            prompt_style=filters.get("prompt_style", "explicit"),
            expansion=filters.get("expansion", "all_pairs"),
            tie_policy=filters.get("tie_policy", "drop"),
            aggregation=aggregation,
            spec_version=principle_set.label,
            min_agreement=min_agreement,
            exclude_both_bad=_as_bool("exclude_both_bad", filters.get("exclude_both_bad", False)),
            exclude_discretion=_as_bool(
                "exclude_discretion", filters.get("exclude_discretion", False)
            ),
            include_rationale=_as_bool("include_rationale", filters.get("include_rationale", True)),
        ).validate()
    except ValueError as exc:
        raise DomainError(str(exc)) from exc
    if kind == "sft" and options.prompt_style == "implicit":
        raise DomainError("SFT rows have no prompt column; prompt_style does not apply")
    snapshot_filters = SnapshotFilters(
        annotators=tuple(annotators),
        annotator_kinds=tuple(kinds),
        date_from=_as_datetime("date_from", filters.get("date_from")),
        date_to=_as_datetime("date_to", filters.get("date_to")),
        exclude_gold=_as_bool("exclude_gold", filters.get("exclude_gold", False)),
        exclude_flagged=_as_bool("exclude_flagged", filters.get("exclude_flagged", False)),
    )
    return options, snapshot_filters, _record(project, options, snapshot_filters)


def _record(project: Project, options: ExportOptions, f: SnapshotFilters) -> dict:
    return {
        "project": project.slug,
        "principle_set": options.spec_version,
        "annotators": list(f.annotators),
        "annotator_kinds": list(f.annotator_kinds),
        "date_from": f.date_from.isoformat() if f.date_from else None,
        "date_to": f.date_to.isoformat() if f.date_to else None,
        "min_agreement": options.min_agreement,
        "exclude_gold": f.exclude_gold,
        "exclude_flagged": f.exclude_flagged,
        "exclude_discretion": options.exclude_discretion,
        "exclude_both_bad": options.exclude_both_bad,
        "tie_policy": options.tie_policy,
        "style": options.style,
        "prompt_style": options.prompt_style,
        "expansion": options.expansion,
        "include_rationale": options.include_rationale,
        "max_judgment_id": f.max_judgment_id,
        "max_demonstration_id": f.max_demonstration_id,
    }


def _from_record(snapshot: DatasetSnapshot) -> tuple[ExportOptions, SnapshotFilters]:
    recorded = dict(snapshot.filters)
    frozen = {k: recorded.pop(k, None) for k in ("max_judgment_id", "max_demonstration_id")}
    recorded.pop("project", None)
    options, f, _ = prepare(
        project=snapshot.project,
        kind=snapshot.kind,
        aggregation=snapshot.aggregation,
        filters={k: v for k, v in recorded.items() if v is not None},
    )
    return options, SnapshotFilters(**{**f.__dict__, **frozen})


# ---------------------------------------------------------------- reading


def _by_annotator_and_date(qs, f: SnapshotFilters, max_id: int | None):
    """The filters judgments and demonstrations share: frozen id horizon, annotators, dates."""
    if max_id is not None:
        qs = qs.filter(id__lte=max_id)
    if f.annotators:
        qs = qs.filter(annotator_id__in=f.annotators)
    if f.annotator_kinds:
        qs = qs.filter(annotator__profile__kind__in=f.annotator_kinds)
    if f.date_from:
        qs = qs.filter(created_at__gte=f.date_from)
    if f.date_to:
        qs = qs.filter(created_at__lte=f.date_to)
    return qs


def judgment_queryset(project: Project, f: SnapshotFilters):
    qs = _by_annotator_and_date(
        Judgment.objects.filter(task__project=project), f, f.max_judgment_id
    )
    if f.exclude_gold:
        qs = qs.filter(task__is_gold=False)
    if f.exclude_flagged:
        qs = qs.filter(flagged=False)
    return qs


def demonstration_queryset(project: Project, f: SnapshotFilters):
    qs = _by_annotator_and_date(
        Demonstration.objects.filter(prompt__project=project), f, f.max_demonstration_id
    )
    if f.exclude_gold:
        qs = qs.filter(Q(task__isnull=True) | Q(task__is_gold=False))
    return qs


# How ``_PgLoader`` encodes a verdict that names no response (response ids are positive).
_TIE_CODE, _NA_CODE = -1, -2
_CODE_NAMES = {_TIE_CODE: "tie", _NA_CODE: "n/a"}


class _PrincipleDecoder:
    """Principle ids as the PostgreSQL loader reads them → keys in principle position order.

    The server aggregates each judgment's verdicts as ``{"<principle id>": <response id or
    code>}`` and its decisive principles as an id array, without joining the principle table
    (that join, once per judgment, cost PostgreSQL about as much as the rest of the export's
    reads). Judgments of one task mostly repeat a few verdict combinations, so each distinct
    text is decoded once into a dict the records share (row shaping only reads them)."""

    LIMIT = 4096  # distinct combinations kept, whatever the export's size

    def __init__(self) -> None:
        self._principles: dict[int, tuple[int, str]] = {}  # id → (position, key)
        self._verdicts: dict[str, dict[str, int | str]] = {}
        self._orders: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        self._decisive: dict[tuple[int, ...], list[str]] = {}

    def known(self, ids) -> dict[int, tuple[int, str]]:
        """Principle id → (position, key) for at least ``ids``."""
        known = self._principles
        missing = set(ids) - known.keys()
        if missing:
            known.update(
                (pk, (position, key))
                for pk, position, key in Principle.objects.filter(id__in=missing).values_list(
                    "id", "position", "key"
                )
            )
        return known

    def verdicts(self, text: str) -> dict[str, int | str]:
        decoded = self._verdicts.get(text)
        if decoded is None:
            raw = orjson.loads(text)
            ids = tuple(raw)
            order = self._orders.get(ids)
            if order is None:  # the JSON keys (ids) in position order, with their keys
                if len(self._orders) >= self.LIMIT:
                    self._orders.clear()
                known = self.known(int(pk) for pk in ids)
                order = self._orders[ids] = [
                    (pk, known[int(pk)][1]) for pk in sorted(ids, key=lambda pk: known[int(pk)])
                ]
            if len(self._verdicts) >= self.LIMIT:
                self._verdicts.clear()
            names = _CODE_NAMES
            decoded = self._verdicts[text] = {
                key: (code if (code := raw[pk]) > 0 else names[code]) for pk, key in order
            }
        return decoded

    def decisive(self, ids: list[int]) -> list[str]:
        signature = tuple(ids)
        keys = self._decisive.get(signature)
        if keys is None:
            known = self.known(ids)
            if len(self._decisive) >= self.LIMIT:
                self._decisive.clear()
            keys = self._decisive[signature] = [known[pk][1] for pk in sorted(ids, key=known.get)]
        return keys


class _Lookups:
    """Small caches shared across batches: principle keys, pseudonyms, annotator kinds."""

    def __init__(self) -> None:
        self.pseudonym = Pseudonymizer(settings.PSEUDONYM_KEY)
        self.kinds: dict[int, str] = {}
        self.principles = _PrincipleDecoder()

    def annotator_kinds(self, ids) -> dict[int, str]:
        missing = set(ids) - self.kinds.keys()
        if missing:
            found = dict(
                AnnotatorProfile.objects.filter(user_id__in=missing).values_list("user_id", "kind")
            )
            self.kinds.update({uid: found.get(uid, "human") for uid in missing})
        return self.kinds


class _OrmLoader:
    """Portable reads (SQLite, or filters only the ORM knows): ``values_list`` queries."""

    def __init__(self, project: Project, f: SnapshotFilters, lookups: _Lookups) -> None:
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
        return _records(rows, verdicts, decisive, self.lookups)

    def texts(self, task_ids: list[int]) -> dict[int, dict[int, str]]:
        texts: dict[int, dict[int, str]] = {}
        for task_id, response_id, text in (
            TaskResponse.objects.filter(task_id__in=task_ids)
            .order_by("task_id", "position")
            .values_list("task_id", "response_id", "response__text")
        ):
            texts.setdefault(task_id, {})[response_id] = text
        return texts


def _timestamp(value: datetime) -> str:
    """UTC ISO 8601 with microseconds, identical from both backends' loaders."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _records(rows, verdicts, decisive, lookups: _Lookups) -> dict[int, list[JudgmentRecord]]:
    """``rows``: (id, task, annotator, ordering, strength, both_bad, discretion, note,
    rationale, confidence, time spent, created_at text or datetime, origin, …).
    Equal orderings given as JSON text are decoded once per batch into one shared list (row
    shaping only reads them)."""
    users = {row[2] for row in rows}
    kinds = lookups.annotator_kinds(users)
    names = {uid: lookups.pseudonym(uid) for uid in users}
    loads = orjson.loads
    orderings: dict[str, list[list[int]]] = {}
    by_task: dict[int, list[JudgmentRecord]] = {}
    empty: dict = {}
    for row in rows:
        jid, tid, uid, ordering = row[0], row[1], row[2], row[3]
        if isinstance(ordering, str):
            text = ordering
            if (ordering := orderings.get(text)) is None:
                ordering = orderings[text] = loads(text)
        created = row[11]
        by_task.setdefault(tid, []).append(
            JudgmentRecord(
                jid, tid, names[uid], ordering, row[4], row[5], verdicts.get(jid, empty),
                decisive.get(jid, []), row[6], row[7], row[8], row[9], row[10],
                created if isinstance(created, str) else _timestamp(created), row[12], kinds[uid],
            )
        )  # fmt: skip
    return by_task


class _PgLoader:
    """PostgreSQL reads: three raw queries per batch, verdicts and decisive principles
    aggregated per judgment by the server (``json_object_agg`` / ``array_agg``), no ORM
    per-row conversion. Produces exactly what ``_OrmLoader`` produces."""

    def __init__(
        self, project: Project, f: SnapshotFilters, lookups: _Lookups, full: bool = True
    ) -> None:
        self.project = project
        self.f = f
        self.lookups = lookups
        self.full = full
        q = connection.ops.quote_name
        self.t = {
            name: q(model._meta.db_table)
            for name, model in (
                ("task", Task), ("prompt", Prompt), ("judgment", Judgment),
                ("verdict", PrincipleVerdict),
                ("decisive", Judgment.decisive_principles.through),
                ("taskresponse", TaskResponse), ("response", Response),
                ("profile", AnnotatorProfile),
            )
        }  # fmt: skip

    def _fetch(self, sql: str, params: list) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def tasks(self, after: int, limit: int, until: int | None = None) -> list[tuple]:
        t = self.t
        gold = " AND NOT t.is_gold" if self.f.exclude_gold else ""
        upto = "" if until is None else f" AND t.id <= {int(until)}"
        rows = self._fetch(
            f"SELECT t.id, t.prompt_id, t.kind, t.is_gold, p.messages::text, p.external_id "
            f"FROM {t['task']} t JOIN {t['prompt']} p ON p.id = t.prompt_id "
            f"WHERE t.project_id = %s AND t.id > %s{gold}{upto} ORDER BY t.id LIMIT %s",
            [self.project.pk, after, limit],
        )
        loads = orjson.loads
        return [(tid, pid, kind, gold, loads(m), ext) for tid, pid, kind, gold, m, ext in rows]

    def judgments(self, task_ids: list[int]) -> dict[int, list[JudgmentRecord]]:
        t, f = self.t, self.f
        where, params = ["j.task_id = ANY(%s)"], [task_ids]
        join = ""
        if f.max_judgment_id is not None:
            where.append("j.id <= %s")
            params.append(f.max_judgment_id)
        if f.annotators:
            where.append("j.annotator_id = ANY(%s)")
            params.append(list(f.annotators))
        if f.annotator_kinds:
            join = f" JOIN {t['profile']} ap ON ap.user_id = j.annotator_id"
            where.append("ap.kind = ANY(%s)")
            params.append(list(f.annotator_kinds))
        if f.date_from:
            where.append("j.created_at >= %s")
            params.append(f.date_from)
        if f.date_to:
            where.append("j.created_at <= %s")
            params.append(f.date_to)
        if f.exclude_flagged:
            where.append("NOT j.flagged")
        # Only raw rows carry rationale, confidence, time and origin: skip them otherwise.
        extra = (
            """j.rationale, j.confidence, j.time_spent_ms,
                to_char(j.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
                j.origin"""
            if self.full
            else "'', NULL, NULL, '', ''"
        )
        rows = self._fetch(
            f"""SELECT j.id, j.task_id, j.annotator_id, j.ordering::text, j.strength, j.both_bad,
                j.discretion, j.discretion_note, {extra},
                (SELECT json_object_agg(v.principle_id, CASE v.verdict
                            WHEN 'prefers' THEN v.preferred_response_id
                            WHEN 'tie' THEN {_TIE_CODE} ELSE {_NA_CODE} END)
                   FROM {t["verdict"]} v WHERE v.judgment_id = j.id)::text,
                (SELECT array_agg(d.principle_id) FROM {t["decisive"]} d
                  WHERE d.judgment_id = j.id)
            FROM {t["judgment"]} j{join}
            WHERE {" AND ".join(where)}
            ORDER BY j.task_id, j.id""",
            params,
        )
        if not rows:
            return {}
        decode = self.lookups.principles
        verdicts = {row[0]: decode.verdicts(row[13]) for row in rows if row[13] is not None}
        decisive = {row[0]: decode.decisive(row[14]) for row in rows if row[14] is not None}
        return _records(rows, verdicts, decisive, self.lookups)

    def texts(self, task_ids: list[int]) -> dict[int, dict[int, str]]:
        t = self.t
        texts: dict[int, dict[int, str]] = {}
        for task_id, response_id, text in self._fetch(
            f"SELECT tr.task_id, tr.response_id, r.text FROM {t['taskresponse']} tr "
            f"JOIN {t['response']} r ON r.id = tr.response_id "
            f"WHERE tr.task_id = ANY(%s) ORDER BY tr.task_id, tr.position",
            [task_ids],
        ):
            texts.setdefault(task_id, {})[response_id] = text
        return texts


def _loader(project: Project, f: SnapshotFilters, lookups: _Lookups, full: bool = True):
    if connection.vendor == "postgresql":
        return _PgLoader(project, f, lookups, full)
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
    loader = _loader(project, f, _Lookups(), full)
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
    if connection.vendor != "postgresql" or connection.in_atomic_block:
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
    lookups = _Lookups()
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
    ) -> None:
        self.project = project
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
            for demos in iter_demo_batches(self.project, self.filters):
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
        batches = prefetched(
            lambda: iter_task_batches(
                self.project, self.filters, full=full, after=after, until=until
            )
        )
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


def _freeze(project: Project, f: SnapshotFilters, kind: str) -> SnapshotFilters:
    if kind == "sft":
        top = Demonstration.objects.filter(prompt__project=project).aggregate(m=Max("id"))["m"]
        return SnapshotFilters(**{**f.__dict__, "max_demonstration_id": top or 0})
    top = Judgment.objects.filter(task__project=project).aggregate(m=Max("id"))["m"]
    return SnapshotFilters(**{**f.__dict__, "max_judgment_id": top or 0})


# ---------------------------------------------------------------- write paths


def create_snapshot(
    *,
    project: Project,
    kind: str,
    fmt: str = DatasetSnapshot.Format.JSONL,
    aggregation: str = "raw",
    filters: dict | None = None,
    name: str = "",
    created_by=None,
    run: str = "auto",
) -> DatasetSnapshot:
    """Record a snapshot and build it: ``run="inline"`` now, ``"async"`` on Celery, ``"auto"``
    inline when it reads at most ``SNAPSHOT_INLINE_MAX_JUDGMENTS`` records."""
    if fmt not in FORMATS:
        raise DomainError(f"format must be one of {', '.join(FORMATS)}")
    if run not in {"auto", "inline", "async"}:
        raise DomainError("run must be auto, inline or async")
    options, f, _ = prepare(project=project, kind=kind, aggregation=aggregation, filters=filters)
    f = _freeze(project, f, kind)
    snapshot = DatasetSnapshot.objects.create(
        project=project,
        principle_set=project.principle_set,
        name=name[:200],
        kind=kind,
        format=fmt,
        filters=_record(project, options, f),
        aggregation=aggregation,
        created_by=created_by,
    )
    inline = run == "inline" or (
        run == "auto" and RowStream(project, options, f).total() <= inline_limit()
    )
    if inline:
        return build_snapshot(snapshot_id=snapshot.pk)
    from annotation.tasks import build_snapshot as build_task

    transaction.on_commit(lambda: build_task.delay(snapshot.pk))
    return snapshot


def artifact_file(snapshot: DatasetSnapshot) -> Path:
    return Path(settings.ARTIFACT_ROOT) / snapshot.artifact_path


def build_snapshot(*, snapshot_id: int) -> DatasetSnapshot:
    """Stream the rows into a temporary file, hash it, rename it into ``ARTIFACT_ROOT``."""
    snapshot = DatasetSnapshot.objects.select_related("project__principle_set").get(pk=snapshot_id)
    if snapshot.status == DatasetSnapshot.Status.READY:
        return snapshot
    folder = Path(settings.ARTIFACT_ROOT) / "snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    extension = "jsonl" if snapshot.format == DatasetSnapshot.Format.JSONL else "parquet"
    temporary = folder / f".snapshot-{snapshot.pk}-{uuid.uuid4().hex}.{extension}.part"
    writer = None
    shards: list[_Shard] = []
    try:
        options, f = _from_record(snapshot)
        total_judgments = RowStream(snapshot.project, options, f).total()
        total = max(total_judgments, 1)
        ranges = _shard_ranges(snapshot.project, options, f, total_judgments)
        stream = RowStream(snapshot.project, options, f, task_range=ranges[0])
        schema = schema_for(options.kind, options.style, options.prompt_style)
        writer = open_writer(snapshot.format, temporary, schema)
        shards = [
            _Shard.start(snapshot, folder, index, task_range)
            for index, task_range in enumerate(ranges[1:], start=1)
        ]
        reported = time.monotonic()
        with cyclic_gc_paused():
            for rows in stream:
                writer.write_rows(rows, consume=True)
                if time.monotonic() - reported > 1.0:
                    reported = time.monotonic()
                    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
                        progress=min(stream.processed * len(ranges) / total, 0.99)
                    )
        for shard in shards:  # in task order: the file reads as one sequential export
            stream.merge(shard.wait())
            if snapshot.format == DatasetSnapshot.Format.JSONL:
                writer.append_file(shard.part)
            else:
                writer.append_arrow(shard.part)
            shard.cleanup()
        digest = writer.close()
        final = folder / f"snapshot-{snapshot.pk}-{digest[:12]}.{extension}"
        os.replace(temporary, final)
        DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
            status=DatasetSnapshot.Status.READY,
            progress=1.0,
            row_count=stream.row_count,
            sha256=digest,
            size_bytes=final.stat().st_size,
            artifact_path=str(final.relative_to(settings.ARTIFACT_ROOT)),
            per_annotator_counts=stream.per_annotator_counts(),
            discretion_summary=stream.discretion_summary(),
            error="",
        )
    except Exception as exc:
        logger.exception("snapshot %s failed", snapshot.pk)
        for shard in shards:
            shard.cleanup(kill=True)
        if writer is not None:
            writer.abort()
        temporary.unlink(missing_ok=True)
        DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
            status=DatasetSnapshot.Status.FAILED, error=str(exc)[:5000]
        )
        snapshot.refresh_from_db()
        return snapshot
    snapshot.refresh_from_db()
    from annotation import webhooks

    webhooks.snapshot_ready(snapshot)
    return snapshot


# ---------------------------------------------------------------- parallel export shards
#
# One Python process shapes ~40k rows/s. A large export on PostgreSQL is split into task-range
# shards of about equal judgment counts: the building process exports the first, worker
# processes (``manage.py export_shard``) the others into part files (JSONL, or Arrow IPC for
# Parquet), appended in task order afterwards — the file is byte-for-byte what one process
# would write (JSONL) or the same rows (Parquet) — and their counts merged.


def parallel_workers() -> int:
    return int(getattr(settings, "SNAPSHOT_WORKERS", 1))


def _shard_ranges(
    project: Project, options: ExportOptions, f: SnapshotFilters, judgments: int
) -> list[tuple[int, int | None]]:
    workers = parallel_workers()
    minimum = int(getattr(settings, "SNAPSHOT_PARALLEL_MIN_JUDGMENTS", 200_000))
    if (
        workers < 2
        or judgments < minimum
        or options.kind == "sft"
        or connection.vendor != "postgresql"
        or connection.in_atomic_block  # workers could not see uncommitted rows
    ):
        return [(0, None)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY j.task_id) "
            f"FROM {Judgment._meta.db_table} j JOIN {Task._meta.db_table} t "
            f"ON t.id = j.task_id WHERE t.project_id = %s AND j.id <= %s",
            [[i / workers for i in range(1, workers)], project.pk, f.max_judgment_id or 0],
        )
        bounds = sorted(set(cursor.fetchone()[0] or []))
    edges = [0, *bounds]
    return [(low, high) for low, high in zip(edges, [*bounds, None], strict=True)]


def database_url() -> str:
    """A ``DATABASE_URL`` for the database this process uses (for shard workers)."""
    from urllib.parse import quote

    s = connection.settings_dict
    auth = quote(s["USER"] or "", safe="") + (f":{quote(s['PASSWORD'], safe='')}"
                                             if s["PASSWORD"] else "")  # fmt: skip
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class _Shard:
    """A worker process exporting one task range of a snapshot into a part file."""

    def __init__(self, process, part: Path, output: Path, log: Path) -> None:
        self.process, self.part, self.output, self.log = process, part, output, log

    @classmethod
    def start(cls, snapshot: DatasetSnapshot, folder: Path, index: int, task_range) -> _Shard:
        import subprocess
        import sys

        stem = folder / f".snapshot-{snapshot.pk}-{uuid.uuid4().hex}-shard{index}"
        suffix = ".jsonl" if snapshot.format == DatasetSnapshot.Format.JSONL else ".arrow"
        part, output, log = (stem.with_suffix(x) for x in (suffix, ".json", ".log"))
        after, until = task_range
        command = [
            sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "export_shard",
            str(snapshot.pk), "--after", str(after), "--out", str(part), "--summary", str(output),
        ]  # fmt: skip
        if until is not None:
            command += ["--until", str(until)]
        env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "0"}
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                command, cwd=settings.BASE_DIR, env=env, stdout=log_file, stderr=log_file
            )
        return cls(process, part, output, log)

    def wait(self) -> dict:
        import json

        if self.process.wait() != 0:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"export shard failed (exit {self.process.returncode}): {tail}")
        return json.loads(self.output.read_text())

    def cleanup(self, kill: bool = False) -> None:
        if kill and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for path in (self.part, self.output, self.log):
            path.unlink(missing_ok=True)


def write_shard(*, snapshot_id: int, after: int, until: int | None, out: str | Path) -> dict:
    """Export one task range of a snapshot into ``out`` (run by ``manage.py export_shard``)."""
    from annotation.exports.writers import ArrowShardWriter, JsonlWriter

    snapshot = DatasetSnapshot.objects.select_related("project__principle_set").get(pk=snapshot_id)
    options, f = _from_record(snapshot)
    stream = RowStream(snapshot.project, options, f, task_range=(after, until))
    schema = schema_for(options.kind, options.style, options.prompt_style)
    if snapshot.format == DatasetSnapshot.Format.JSONL:
        writer = JsonlWriter(out)
    else:
        writer = ArrowShardWriter(out, schema)
    try:
        with cyclic_gc_paused():
            for rows in stream:
                writer.write_rows(rows, consume=True)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return {"summary": stream.shaper.summary.state(), "processed": stream.processed}


def export_lines(
    *, project: Project, kind: str, aggregation: str = "raw", filters: dict | None = None
) -> Iterator[bytes]:
    """JSONL bytes for a small export streamed over HTTP (no snapshot is recorded)."""
    options, f, _ = prepare(project=project, kind=kind, aggregation=aggregation, filters=filters)
    stream = RowStream(project, options, _freeze(project, f, kind))
    for rows in stream:
        if rows:
            yield encode_lines(rows, consume=True)


def count_for_export(*, project: Project, kind: str, filters: dict | None = None) -> int:
    options, f, _ = prepare(project=project, kind=kind, filters=filters)
    return RowStream(project, options, f).total()
