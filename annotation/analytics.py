"""Quality and discretion analytics: database → NumPy inputs of ``annotation.metrics`` → JSON.

Selectors only (they read): ``values_list`` queries, no per-row queries, then the pure functions
of ``annotation.metrics``. Two payloads, both JSON-ready (NaN → null, ±inf → "inf"/"-inf"):

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
fits are several times slower with competing OpenBLAS threads on a shared worker.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # effective where numpy is not loaded yet

import krippendorff
import numpy as np
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.db.models.functions import Length
from threadpoolctl import threadpool_limits

from annotation.metrics import agreement as agr
from annotation.metrics import consensus as cons
from annotation.metrics import diagnostics as diag
from annotation.metrics import discretion as disc
from annotation.models import (
    AnnotatorProfile,
    Judgment,
    Principle,
    PrincipleVerdict,
    Project,
    Task,
    TaskResponse,
)

User = get_user_model()
HUMAN_LABEL = "human"  # the dataset's own label, as an annotator
DECLARED = "declared"  # the principle set's declared precedence, as a DD column
SCOPES = ("humans", "all")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
NA = PrincipleVerdict.Verdict.NOT_APPLICABLE
TIE = "tie"
CHOSEN, REJECTED = TaskResponse.SourceLabel.CHOSEN, TaskResponse.SourceLabel.REJECTED


# ---------------------------------------------------------------- JSON


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


# ---------------------------------------------------------------- tasks, principles, annotators


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


def _task_filter(qs: QuerySet, field: str, task_ids: Iterable[int] | None) -> QuerySet:
    return qs if task_ids is None else qs.filter(**{f"{field}__in": list(task_ids)})


def pair_tasks(project: Project, task_ids: Iterable[int] | None = None) -> Pairs:
    """Every task of ``project`` with exactly two responses, by task id."""
    qs = _task_filter(TaskResponse.objects.filter(task__project=project), "task_id", task_ids)
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


# ---------------------------------------------------------------- discretion inputs


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
) -> DiscretionInputs:
    """Everything :func:`annotation.metrics.discretion.discretion_report` needs, from the DB."""
    ref_id = resolve_annotator(reference).pk if reference else None
    pairs = pair_tasks(project, task_ids)
    principles = principles_of(project)
    P, covered = verdict_matrix(
        project, pairs, principles, reference_id=ref_id, max_judgment_id=max_judgment_id
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


def _declared_ranking(weights: dict[str, float | None]) -> list[list[str]]:
    levels = sorted({w for w in weights.values() if w is not None}, reverse=True)
    return [[k for k, w in weights.items() if w == level] for level in levels]


def discretion_payload(
    project: Project,
    *,
    reference: str | None = None,
    bootstrap: int = 0,
    seed: int | None = 0,
    task_ids: Iterable[int] | None = None,
    max_judgment_id: int | None = None,
) -> dict[str, Any]:
    """The ``discretion_report`` JSON (``pairs``, ``categories``, ``annotators``,
    ``supremacy``) plus ``meta`` (principles, declared ranking, kinds, reference, counts)."""
    inputs = discretion_inputs(
        project, reference=reference, task_ids=task_ids, max_judgment_id=max_judgment_id
    )
    keys = inputs.keys
    with threadpool_limits(limits=1):
        report = disc.discretion_report(
            inputs.P,
            inputs.annotators,
            keys,
            declared=inputs.declared if keys else None,
            bootstrap=bootstrap,
            seed=seed,
        )
        profiles = report["annotators"]
        annotators: dict[str, Any] = {}
        supremacy: dict[str, Any] = {}
        for name, prof in profiles.items():
            dd = {
                other: disc.discrepancy(prof["weights"], profiles[other]["weights"])
                for other in profiles
                if other != name
            }
            dd[DECLARED] = prof["dd_declared"]
            annotators[name] = {
                "da": prof["da"],
                "da_n": prof["da_n"],
                "da_sd": prof["da_sd"],
                "priority": prof["priority"],
                "weights": prof["weights"],
                "dd": dd,
            }
            supremacy[name] = prof["supremacy"]
    declared_w = disc.declared_weights(inputs.declared) if keys else {}
    meta = {
        "reference": reference,
        "verdict_source": f"annotator {reference}" if reference else "human verdicts (plurality)",
        "covered_pairs": inputs.covered,
        "principles": [
            {
                "key": p.key,
                "title": p.title,
                "position": p.position,
                "authority": p.authority,
                "declared_priority": p.declared_priority,
            }
            for p in inputs.principles
        ],
        "declared": {"weights": declared_w, "priority": _declared_ranking(declared_w)},
        "kinds": inputs.kinds,
        "judgments": inputs.judgments,
        "da_errors": {
            name: (round(a["da"] * a["da_n"]) if a["da"] is not None else None)
            for name, a in annotators.items()
        },
        "bootstrap": bootstrap,
    }
    return jsonable(
        {
            "pairs": report["n"],
            "categories": report["categories"],
            "annotators": annotators,
            "supremacy": supremacy,
            "meta": meta,
        }
    )


REPORT_KEYS = ("pairs", "categories", "annotators", "supremacy")


def report_json(payload: dict[str, Any]) -> dict[str, Any]:
    """The issue's ``discretion_report --json`` object (``payload`` without ``meta``)."""
    return {k: payload[k] for k in REPORT_KEYS}


