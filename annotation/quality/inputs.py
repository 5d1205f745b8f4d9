"""Quality and discretion inputs: database → NumPy inputs of ``metrics`` (pure) → JSON.

Selectors only (they read): ``values_list`` queries, no per-row queries, then the pure functions
of ``annotation.quality.metrics``. Two payloads, both JSON-ready (NaN → null, ±inf → "inf"/"-inf"):

* :func:`discretion_payload` — Buyl et al.'s discretion metrics over the project's two-response
  tasks. Orientation: response 1 (+1) is the one labelled ``chosen`` (else position 0).
  ``P`` comes from a *reference* annotator's principle verdicts (e.g. an imported oracle) or,
  without one, from the human annotators' verdicts (plurality per task × principle; a tie → 0).
  Annotators: every user with judgments on those tasks except the reference (+1 = prefers
  response 1; an empty ordering or a tie bucket = abstain), plus the dataset's own label as
  annotator ``human`` (+1 on tasks whose responses carry chosen/rejected labels).
* :func:`quality_payload` — agreement (overall, per principle, on applicability, over time),
  consensus (majority, Dawid–Skene, a Bradley–Terry leaderboard of response sources) and
  per-annotator diagnostics (position bias from ``Assignment.display_order``, length bias,
  speed from ``Judgment.time_spent_ms``, agreement with the crowd, sequential outlier test, gold
  accuracy on the answer and on the decisive principles).

Both accept ``task_ids`` (a subset, e.g. a dataset snapshot's tasks) and ``max_judgment_id``
(a snapshot's judgment horizon). BLAS is limited to one thread while computing: small L-BFGS
fits are several times slower with competing OpenBLAS threads on a shared worker."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.db.models.functions import Length

from annotation.models import (
    AnnotatorProfile,
    Judgment,
    Principle,
    PrincipleVerdict,
    Project,
    Task,
    TaskResponse,
)
from annotation.quality.metrics import discretion as disc
from annotation.vocabulary import SLOT_LETTERS, TIE

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # effective where numpy is not loaded yet


User = get_user_model()


HUMAN_LABEL = "human"  # the dataset's own label, as an annotator


DECLARED = "declared"  # the principle set's declared precedence, as a DD column


SCOPES = ("humans", "all")


NA = PrincipleVerdict.Verdict.NOT_APPLICABLE


CHOSEN, REJECTED = TaskResponse.SourceLabel.CHOSEN, TaskResponse.SourceLabel.REJECTED


def jsonable(x: Any) -> Any:
    """Plain JSON types: NumPy scalars/arrays unwrapped, NaN → None, ±inf → "inf"/"-inf"."""
    if isinstance(x, dict):
        return {(k if isinstance(k, str) else str(k)): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.bool_ | bool):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return disc.encode_weight(float(x))
    if isinstance(x, frozenset | set):
        return sorted(jsonable(v) for v in x)
    return x


@dataclass(frozen=True)
class Pairs:
    """The project's two-response tasks, oriented: ``first`` is +1 (chosen, else position 0)."""

    task_ids: np.ndarray
    first: np.ndarray
    second: np.ndarray
    labelled: np.ndarray  # bool: the dataset labels ``first`` as chosen

    @property
    def n(self) -> int:
        return int(self.task_ids.shape[0])

    def row_lookup(self) -> np.ndarray:
        """Dense task id → row index array (−1 = not a pair task)."""
        top = int(self.task_ids.max()) + 1 if self.n else 1
        lookup = np.full(top, -1, dtype=np.int64)
        lookup[self.task_ids] = np.arange(self.n)
        return lookup


def _rows(lookup: np.ndarray, task_ids: Iterable[int]) -> np.ndarray:
    ids = np.fromiter(task_ids, dtype=np.int64)
    out = np.full(ids.shape[0], -1, dtype=np.int64)
    inside = ids < lookup.shape[0]
    out[inside] = lookup[ids[inside]]
    return out


