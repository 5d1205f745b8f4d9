"""Reads about principle sets: a project's principles, the diff of two versions, the pages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Prefetch, QuerySet

from annotation.models import (
    Principle,
    PrincipleSet,
    Project,
)


@dataclass(frozen=True)
class PrincipleIndex:
    rows: tuple[Principle, ...]
    by_key: dict[str, Principle]


_PRINCIPLE_CACHE: dict[tuple[int, datetime], PrincipleIndex] = {}


def project_principles(project: Project) -> PrincipleIndex:
    """The project's principles in document order, and by key.

    Published principle sets are immutable, so they are cached per process, keyed by the set's
    id and publish time; a draft set is read each time.
    """
    principle_set = project.principle_set
    key = (principle_set.pk, principle_set.published_at)
    if principle_set.published_at is not None and key in _PRINCIPLE_CACHE:
        return _PRINCIPLE_CACHE[key]
    rows = tuple(Principle.objects.filter(principle_set_id=principle_set.pk).order_by("position"))
    index = PrincipleIndex(rows=rows, by_key={p.key: p for p in rows})
    if principle_set.published_at is not None:
        _PRINCIPLE_CACHE[key] = index
    return index


DIFF_FIELDS = ("title", "text", "section", "kind", "authority", "declared_priority", "position")
REWORDING_FIELDS = frozenset({"title", "text", "section"})
TIERING_FIELDS = frozenset({"kind", "authority", "declared_priority"})


@dataclass(frozen=True)
class PrincipleChange:
    """One key present in both versions, with its changed fields (name → [before, after])."""

    before: Principle
    after: Principle
    fields: dict[str, list]

    @property
    def key(self) -> str:
        return self.after.key

    @property
    def reworded(self) -> bool:
        return not REWORDING_FIELDS.isdisjoint(self.fields)

    @property
    def retiered(self) -> bool:
        return not TIERING_FIELDS.isdisjoint(self.fields)

    @property
    def moved(self) -> bool:
        return "position" in self.fields


@dataclass(frozen=True)
class VersionComparison:
    """What changed from ``base`` to ``other``, principles matched by their stable key."""

    base: PrincipleSet
    other: PrincipleSet
    added: list[Principle]
    removed: list[Principle]
    changed: list[PrincipleChange]

    @property
    def reworded(self) -> list[PrincipleChange]:
        return [c for c in self.changed if c.reworded]

    @property
    def retiered(self) -> list[PrincipleChange]:
        return [c for c in self.changed if c.retiered]

    @property
    def moved(self) -> list[PrincipleChange]:
        return [c for c in self.changed if c.moved]

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed)


def compare_versions(base: PrincipleSet, other: PrincipleSet) -> VersionComparison:
    """The one diff of two principle sets (the API, the registry and the pages show it)."""
    before = {p.key: p for p in Principle.objects.filter(principle_set=base).order_by("position")}
    after = {p.key: p for p in Principle.objects.filter(principle_set=other).order_by("position")}
    changed = []
    for key, new in after.items():
        old = before.get(key)
        if old is None:
            continue
        fields = {
            name: [getattr(old, name), getattr(new, name)]
            for name in DIFF_FIELDS
            if getattr(old, name) != getattr(new, name)
        }
        if fields:
            changed.append(PrincipleChange(before=old, after=new, fields=fields))
    return VersionComparison(
        base=base,
        other=other,
        added=[p for key, p in after.items() if key not in before],
        removed=[p for key, p in before.items() if key not in after],
        changed=changed,
    )


def principle_set_diff(base: PrincipleSet, other: PrincipleSet) -> dict:
    """``compare_versions`` as JSON: keys added and removed, and changed fields by key."""
    comparison = compare_versions(base, other)
    return {
        "base": base.label,
        "other": other.label,
        "added": [p.key for p in comparison.added],
        "removed": [p.key for p in comparison.removed],
        "changed": [{"key": c.key, "fields": c.fields} for c in comparison.changed],
    }


# ---------------------------------------------------------------- pages


def set_names(search: str = "") -> QuerySet:
    """Distinct principle-set names (one row per set, every version together), by name."""
    names = PrincipleSet.objects.order_by("name").values_list("name", flat=True).distinct()
    return names.filter(name__icontains=search) if search else names


def _pinned_projects() -> Prefetch:
    return Prefetch(
        "projects", queryset=Project.objects.only("pk", "name", "slug", "principle_set_id")
        .order_by("name"),
    )  # fmt: skip


def versions_by_name(names: Sequence[str]) -> dict[str, list[PrincipleSet]]:
    """Every version of the named sets, newest first, with ``principle_count`` and the projects
    pinned to each version (three queries whatever the number of sets)."""
    versions: dict[str, list[PrincipleSet]] = {name: [] for name in names}
    rows = (
        PrincipleSet.objects.filter(name__in=list(names))
        .annotate(principle_count=Count("principles"))
        .select_related("created_by")
        .prefetch_related(_pinned_projects())
        .order_by("name", "-version")
    )
    for row in rows:
        versions[row.name].append(row)
    return versions


def principle_set_pages() -> QuerySet:
    """Versions with their principles in order, pinned projects and author loaded."""
    return PrincipleSet.objects.select_related("created_by", "parent").prefetch_related(
        Prefetch("principles", queryset=Principle.objects.order_by("position")),
        _pinned_projects(),
    )


def versions_of(principle_set: PrincipleSet) -> QuerySet:
    """Every version with ``principle_set``'s name, newest first."""
    return PrincipleSet.objects.filter(name=principle_set.name).order_by("-version")


def default_diff_base(principle_set: PrincipleSet) -> PrincipleSet | None:
    """What a version is compared with unless told: its parent, else the version before it."""
    if principle_set.parent_id is not None:
        return principle_set.parent
    return versions_of(principle_set).filter(version__lt=principle_set.version).first()