# ---------------------------------------------------------------- quality inputs


@dataclass(frozen=True)
class TaskInfo:
    responses: list[int]  # response ids by position
    lengths: dict[int, int]
    sources: dict[int, str]
    gold: dict | None = None

    def letter(self, response_id: int | None) -> str | None:
        if response_id is None or response_id not in self.lengths:
            return None
        return LETTERS[self.responses.index(response_id) % 26]


def _task_infos(project: Project, task_ids: Iterable[int] | None) -> dict[int, TaskInfo]:
    qs = _task_filter(TaskResponse.objects.filter(task__project=project), "task_id", task_ids)
    grouped: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for task_id, response_id, length, source in (
        qs.annotate(length=Length("response__text"))
        .order_by("task_id", "position")
        .values_list("task_id", "response_id", "length", "response__source")
    ):
        grouped[task_id].append((response_id, length or 0, source))
    gold_qs = _task_filter(Task.objects.filter(project=project, is_gold=True), "id", task_ids)
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


@dataclass
class _JudgmentRow:
    id: int
    task_id: int
    annotator_id: int
    ordering: Any
    seconds: float | None
    created: float
    display_order: list[int] | None
    label: str | None


def _time_buckets(stamps: np.ndarray, max_buckets: int = 30) -> tuple[np.ndarray, str]:
    """Bucket index per timestamp (day, week or month granularity) and the unit name."""
    span = float(stamps.max() - stamps.min()) if stamps.size else 0.0
    for unit, seconds in (("day", 86400), ("week", 7 * 86400), ("month", 30 * 86400)):
        if span / seconds < max_buckets or unit == "month":
            start = math.floor(stamps.min() / seconds) * seconds if stamps.size else 0
            return ((stamps - start) // seconds).astype(np.int64), unit
    raise AssertionError("unreachable")


def _report_dict(report: agr.AgreementReport, names: dict[int, str]) -> dict[str, Any]:
    out = asdict(report)
    out["cohen"] = [
        {**pair, "a": names.get(pair["a"], pair["a"]), "b": names.get(pair["b"], pair["b"])}
        for pair in out["cohen"]
    ]
    return out


def default_scope(project: Project) -> str:
    """ "humans" when people have judged in the project, else "all" (e.g. imported models)."""
    human = Judgment.objects.filter(
        task__project=project, annotator__profile__kind=AnnotatorProfile.Kind.HUMAN
    ).exists()
    return "humans" if human else "all"


def quality_payload(
    project: Project,
    *,
    scope: str = "humans",
    task_ids: Iterable[int] | None = None,
    max_judgment_id: int | None = None,
    too_fast_s: float = diag.DEFAULT_TOO_FAST_S,
) -> dict[str, Any]:
    """Agreement, consensus and annotator diagnostics of the judgments in ``scope``
    ("humans" = human annotators only, "all" = humans and model annotators)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}")
    task_ids = None if task_ids is None else list(task_ids)
    qs = _task_filter(Judgment.objects.filter(task__project=project), "task_id", task_ids)
    if scope == "humans":
        qs = qs.filter(annotator__profile__kind=AnnotatorProfile.Kind.HUMAN)
    if max_judgment_id is not None:
        qs = qs.filter(id__lte=max_judgment_id)
    infos = _task_infos(project, task_ids)
    rows: list[_JudgmentRow] = []
    for jid, task_id, annotator_id, ordering, ms, created, display in qs.values_list(
        "id",
        "task_id",
        "annotator_id",
        "ordering",
        "time_spent_ms",
        "created_at",
        "assignment__display_order",
    ).order_by("id"):
        info = infos.get(task_id)
        if info is None:
            continue
        rows.append(
            _JudgmentRow(
                jid,
                task_id,
                annotator_id,
                ordering,
                ms / 1000.0 if ms is not None else None,
                created.timestamp(),
                display if isinstance(display, list) else None,
                choice_label(ordering, info),
            )
        )
    people = annotator_names({r.annotator_id for r in rows})
    names = {uid: name for uid, (name, _) in people.items()}
    with threadpool_limits(limits=1):
        payload = {
            "scope": scope,
            "judgments": len(rows),
            "tasks": len({r.task_id for r in rows}),
            "annotator_count": len(people),
            **_agreement_section(project, rows, infos, names, scope, max_judgment_id),
            "consensus": _consensus_section(rows, infos, names),
            "annotators": _diagnostics_section(project, rows, infos, people, too_fast_s=too_fast_s),
        }
    return jsonable(payload)


def _agreement_section(
    project: Project,
    rows: list[_JudgmentRow],
    infos: dict[int, TaskInfo],
    names: dict[int, str],
    scope: str,
    max_judgment_id: int | None,
) -> dict[str, Any]:
    triples = [(r.task_id, r.annotator_id, r.label) for r in rows]
    overall = _report_dict(agr.choice_agreement(triples), names)
    # principle verdicts of the same judgments
    judgment_ids = {r.id: r for r in rows}
    principles = principles_of(project)
    key_of = {p.id: p.key for p in principles}
    verdict_qs = PrincipleVerdict.objects.filter(judgment__task__project=project)
    if scope == "humans":
        verdict_qs = verdict_qs.filter(
            judgment__annotator__profile__kind=AnnotatorProfile.Kind.HUMAN
        )
    if max_judgment_id is not None:
        verdict_qs = verdict_qs.filter(judgment_id__lte=max_judgment_id)
    verdicts = []
    for jid, principle_id, verdict, preferred in verdict_qs.values_list(
        "judgment_id", "principle_id", "verdict", "preferred_response_id"
    ):
        row = judgment_ids.get(jid)
        if row is None or principle_id not in key_of:
            continue
        label = infos[row.task_id].letter(preferred) if verdict == "prefers" else verdict
        verdicts.append((row.task_id, row.annotator_id, key_of[principle_id], label))
    direction = agr.principle_agreement(verdicts)
    applies = agr.applicability_agreement(verdicts)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _, _, key, label in verdicts:
        counts[key][0] += 1
        counts[key][1] += label == NA
    per_principle = []
    for p in principles:
        d, a = direction.get(p.key), applies.get(p.key)
        n, na = counts.get(p.key, (0, 0))
        per_principle.append(
            {
                "key": p.key,
                "title": p.title,
                "verdicts": n,
                "na_share": na / n if n else None,
                "alpha": d.alpha if d else None,
                "percent_agreement": d.percent_agreement if d else None,
                "n_items": d.n_items if d else 0,
                "applicability_alpha": a.alpha if a else None,
                "applicability_items": a.n_items if a else 0,
            }
        )
    pooled = applies.get(None)
    return {
        "agreement": overall,
        "applicability": asdict(pooled) if pooled else None,
        "per_principle": per_principle,
        "over_time": _over_time(rows),
    }


def _alpha_from_counts(counts: np.ndarray) -> float | None:
    """Nominal Krippendorff's α from an items × labels count table (None when undefined)."""
    pairable = counts[counts.sum(axis=1) >= 2]
    if pairable.size == 0 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return None
    return float(
        krippendorff.alpha(
            value_counts=pairable,
            value_domain=list(range(counts.shape[1])),
            level_of_measurement="nominal",
        )
    )


def _over_time(rows: list[_JudgmentRow]) -> dict[str, Any]:
    """Per time bucket: judgments, share agreeing with the item's final plurality (items with a
    unique winner and ≥ 2 labels), and Krippendorff's α of all labels up to the bucket's end.
    One count table per bucket (``bincount``), so this stays linear in the judgments."""
    labelled = [r for r in rows if r.label is not None]
    if not labelled:
        return {"unit": "day", "buckets": []}
    stamps = np.asarray([r.created for r in labelled])
    bucket, unit = _time_buckets(stamps)
    item_ix: dict[int, int] = {}
    label_ix: dict[str, int] = {}
    items = np.fromiter(
        (item_ix.setdefault(r.task_id, len(item_ix)) for r in labelled), dtype=np.int64
    )
    labels = np.fromiter(
        (label_ix.setdefault(r.label, len(label_ix)) for r in labelled), dtype=np.int64
    )
    n_items, n_labels = len(item_ix), len(label_ix)

    def table(mask: np.ndarray) -> np.ndarray:
        flat = np.bincount(items[mask] * n_labels + labels[mask], minlength=n_items * n_labels)
        return flat.reshape(n_items, n_labels)

    final = table(np.ones(items.shape[0], dtype=bool))
    top = final.max(axis=1)
    unique = ((final == top[:, None]).sum(axis=1) == 1) & (final.sum(axis=1) >= 2)
    winner = np.where(unique, final.argmax(axis=1), -1)
    agree = np.where(winner[items] >= 0, (winner[items] == labels).astype(np.float64), np.nan)
    buckets = []
    for b in np.unique(bucket):
        members = np.flatnonzero(bucket == b)
        a = agree[members]
        buckets.append(
            {
                "start": float(stamps[members].min()),
                "judgments": int(members.size),
                "majority_agreement": float(np.nanmean(a)) if np.isfinite(a).any() else None,
                "cumulative_alpha": _alpha_from_counts(table(bucket <= b)),
            }
        )
    return {"unit": unit, "buckets": buckets}


def _consensus_section(
    rows: list[_JudgmentRow], infos: dict[int, TaskInfo], names: dict[int, str]
) -> dict[str, Any]:
    triples = [(r.task_id, r.annotator_id, r.label) for r in rows if r.label is not None]
    out: dict[str, Any] = {"majority": None, "dawid_skene": None, "leaderboard": []}
    if not triples:
        return out
    m = agr.label_matrix(triples)
    votes = cons.majority_vote(m)
    multi = [v for v in votes.values() if v.n >= 2]
    decided = [v for v in multi if v.label is not None]
    out["majority"] = {
        "items": len(votes),
        "items_multi": len(multi),
        "consensus_rate": len(decided) / len(multi) if multi else None,
        "unanimous_rate": (sum(v.support == v.n for v in multi) / len(multi)) if multi else None,
        "mean_support": float(np.mean([v.support / v.n for v in multi])) if multi else None,
    }
    if len(m.annotators) >= 2 and len(m.labels) >= 2 and multi:
        ds = cons.dawid_skene(m)
        ds_labels = ds.item_labels()
        matched = [ds_labels[item] == v.label for item, v in votes.items() if v.label and v.n >= 2]
        out["dawid_skene"] = {
            "accuracy": {names.get(a, str(a)): acc for a, acc in ds.accuracy.items()},
            "agrees_with_majority": float(np.mean(matched)) if matched else None,
            "converged": ds.converged,
            "iterations": ds.n_iter,
        }
    comparisons = []
    for r in rows:
        info = infos[r.task_id]
        if not r.ordering or not isinstance(r.ordering, list):
            continue
        buckets = [b for b in r.ordering if isinstance(b, list)]
        for i, upper in enumerate(buckets):
            for lower in buckets[i + 1 :]:
                for x in upper:
                    for y in lower:
                        sx, sy = info.sources.get(x), info.sources.get(y)
                        if sx and sy and sx != sy:
                            comparisons.append((sx, sy, cons.A_WINS))
            for x_i, x in enumerate(upper):
                for y in upper[x_i + 1 :]:
                    sx, sy = info.sources.get(x), info.sources.get(y)
                    if sx and sy and sx != sy:
                        comparisons.append((sx, sy, cons.TIE))
    if len({c[0] for c in comparisons} | {c[1] for c in comparisons}) >= 2:
        out["leaderboard"] = cons.bt_leaderboard(comparisons, n_boot=50, seed=0)
    return out


def _gold_label(gold: dict, info: TaskInfo) -> str | None:
    return choice_label(gold.get("ordering"), info)


def _diagnostics_section(
    project: Project,
    rows: list[_JudgmentRow],
    infos: dict[int, TaskInfo],
    people: dict[int, tuple[str, str]],
    *,
    too_fast_s: float,
) -> dict[str, Any]:
    jrows = []
    gold_rows = []
    gold_judgments = [r.id for r in rows if infos[r.task_id].gold]
    cited: dict[int, set[str]] = defaultdict(set)
    if gold_judgments:
        through = Judgment.decisive_principles.through
        for jid, key in through.objects.filter(judgment_id__in=gold_judgments).values_list(
            "judgment_id", "principle__key"
        ):
            cited[jid].add(key)
    for r in rows:
        info = infos[r.task_id]
        top = r.ordering[0] if r.label not in (None, TIE) else None
        best = top[0] if top else None
        picked = None
        n_positions = len(info.responses)
        if best is not None and r.display_order and best in r.display_order:
            picked = r.display_order.index(best)
            n_positions = len(r.display_order)
        longer = None
        if best is not None:
            others = [info.lengths[x] for x in info.responses if x != best]
            mine = info.lengths.get(best, 0)
            if others and mine != max(others):
                longer = mine > max(others)
        jrows.append(
            diag.JudgmentRow(
                annotator=r.annotator_id,
                item=r.task_id,
                label=r.label,
                picked_position=picked,
                n_positions=n_positions,
                chose_longer=longer,
                seconds=r.seconds,
                submitted=r.created,
            )
        )
        if info.gold:
            gold_rows.append(
                diag.GoldRow(
                    annotator=r.annotator_id,
                    answer=r.label,
                    gold_answer=_gold_label(info.gold, info),
                    cited=frozenset(cited.get(r.id, ())),
                    gold_principles=frozenset(info.gold.get("decisive") or ()),
                )
            )
    if not jrows:
        return {}
    results = diag.annotator_diagnostics(jrows, gold_rows, too_fast_s=too_fast_s)
    labelled = [(r.task_id, r.annotator_id, r.label) for r in rows if r.label is not None]
    kappas: dict[int, list[float]] = defaultdict(list)
    if labelled:
        for pair in agr.cohen_pairs(labelled, min_items=5):
            if pair["kappa"] is not None:
                kappas[pair["a"]].append(pair["kappa"])
                kappas[pair["b"]].append(pair["kappa"])
    abstentions = Counter(r.annotator_id for r in rows if r.label is None)
    out = {}
    for uid, result in results.items():
        name, kind = people[uid]
        d = result.as_dict()
        d["annotator"] = name
        d["user_id"] = uid
        d["kind"] = kind
        d["cohen_mean"] = float(np.mean(kappas[uid])) if kappas.get(uid) else None
        d["abstentions"] = abstentions[uid]
        out[name] = d
    return out