def task_filter(qs: QuerySet, field: str, task_ids: Iterable[int] | None) -> QuerySet:
    return qs if task_ids is None else qs.filter(**{f"{field}__in": list(task_ids)})


def pair_tasks(project: Project, task_ids: Iterable[int] | None = None) -> Pairs:
    """Every task of ``project`` with exactly two responses, by task id."""
    qs = task_filter(TaskResponse.objects.filter(task__project=project), "task_id", task_ids)
    by_task: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for task_id, response_id, position, label in qs.values_list(
        "task_id", "response_id", "position", "source_label"
    ).order_by("task_id", "position"):
        by_task[task_id].append((response_id, position, label))
    ids, first, second, labelled = [], [], [], []
    for task_id, responses in by_task.items():
        if len(responses) != 2:
            continue
        labels = {label: rid for rid, _, label in responses}
        ids.append(task_id)
        if CHOSEN in labels and REJECTED in labels:
            first.append(labels[CHOSEN])
            second.append(labels[REJECTED])
            labelled.append(True)
        else:
            first.append(responses[0][0])
            second.append(responses[1][0])
            labelled.append(False)
    return Pairs(
        task_ids=np.asarray(ids, dtype=np.int64),
        first=np.asarray(first, dtype=np.int64),
        second=np.asarray(second, dtype=np.int64),
        labelled=np.asarray(labelled, dtype=bool),
    )


@dataclass(frozen=True)
class PrincipleInfo:
    id: int
    key: str
    title: str
    position: int
    authority: str
    declared_priority: int | None


def principles_of(project: Project) -> list[PrincipleInfo]:
    return [
        PrincipleInfo(*row)
        for row in Principle.objects.filter(principle_set_id=project.principle_set_id)
        .order_by("position")
        .values_list("id", "key", "title", "position", "authority", "declared_priority")
    ]


def declared_precedence(principles: list[PrincipleInfo]) -> dict[str, Any]:
    """key → declared priority (lower = higher precedence), else the authority tier name."""
    return {
        p.key: p.declared_priority if p.declared_priority is not None else p.authority
        for p in principles
    }


