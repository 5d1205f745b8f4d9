"""Reads for the staff dataset pages: snapshots, their card and preview, and the tasks browser."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from annotation.datasets import filters as snapshot_filters
from annotation.datasets import snapshots
from annotation.datasets.exports import reading
from annotation.models import (
    AnnotatorProfile,
    DatasetSnapshot,
    Judgment,
    PrincipleVerdict,
    Project,
    Task,
    TaskResponse,
)
from annotation.quality import inputs as quality_inputs
from annotation.quality import payloads as quality_payloads

PREVIEW_ROWS = 20
PREVIEW_CELL_CHARS = 2000
#: the columns a preview shows first (the rest follow in file order)
LEADING_COLUMNS = ("prompt", "chosen", "rejected", "completion", "label", "completions", "messages")

#: a snapshot's filters at their defaults (``filters.frozen_record``): the summary leaves them out
FILTER_DEFAULTS = {
    "annotators": [], "annotator_kinds": [], "date_from": None, "date_to": None,
    "min_agreement": None, "exclude_gold": False, "exclude_flagged": False,
    "exclude_discretion": False, "exclude_both_bad": False, "tie_policy": "drop",
    "style": "conversational", "prompt_style": "explicit", "expansion": "all_pairs",
    "include_rationale": True, "principle": None,
}  # fmt: skip


def project_snapshots(project: Project) -> QuerySet[DatasetSnapshot]:
    return (
        DatasetSnapshot.objects.filter(project=project).select_related("created_by").order_by("-id")
    )


def snapshot_for_page(pk: int) -> DatasetSnapshot:
    return DatasetSnapshot.objects.select_related(
        "project__principle_set", "principle_set", "created_by"
    ).get(pk=pk)


def filters_summary(filters: dict) -> str:
    """The filters that differ from the defaults, as ``key=value`` (``—`` when none)."""
    parts = []
    for key, default in FILTER_DEFAULTS.items():
        value = filters.get(key, default)
        if value != default:
            shown = ",".join(map(str, value)) if isinstance(value, list) else value
            parts.append(f"{key}={shown}")
    return "; ".join(parts) or "—"


@dataclass(frozen=True)
class PreviewRow:
    number: int
    cells: list[tuple[str, str]]


def _cell(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)
    if len(text) > PREVIEW_CELL_CHARS:
        return text[:PREVIEW_CELL_CHARS] + " …"
    return text


def preview(snapshot: DatasetSnapshot, limit: int = PREVIEW_ROWS) -> list[PreviewRow]:
    """The first rows of a ready snapshot's file, as plain text cells (the template escapes)."""
    path = snapshots.artifact_file(snapshot)
    if snapshot.status != DatasetSnapshot.Status.READY or not path.is_file():
        return []
    rows = reading.first_rows(path, snapshot.format, limit)
    out = []
    for number, row in enumerate(rows, start=1):
        keys = [k for k in LEADING_COLUMNS if k in row] + [
            k for k in row if k not in LEADING_COLUMNS
        ]
        out.append(PreviewRow(number, [(key, _cell(row[key])) for key in keys]))
    return out


def card_scan_limit() -> int:
    return int(getattr(settings, "DATASET_CARD_SCAN_MAX_ROWS", 200_000))


def card(snapshot: DatasetSnapshot) -> dict:
    """A ready snapshot's dataset card: its recorded counts and discretion summary, plus the mean
    agreement and category split read from its file (once per content hash: cached)."""
    summary = snapshot.discretion_summary or {}
    decisive = summary.get("decisive_principles") or {}
    figures = None
    path = snapshots.artifact_file(snapshot)
    if snapshot.status == DatasetSnapshot.Status.READY and path.is_file():
        limit = card_scan_limit()
        figures = cache.get_or_set(
            f"snapshot-card:{snapshot.sha256}:{limit}",
            lambda: reading.card_figures(
                reading.iter_rows(path, snapshot.format, ["agreement", "principles"]), limit
            ),
            timeout=None,
        )
    annotators = sorted(
        (snapshot.per_annotator_counts or {}).items(), key=lambda item: (-item[1], item[0])
    )
    return {
        "summary": summary,
        "top_decisive": list(decisive.items())[:5],
        "annotators": annotators[:10],
        "annotator_total": len(annotators),
        "figures": figures,
    }


def snapshot_task_ids(snapshot: DatasetSnapshot) -> set[int]:
    """The compare tasks judged in the snapshot's frozen judgment set."""
    _, frozen = snapshot_filters.from_record(snapshot)
    return set(
        snapshot_filters.judgment_queryset(snapshot.project, frozen)
        .filter(task__kind=Task.Kind.COMPARE)
        .values_list("task_id", flat=True)
        .distinct()
    )


def oracles(project: Project) -> list[str]:
    """Model annotators with principle verdicts here (imported oracles, judge jobs): the
    sources a dataset card can take its discretion figures from."""
    return [
        a["name"]
        for a in quality_inputs.annotators_with_verdicts(project)
        if a["kind"] == AnnotatorProfile.Kind.MODEL
    ]


