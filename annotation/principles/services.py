"""Principle sets: create, edit a draft, publish, fork."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from annotation.errors import ImmutableError
from annotation.models import (
    Principle,
    PrincipleSet,
)
from annotation.specs import AUTHORITY_RANK, PrincipleSpec
from common.errors import DomainError

User = get_user_model()


def _require_draft(principle_set: PrincipleSet) -> None:
    if principle_set.is_published:
        raise ImmutableError(
            f"{principle_set} is published and immutable; fork it to make a new version."
        )


def _principle_rows(principle_set: PrincipleSet, specs: Sequence[PrincipleSpec]) -> list[Principle]:
    keys = [spec.key for spec in specs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise DomainError(f"duplicate principle keys: {', '.join(duplicates)}")
    return [
        Principle(
            principle_set=principle_set,
            position=position,
            **{
                **asdict(spec),
                "declared_priority": spec.declared_priority
                if spec.declared_priority is not None
                else AUTHORITY_RANK[spec.authority],
            },
        )
        for position, spec in enumerate(specs)
    ]


@transaction.atomic
def create_principle_set(
    *,
    name: str,
    principles: Sequence[PrincipleSpec],
    description: str = "",
    source: str = "",
    created_by: User | None = None,
    publish: bool = False,
) -> PrincipleSet:
    """Create the next version of ``name`` (version 1 if new) as a draft, optionally published."""
    latest = PrincipleSet.objects.select_for_update().filter(name=name).order_by("-version").first()
    principle_set = PrincipleSet.objects.create(
        name=name,
        version=(latest.version + 1) if latest else 1,
        parent=latest,
        description=description,
        source=source,
        created_by=created_by,
    )
    Principle.objects.bulk_create(_principle_rows(principle_set, principles))
    if publish:
        return publish_principle_set(principle_set=principle_set)
    return principle_set


@transaction.atomic
def update_principle(*, principle: Principle, **changes: object) -> Principle:
    """Edit a principle of a draft set; published sets refuse every edit."""
    principle_set = PrincipleSet.objects.select_for_update().get(pk=principle.principle_set_id)
    _require_draft(principle_set)
    allowed = {"title", "text", "section", "kind", "authority", "declared_priority"}
    unknown = set(changes) - allowed
    if unknown:
        raise DomainError(f"cannot change {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(principle, name, value)
    principle.full_clean()
    principle.save(update_fields=list(changes))
    return principle


@transaction.atomic
def add_principle(*, principle_set: PrincipleSet, spec: PrincipleSpec) -> Principle:
    principle_set = PrincipleSet.objects.select_for_update().get(pk=principle_set.pk)
    _require_draft(principle_set)
    position = principle_set.principles.count()
    existing = list(principle_set.principles.values_list("key", flat=True))
    if spec.key in existing:
        raise DomainError(f"duplicate principle key: {spec.key}")
    (row,) = _principle_rows(principle_set, [spec])
    row.position = position
    row.save()
    return row


@transaction.atomic
def remove_principle(*, principle: Principle) -> None:
    _require_draft(PrincipleSet.objects.select_for_update().get(pk=principle.principle_set_id))
    principle.delete()


@transaction.atomic
def edit_principle_set(
    *,
    principle_set: PrincipleSet,
    principles: Sequence[PrincipleSpec],
    description: str | None = None,
) -> PrincipleSet:
    """Replace a draft's principles with ``principles`` (in that order), matched by key: a kept
    key keeps its row (updated in place), a new key is added, a missing key is removed.
    Published sets refuse every edit."""
    principle_set = PrincipleSet.objects.select_for_update().get(pk=principle_set.pk)
    _require_draft(principle_set)
    if not principles:
        raise DomainError("a principle set needs at least one principle")
    rows = _principle_rows(principle_set, principles)
    current = list(principle_set.principles.only("pk", "key", "position"))
    existing = {p.key: p.pk for p in current}
    wanted = {row.key for row in rows}
    principle_set.principles.exclude(key__in=wanted).delete()
    kept = [row for row in rows if row.key in existing]
    for row in kept:
        row.pk = existing[row.key]
    if kept:
        # Positions are unique per set: park the kept rows past every position first.
        start = max(p.position for p in current) + len(rows) + 1
        parked = [Principle(pk=row.pk, position=start + i) for i, row in enumerate(kept)]
        Principle.objects.bulk_update(parked, ["position"])
        Principle.objects.bulk_update(
            kept,
            ["title", "text", "section", "kind", "authority", "declared_priority", "position"],
        )
    Principle.objects.bulk_create([row for row in rows if row.key not in existing])
    if description is not None and description != principle_set.description:
        principle_set.description = description
        principle_set.save(update_fields=["description"])
    return principle_set


@transaction.atomic
def publish_principle_set(*, principle_set: PrincipleSet) -> PrincipleSet:
    """Freeze a draft. Publishing twice is refused."""
    principle_set = PrincipleSet.objects.select_for_update().get(pk=principle_set.pk)
    _require_draft(principle_set)
    if not principle_set.principles.exists():
        raise DomainError("a principle set needs at least one principle to be published")
    principle_set.status = PrincipleSet.Status.PUBLISHED
    principle_set.published_at = timezone.now()
    principle_set.save(update_fields=["status", "published_at"])
    return principle_set


@transaction.atomic
def fork_principle_set(
    *, principle_set: PrincipleSet, created_by: User | None = None
) -> PrincipleSet:
    """A new draft version of the same name whose parent is ``principle_set``; keys are kept."""
    latest = (
        PrincipleSet.objects.select_for_update()
        .filter(name=principle_set.name)
        .order_by("-version")
        .first()
    )
    fork = PrincipleSet.objects.create(
        name=principle_set.name,
        version=latest.version + 1,
        parent=principle_set,
        description=principle_set.description,
        source=principle_set.source,
        created_by=created_by,
    )
    Principle.objects.bulk_create(
        Principle(
            principle_set=fork,
            key=p.key,
            title=p.title,
            text=p.text,
            section=p.section,
            kind=p.kind,
            authority=p.authority,
            declared_priority=p.declared_priority,
            position=p.position,
        )
        for p in principle_set.principles.all()
    )
    return fork
