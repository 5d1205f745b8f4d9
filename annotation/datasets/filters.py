"""Snapshot filters: parsing, freezing into a snapshot's record, querysets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotation.datasets.exports.records import (
    AGGREGATIONS,
    EXPANSIONS,
    KINDS,
    PROMPT_STYLES,
    STYLES,
    TIE_POLICIES,
    ExportOptions,
)
from annotation.models import (
    AnnotatorProfile,
    DatasetSnapshot,
    Demonstration,
    Judgment,
    Project,
)
from common.errors import DomainError


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
    "prompt_style", "expansion", "principle_set", "include_rationale", "principle",
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
        isinstance(a, int) and not isinstance(a, bool) and 0 < a < 2**63 for a in annotators
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
    principle = filters.get("principle") or ""
    if not isinstance(principle, str):
        raise DomainError("filter 'principle' must be a principle key")
    if principle and not principle_set.principles.filter(key=principle).exists():
        raise DomainError(
            f"filter 'principle': {principle!r} is not a principle of {principle_set.label}"
        )
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
            principle=principle,
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
    return options, snapshot_filters, frozen_record(project, options, snapshot_filters)


def frozen_record(project: Project, options: ExportOptions, f: SnapshotFilters) -> dict:
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
        "principle": options.principle or None,
        "max_judgment_id": f.max_judgment_id,
        "max_demonstration_id": f.max_demonstration_id,
    }


def from_record(snapshot: DatasetSnapshot) -> tuple[ExportOptions, SnapshotFilters]:
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