def oracle_figures(snapshot: DatasetSnapshot, oracle: str) -> dict:
    """The snapshot's discretion figures with ``oracle``'s principle verdicts as the reference
    (read past the snapshot's judgment horizon: an oracle is often asked after the build): the
    category split of its pairs and each annotator's discretion arbitrariness (no bootstrap).
    Cached per snapshot content × the oracle's latest judgment."""
    latest = (
        Judgment.objects.filter(task__project_id=snapshot.project_id, annotator__username=oracle)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )

    def compute() -> dict:
        payload = quality_payloads.discretion_payload(
            snapshot.project,
            reference=oracle,
            task_ids=sorted(snapshot_task_ids(snapshot)),
            max_judgment_id=(snapshot.filters or {}).get("max_judgment_id"),
            reference_horizon=False,
        )
        return {
            "oracle": oracle,
            "pairs": payload["pairs"],
            "categories": payload["categories"],
            "da": sorted(
                (
                    {"annotator": name, "da": a["da"], "n": a["da_n"]}
                    for name, a in payload["annotators"].items()
                ),
                key=lambda row: (-row["n"], row["annotator"]),
            )[:10],
        }

    return cache.get_or_set(
        f"snapshot-oracle:{snapshot.sha256}:{oracle}:{latest}", compute, timeout=None
    )


# ---------------------------------------------------------------- tasks browser

TASK_STATUSES = ("open", "partial", "complete")


def top_choice_agreement(orderings: Iterable[list]) -> float | None:
    """Share of a task's judgments that rank the most common first choice first (None with
    fewer than two judgments)."""
    return _share_of_most_common(
        frozenset(ordering[0]) if ordering else frozenset() for ordering in orderings
    )


def _share_of_most_common(tops: Iterable[object]) -> float | None:
    counts = Counter(tops)
    total = sum(counts.values())
    if total < 2:
        return None
    return counts.most_common(1)[0][1] / total


def _top_key(first_bucket: str | None) -> object:
    """A first bucket as read from the database (JSON text): a one-response bucket keys by its
    text as is (no decoding: the tasks browser reads every judgment of a project); a tie by its
    set of response ids, whatever their stored order."""
    if first_bucket and "," not in first_bucket:
        return first_bucket
    return frozenset(json.loads(first_bucket or "[]"))


def _agreements(judgments: QuerySet[Judgment]) -> dict[int, float | None]:
    by_task: dict[int, list] = {}
    rows = judgments.annotate(top=KT("ordering__0")).values_list("task_id", "top")
    for task_id, top in rows.iterator(2000):
        by_task.setdefault(task_id, []).append(_top_key(top))
    return {task_id: _share_of_most_common(tops) for task_id, tops in by_task.items()}


def staff_tasks(
    project: Project,
    *,
    status: str = "",
    flagged: str = "",
    query: str = "",
) -> QuerySet[Task]:
    """A project's tasks filtered by status (by submitted judgments against the project's
    overlap), flagged judgments ("yes" / "no") and prompt text; with ``has_flag``."""
    flagged_judgments = Judgment.objects.filter(task=OuterRef("pk"), flagged=True)
    qs = (
        Task.objects.filter(project=project)
        .select_related("prompt")
        .annotate(has_flag=Exists(flagged_judgments))
        .order_by("id")
    )
    overlap = project.annotations_per_task
    if status == "open":
        qs = qs.filter(submitted_count=0)
    elif status == "partial":
        qs = qs.filter(submitted_count__gt=0, submitted_count__lt=overlap)
    elif status == "complete":
        qs = qs.filter(submitted_count__gte=overlap)
    if flagged == "yes":
        qs = qs.filter(has_flag=True)
    elif flagged == "no":
        qs = qs.filter(has_flag=False)
    if query:
        # the stored JSON text: as typed, or as JSON escapes it (quotes, non-ASCII on SQLite)
        escaped = json.dumps(query)[1:-1]
        qs = qs.alias(prompt_json=Cast("prompt__messages", TextField())).filter(
            Q(prompt_json__icontains=query)
            | Q(prompt_json__icontains=escaped)
            | Q(prompt__external_id=query)
        )
    return qs


def task_ids_by_agreement(
    tasks: QuerySet[Task], low: float | None, high: float | None
) -> list[int]:
    """Ids of ``tasks`` (in id order) whose agreement lies in [low, high]; tasks with fewer than
    two judgments have none and are left out."""
    agreements = _agreements(Judgment.objects.filter(task__in=tasks.values("pk")))
    return sorted(
        task_id
        for task_id, value in agreements.items()
        if value is not None and (low is None or value >= low) and (high is None or value <= high)
    )


def agreements_of(task_ids: list[int]) -> dict[int, float | None]:
    return _agreements(Judgment.objects.filter(task_id__in=task_ids))


def prompt_text(messages: object) -> str:
    """A prompt's text: its last user turn (or its last turn, or the value itself)."""
    if isinstance(messages, list) and messages:
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        last = (users or messages)[-1]
        return str(last.get("content", "")) if isinstance(last, dict) else str(last)
    return str(messages or "")


def task_for_page(pk: int) -> Task:
    """A task with its prompt, responses in position order and every judgment with its
    annotator, verdicts (principles in document order) and decisive principles."""
    return (
        Task.objects.select_related("project__principle_set", "prompt")
        .prefetch_related(
            Prefetch(
                "task_responses",
                queryset=TaskResponse.objects.select_related("response").order_by("position"),
            ),
            Prefetch(
                "judgments",
                queryset=Judgment.objects.select_related("annotator__profile", "flagged_by")
                .prefetch_related(
                    Prefetch(
                        "verdicts",
                        queryset=PrincipleVerdict.objects.select_related("principle").order_by(
                            "principle__position"
                        ),
                    ),
                    "decisive_principles",
                )
                .order_by("id"),
            ),
        )
        .get(pk=pk)
    )