def annotator_names(user_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """user id → (username, kind)."""
    return {
        uid: (name, kind or AnnotatorProfile.Kind.HUMAN)
        for uid, name, kind in User.objects.filter(id__in=list(set(user_ids))).values_list(
            "id", "username", "profile__kind"
        )
    }


def annotators_with_verdicts(project: Project) -> list[dict[str, Any]]:
    """Candidates for the discretion reference: annotators with principle verdicts here."""
    rows = (
        Judgment.objects.filter(task__project=project, verdicts__isnull=False)
        .values_list("annotator_id", flat=True)
        .distinct()
    )
    names = annotator_names(rows)
    return sorted(
        ({"id": uid, "name": name, "kind": kind} for uid, (name, kind) in names.items()),
        key=lambda a: (a["kind"] != AnnotatorProfile.Kind.MODEL, a["name"]),
    )


def default_reference(project: Project) -> str | None:
    """None (human verdicts) when people gave principle verdicts here, else the first model
    annotator with verdicts (e.g. an imported oracle), else None."""
    human = PrincipleVerdict.objects.filter(
        judgment__task__project=project,
        judgment__annotator__profile__kind=AnnotatorProfile.Kind.HUMAN,
    ).exists()
    if human:
        return None
    candidates = annotators_with_verdicts(project)
    return candidates[0]["name"] if candidates else None


def resolve_annotator(name: str) -> User:
    """The user called ``name`` (``User.DoesNotExist`` otherwise)."""
    return User.objects.get(username=name)


def _ordering_sign(ordering: Any, first: int, second: int) -> int:
    """+1 when ``first`` is in an earlier bucket than ``second``, −1 the other way, else 0."""
    if not ordering:
        return 0
    rank: dict[int, int] = {}
    try:
        for index, bucket in enumerate(ordering):
            for rid in bucket:
                rank.setdefault(rid, index)
    except TypeError:
        return 0
    a, b = rank.get(first), rank.get(second)
    if a is None or b is None or a == b:
        return 0
    return 1 if a < b else -1


def verdict_matrix(
    project: Project,
    pairs: Pairs,
    principles: list[PrincipleInfo],
    *,
    reference_id: int | None = None,
    max_judgment_id: int | None = None,
) -> tuple[np.ndarray, int]:
    """``P`` (n × K int8) and how many pairs carry at least one verdict.

    From ``reference_id``'s verdicts, or the human annotators' plurality per cell (a tie for
    the top → 0). Verdicts ``tie`` and ``not_applicable`` are 0.
    """
    n, k = pairs.n, len(principles)
    if n == 0 or k == 0:
        return np.zeros((n, k), dtype=np.int8), 0
    qs = PrincipleVerdict.objects.filter(judgment__task__project=project)
    if reference_id is not None:
        qs = qs.filter(judgment__annotator_id=reference_id)
    else:
        qs = qs.filter(judgment__annotator__profile__kind=AnnotatorProfile.Kind.HUMAN)
    if max_judgment_id is not None:
        qs = qs.filter(judgment_id__lte=max_judgment_id)
    rows = list(
        qs.values_list("judgment__task_id", "principle_id", "verdict", "preferred_response_id")
    )
    if not rows:
        return np.zeros((n, k), dtype=np.int8), 0
    task_ids, principle_ids, verdicts, preferred = zip(*rows, strict=True)
    r = _rows(pairs.row_lookup(), task_ids)
    column = {p.id: i for i, p in enumerate(principles)}
    c = np.fromiter((column.get(pid, -1) for pid in principle_ids), dtype=np.int64)
    keep = (r >= 0) & (c >= 0)
    pref = np.fromiter((p or 0 for p in preferred), dtype=np.int64)
    prefers = np.fromiter((v == PrincipleVerdict.Verdict.PREFERS for v in verdicts), dtype=bool)
    r, c, pref, prefers = r[keep], c[keep], pref[keep], prefers[keep]
    value = np.zeros(r.shape[0], dtype=np.int8)
    value[prefers & (pref == pairs.first[r])] = 1
    value[prefers & (pref == pairs.second[r])] = -1
    covered = int(np.unique(r).shape[0])
    if reference_id is not None:
        P = np.zeros((n, k), dtype=np.int8)
        P[r, c] = value
        return P, covered
    votes = np.zeros((n, k, 3), dtype=np.int32)  # counts of −1, 0, +1
    np.add.at(votes, (r, c, value.astype(np.int64) + 1), 1)
    top = votes.max(axis=2)
    unique = (votes == top[..., None]).sum(axis=2) == 1
    P = np.where(unique & (top > 0), votes.argmax(axis=2) - 1, 0).astype(np.int8)
    return P, covered


def preference_vectors(
    project: Project,
    pairs: Pairs,
    *,
    exclude_ids: Iterable[int] = (),
    max_judgment_id: int | None = None,
) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """user id → preference vector over ``pairs`` (+1 / −1 / 0), and user id → judgment count."""
    qs = Judgment.objects.filter(task__project=project).exclude(annotator_id__in=list(exclude_ids))
    if max_judgment_id is not None:
        qs = qs.filter(id__lte=max_judgment_id)
    lookup = pairs.row_lookup()
    vectors: dict[int, np.ndarray] = {}
    counts: dict[int, int] = defaultdict(int)
    for task_id, annotator_id, ordering in qs.values_list("task_id", "annotator_id", "ordering"):
        row = lookup[task_id] if task_id < lookup.shape[0] else -1
        if row < 0:
            continue
        vec = vectors.get(annotator_id)
        if vec is None:
            vec = vectors[annotator_id] = np.zeros(pairs.n, dtype=np.int8)
        vec[row] = _ordering_sign(ordering, int(pairs.first[row]), int(pairs.second[row]))
        counts[annotator_id] += 1
    return vectors, dict(counts)


@dataclass(frozen=True)
class DiscretionInputs:
    P: np.ndarray
    annotators: dict[str, np.ndarray]
    kinds: dict[str, str]
    judgments: dict[str, int]
    principles: list[PrincipleInfo]
    declared: dict[str, Any]
    reference: str | None
    covered: int  # pairs with at least one principle verdict
    task_ids: np.ndarray

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.principles]


