"""The quality and discretion pages' payloads, built from the metrics inputs."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import krippendorff
import numpy as np
from threadpoolctl import threadpool_limits

from annotation.models import (
    AnnotatorProfile,
    Judgment,
    PrincipleVerdict,
    Project,
)
from annotation.quality.inputs import (
    DECLARED,
    NA,
    SCOPES,
    TaskInfo,
    annotator_names,
    choice_label,
    discretion_inputs,
    jsonable,
    principles_of,
    task_filter,
    task_infos,
)
from annotation.quality.metrics import agreement as agr
from annotation.quality.metrics import consensus as cons
from annotation.quality.metrics import diagnostics as diag
from annotation.quality.metrics import discretion as disc
from annotation.quality.oracles import oracle_section
from annotation.vocabulary import TIE


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
    reference_horizon: bool = True,
) -> dict[str, Any]:
    """The ``discretion_report`` JSON (``pairs``, ``categories``, ``annotators``,
    ``supremacy``) plus ``meta`` (principles, declared ranking, kinds, reference, counts);
    ``reference_horizon`` as for ``inputs.discretion_inputs``."""
    inputs = discretion_inputs(
        project,
        reference=reference,
        task_ids=task_ids,
        max_judgment_id=max_judgment_id,
        reference_horizon=reference_horizon,
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
    qs = task_filter(Judgment.objects.filter(task__project=project), "task_id", task_ids)
    if scope == "humans":
        qs = qs.filter(annotator__profile__kind=AnnotatorProfile.Kind.HUMAN)
    if max_judgment_id is not None:
        qs = qs.filter(id__lte=max_judgment_id)
    infos = task_infos(project, task_ids)
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
            "oracles": oracle_section(project, max_judgment_id, task_ids),
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
