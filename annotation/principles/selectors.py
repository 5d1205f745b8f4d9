"""Reads about principle sets: a project's principles, the diff of two sets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from annotation.models import (
    Principle,
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


def principle_set_diff(base, other) -> dict:
    """Principles added, removed and changed (field → [base, other]) from ``base`` to
    ``other``, matched by their stable ``key``."""
    before = {p.key: p for p in Principle.objects.filter(principle_set=base)}
    after = {p.key: p for p in Principle.objects.filter(principle_set=other)}
    changed = []
    for key in sorted(before.keys() & after.keys(), key=lambda k: after[k].position):
        fields = {
            name: [getattr(before[key], name), getattr(after[key], name)]
            for name in DIFF_FIELDS
            if getattr(before[key], name) != getattr(after[key], name)
        }
        if fields:
            changed.append({"key": key, "fields": fields})
    return {
        "base": base.label,
        "other": other.label,
        "added": sorted(after.keys() - before.keys(), key=lambda k: after[k].position),
        "removed": sorted(before.keys() - after.keys(), key=lambda k: before[k].position),
        "changed": changed,
    }
