"""Decoding the judgment rows read for an export, shared by the ORM and PostgreSQL loaders:
verdict codes, principle ids to keys, annotator kinds."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from django.conf import settings

from annotation.datasets.exports.pseudonyms import Pseudonymizer
from annotation.datasets.exports.records import (
    JudgmentRecord,
)
from annotation.models import (
    AnnotatorProfile,
    Principle,
    PrincipleVerdict,
)
from annotation.vocabulary import NA, TIE

VERDICT_CODES = {
    PrincipleVerdict.Verdict.TIE: TIE,
    PrincipleVerdict.Verdict.NOT_APPLICABLE: NA,
}


# How ``_PgLoader`` encodes a verdict that names no response (response ids are positive).
TIE_CODE, NA_CODE = -1, -2


CODE_NAMES = {TIE_CODE: TIE, NA_CODE: NA}


class PrincipleDecoder:
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
            names = CODE_NAMES
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


class Lookups:
    """Small caches shared across batches: principle keys, pseudonyms, annotator kinds."""

    def __init__(self) -> None:
        self.pseudonym = Pseudonymizer(settings.PSEUDONYM_KEY)
        self.kinds: dict[int, str] = {}
        self.principles = PrincipleDecoder()

    def annotator_kinds(self, ids) -> dict[int, str]:
        missing = set(ids) - self.kinds.keys()
        if missing:
            found = dict(
                AnnotatorProfile.objects.filter(user_id__in=missing).values_list("user_id", "kind")
            )
            self.kinds.update({uid: found.get(uid, "human") for uid in missing})
        return self.kinds


def timestamp(value: datetime) -> str:
    """UTC ISO 8601 with microseconds, identical from both backends' loaders."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def judgment_records(rows, verdicts, decisive, lookups: Lookups) -> dict[int, list[JudgmentRecord]]:
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
                created if isinstance(created, str) else timestamp(created), row[12], kinds[uid],
            )
        )  # fmt: skip
    return by_task