def discretion_inputs(
    project: Project,
    *,
    reference: str | None = None,
    task_ids: Iterable[int] | None = None,
    max_judgment_id: int | None = None,
    reference_horizon: bool = True,
) -> DiscretionInputs:
    """Everything :func:`metrics.discretion.discretion_report` needs, from the database.
    ``reference_horizon=False``: the reference's verdicts are read past ``max_judgment_id``
    (an oracle asked about a snapshot after it was built)."""
    ref_id = resolve_annotator(reference).pk if reference else None
    pairs = pair_tasks(project, task_ids)
    principles = principles_of(project)
    P, covered = verdict_matrix(
        project,
        pairs,
        principles,
        reference_id=ref_id,
        max_judgment_id=max_judgment_id if reference_horizon or not ref_id else None,
    )
    vectors, counts = preference_vectors(
        project,
        pairs,
        exclude_ids=[ref_id] if ref_id else [],
        max_judgment_id=max_judgment_id,
    )
    names = annotator_names(vectors)
    annotators: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    judgments: dict[str, int] = {}
    if pairs.labelled.any():
        annotators[HUMAN_LABEL] = pairs.labelled.astype(np.int8)
        kinds[HUMAN_LABEL] = "dataset"
        judgments[HUMAN_LABEL] = int(pairs.labelled.sum())
    for uid in sorted(vectors, key=lambda u: names[u][0]):
        name, kind = names[uid]
        if name in annotators or name == DECLARED:
            name = f"user:{name}"
        annotators[name] = vectors[uid]
        kinds[name] = kind
        judgments[name] = counts[uid]
    return DiscretionInputs(
        P=P,
        annotators=annotators,
        kinds=kinds,
        judgments=judgments,
        principles=principles,
        declared=declared_precedence(principles),
        reference=reference,
        covered=covered,
        task_ids=pairs.task_ids,
    )


@dataclass(frozen=True)
class TaskInfo:
    responses: list[int]  # response ids by position
    lengths: dict[int, int]
    sources: dict[int, str]
    gold: dict | None = None

    def letter(self, response_id: int | None) -> str | None:
        if response_id is None or response_id not in self.lengths:
            return None
        return SLOT_LETTERS[self.responses.index(response_id)]


def task_infos(project: Project, task_ids: Iterable[int] | None) -> dict[int, TaskInfo]:
    qs = task_filter(TaskResponse.objects.filter(task__project=project), "task_id", task_ids)
    grouped: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for task_id, response_id, length, source in (
        qs.annotate(length=Length("response__text"))
        .order_by("task_id", "position")
        .values_list("task_id", "response_id", "length", "response__source")
    ):
        grouped[task_id].append((response_id, length or 0, source))
    gold_qs = task_filter(Task.objects.filter(project=project, is_gold=True), "id", task_ids)
    golds = dict(gold_qs.values_list("id", "gold_answer"))
    return {
        task_id: TaskInfo(
            responses=[r for r, _, _ in rows],
            lengths={r: n for r, n, _ in rows},
            sources={r: s for r, _, s in rows},
            gold=golds.get(task_id) if isinstance(golds.get(task_id), dict) else None,
        )
        for task_id, rows in grouped.items()
    }


def choice_label(ordering: Any, info: TaskInfo) -> str | None:
    """The letter (canonical position) of the single best response, "tie" when the best
    bucket holds several, None for no preference (empty ordering)."""
    if not ordering or not isinstance(ordering, list) or not ordering[0]:
        return None
    best = ordering[0]
    if not isinstance(best, list):
        return None
    if len(best) > 1:
        return TIE
    return info.letter(best[0])
