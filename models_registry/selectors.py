"""Read paths for the registry: lineage ("what fed this model"), side-by-side comparison,
MLflow-style search and the arena leaderboard of a project."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db.models import F, Q, QuerySet
from threadpoolctl import threadpool_limits

from annotation.models import (
    AnnotatorProfile,
    DatasetSnapshot,
    Judgment,
    PrincipleSet,
    PrincipleVerdict,
    Project,
    TaskResponse,
)
from annotation.principles import selectors as principle_selectors
from common.errors import DomainError
from common.lookups import ILike, Like
from models_registry import arena
from models_registry.models import GenerationJob, ModelVersion, RegisteredModel, StageChange

# ---------------------------------------------------------------- lookups


def versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related(
        "registered_model", "dataset_snapshot__project", "principle_set", "annotator"
    ).prefetch_related("parent_links__parent__registered_model")


def get_version(*, name: str, version: int | str) -> ModelVersion:
    """``name`` @ ``version``; ``version`` may be a number or a stage (latest in that stage)."""
    qs = versions().filter(registered_model__name=name)
    if isinstance(version, str) and not version.isdigit():
        found = qs.filter(stage=version.lower()).order_by("-version").first()
        if found is None:
            raise ModelVersion.DoesNotExist(f"{name} has no version in stage {version!r}")
        return found
    try:
        number = int(version)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DomainError("version must be a number or a stage") from exc
    if not 0 < number < 2**31:
        raise ModelVersion.DoesNotExist(f"{name} has no version {version}")
    return qs.get(version=number)


def label(version: ModelVersion) -> str:
    return f"{version.registered_model.name}@{version.version}"


def latest_versions(model: RegisteredModel, stages: Iterable[str] = ()) -> list[ModelVersion]:
    """MLflow's get-latest-versions: the newest version per stage (all stages when empty)."""
    wanted = [s.lower() for s in stages] or list(ModelVersion.Stage.values)
    out = []
    for stage in wanted:
        found = versions().filter(registered_model=model, stage=stage).order_by("-version").first()
        if found is not None:
            out.append(found)
    return out


def stage_history(version: ModelVersion) -> list[dict[str, Any]]:
    return [
        {
            "from_stage": change.from_stage,
            "to_stage": change.to_stage,
            "changed_by": change.changed_by.username if change.changed_by else None,
            "note": change.note,
            "changed_at": change.changed_at.isoformat(),
        }
        for change in StageChange.objects.filter(model_version=version)
        .select_related("changed_by")
        .order_by("-changed_at", "-id")
    ]


# ---------------------------------------------------------------- principle sets


def previous_principle_set(principle_set: PrincipleSet) -> PrincipleSet | None:
    """The version this one was forked from, else the next lower version of the same name."""
    if principle_set.parent_id:
        return principle_set.parent
    return (
        PrincipleSet.objects.filter(name=principle_set.name, version__lt=principle_set.version)
        .order_by("-version")
        .first()
    )


def principle_set_diff(base: PrincipleSet | None, other: PrincipleSet | None) -> dict | None:
    """Added / removed / changed principles by key (``annotation.selectors``); None when either
    side is missing."""
    if base is None or other is None:
        return None
    return principle_selectors.principle_set_diff(base, other)


def principle_set_record(principle_set: PrincipleSet) -> dict[str, Any]:
    previous = previous_principle_set(principle_set)
    return {
        "id": principle_set.pk,
        "label": principle_set.label,
        "name": principle_set.name,
        "version": principle_set.version,
        "status": principle_set.status,
        "published_at": principle_set.published_at.isoformat()
        if principle_set.published_at
        else None,
        "source": principle_set.source,
        "principles": [
            {
                "key": p.key,
                "title": p.title,
                "kind": p.kind,
                "authority": p.authority,
                "declared_priority": p.declared_priority,
            }
            for p in principle_set.principles.order_by("position")
        ],
        "previous": previous.label if previous else None,
        "diff": principle_set_diff(previous, principle_set),
    }


# ---------------------------------------------------------------- lineage


def _public_filters(filters: dict) -> dict:
    """Snapshot filters with annotator user ids replaced by their export pseudonyms."""
    out = dict(filters or {})
    if out.get("annotators"):
        from django.conf import settings

        from annotation.datasets.exports.pseudonyms import Pseudonymizer

        pseudonym = Pseudonymizer(settings.PSEUDONYM_KEY)
        out["annotators"] = [
            pseudonym(uid) if isinstance(uid, int) else uid for uid in out["annotators"]
        ]
    return out


def snapshot_record(snapshot: DatasetSnapshot) -> dict[str, Any]:
    return {
        "id": snapshot.pk,
        "name": snapshot.name,
        "kind": snapshot.kind,
        "format": snapshot.format,
        "status": snapshot.status,
        "project": snapshot.project.slug,
        "principle_set": snapshot.principle_set.label,
        "filters": _public_filters(snapshot.filters),
        "aggregation": snapshot.aggregation,
        "row_count": snapshot.row_count,
        "sha256": snapshot.sha256,
        "size_bytes": snapshot.size_bytes,
        "per_annotator_counts": snapshot.per_annotator_counts,
        "discretion_summary": snapshot.discretion_summary,
        "created_at": snapshot.created_at.isoformat(),
    }


def run_record(version: ModelVersion) -> dict[str, Any] | None:
    """The training run that produced ``version`` (read through the reverse relation that
    training declares; the registry never imports training)."""
    run = getattr(version, "training_run", None)
    if run is None:
        return None
    return {
        "id": run.pk,
        "kind": run.kind,
        "status": run.status,
        "name": run.name,
        "base_model": run.base_model,
        "queue": run.queue,
        "num_processes": run.num_processes,
        "config": run.config,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def version_header(version: ModelVersion) -> dict[str, Any]:
    return {
        "id": version.pk,
        "label": label(version),
        "name": version.registered_model.name,
        "kind": version.registered_model.kind,
        "version": version.version,
        "stage": version.stage,
        "artifact_uri": version.artifact_uri,
        "artifact_format": version.artifact_format,
        "sha256": version.sha256,
        "size_bytes": version.size_bytes,
        "created_at": version.created_at.isoformat(),
        "annotator": version.annotator.username if version.annotator_id else None,
    }


def _profile_summary(profile: dict) -> dict[str, Any]:
    if not profile:
        return {"status": "not computed"}
    keys = (
        "status",
        "method",
        "da",
        "da_n",
        "priority",
        "dd_declared",
        "dd_humans",
        "error",
        "categories",
        "pairs",
        "pooled",
    )
    out = {k: profile[k] for k in keys if k in profile}
    pooled = (profile.get("annotators") or {}).get(profile.get("pooled") or "")
    if pooled:
        out["priority"] = pooled.get("priority")
        out["da"] = pooled.get("da")
    return out


def lineage(version: ModelVersion) -> dict[str, Any]:
    """Everything that fed ``version``: the chain of parents back to the base model (breadth
    first, each with its snapshot, principle set and run), every snapshot and principle-set
    version on the chain (with the diff against the previous principle-set version), the
    annotators of all those snapshots with counts, and both discretion profiles."""
    nodes: list[dict[str, Any]] = []
    seen: dict[int, dict] = {}
    snapshots: dict[int, dict] = {}
    principle_sets: dict[int, dict] = {}
    annotators: dict[str, dict] = {}
    bases: list[dict[str, Any]] = []
    queue: list[tuple[ModelVersion, list[str]]] = [(version, [])]
    while queue:
        current, path = queue.pop(0)
        if current.pk in seen:
            seen[current.pk]["paths"].append(path)
            continue
        links = list(
            current.parent_links.select_related(
                "parent__registered_model",
                "parent__dataset_snapshot__project",
                "parent__dataset_snapshot__principle_set",
                "parent__principle_set",
                "parent__annotator",
            ).order_by("role", "parent_id")
        )
        run = run_record(current)
        node = {
            **version_header(current),
            "depth": len(path),
            "paths": [path],
            "parents": [
                {"role": link.role, "id": link.parent_id, "label": label(link.parent)}
                for link in links
            ],
            "snapshot": current.dataset_snapshot_id,
            "principle_set": current.principle_set.label if current.principle_set else None,
            "run": run,
            "data_discretion": _profile_summary(current.data_discretion_profile),
            "model_discretion": _profile_summary(current.model_discretion_profile),
        }
        nodes.append(node)
        seen[current.pk] = node
        snapshot = current.dataset_snapshot
        if snapshot is not None:
            if snapshot.pk not in snapshots:
                snapshots[snapshot.pk] = {**snapshot_record(snapshot), "used_by": []}
                pseudonym_kinds = {
                    name: entry.get("kind", "human")
                    for name, entry in (current.annotator_contributions or {}).items()
                    if isinstance(entry, dict)
                }
                for name, n in (snapshot.per_annotator_counts or {}).items():
                    entry = annotators.setdefault(
                        name,
                        {"kind": pseudonym_kinds.get(name, "human"), "total": 0, "snapshots": {}},
                    )
                    entry["total"] += int(n)
                    entry["snapshots"][str(snapshot.pk)] = int(n)
            snapshots[snapshot.pk]["used_by"].append(node["label"])
        principle_set = current.principle_set or (snapshot.principle_set if snapshot else None)
        if principle_set is not None:
            if principle_set.pk not in principle_sets:
                principle_sets[principle_set.pk] = {
                    **principle_set_record(principle_set),
                    "used_by": [],
                }
            principle_sets[principle_set.pk]["used_by"].append(node["label"])
        if not any(link.role == "base" for link in links):
            bases.append(
                {
                    "version": node["label"],
                    "base_model": (run or {}).get("base_model")
                    or (node["label"] if current.registered_model.kind == "base" else None),
                }
            )
        for link in links:
            queue.append((link.parent, [*path, link.role]))
    total = sum(entry["total"] for entry in annotators.values())
    for entry in annotators.values():
        entry["share"] = round(entry["total"] / total, 6) if total else None
    return {
        "model": version_header(version),
        "run": run_record(version),
        "parents": nodes[0]["parents"],
        "chain": nodes,
        "base": bases,
        "snapshots": list(snapshots.values()),
        "principle_sets": list(principle_sets.values()),
        "annotators": dict(sorted(annotators.items(), key=lambda kv: (-kv[1]["total"], kv[0]))),
        "annotator_contributions": version.annotator_contributions,
        "data_discretion_profile": version.data_discretion_profile,
        "model_discretion_profile": version.model_discretion_profile,
        "eval_metrics": version.eval_metrics,
        "stage_history": stage_history(version),
        "generated": [
            {"job": job.pk, "project": job.project.slug, "tasks": job.task_count}
            for job in GenerationJob.objects.filter(model_versions=version).select_related(
                "project"
            )[:50]
        ],
    }


# ---------------------------------------------------------------- comparison


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, bool) or not isinstance(value, int | float):
        return {}
    return {prefix: value}


def _weights(profile: dict, pooled: bool) -> tuple[dict, list]:
    if pooled:
        entry = (profile.get("annotators") or {}).get(profile.get("pooled") or "") or {}
        return entry.get("weights") or {}, entry.get("priority") or []
    return profile.get("weights") or {}, profile.get("priority") or []


def _supremacy(profile: dict, pooled: bool) -> dict[str, dict]:
    rows = profile.get("supremacy") or []
    if pooled:
        rows = ((profile.get("annotators") or {}).get(profile.get("pooled") or "") or {}).get(
            "supremacy"
        ) or []
    return {f"{r['winner']} > {r['loser']}": r for r in rows}


def _discretion_side_by_side(a: dict, b: dict, *, pooled: bool) -> dict[str, Any]:
    wa, pa = _weights(a, pooled)
    wb, pb = _weights(b, pooled)
    sa, sb = _supremacy(a, pooled), _supremacy(b, pooled)
    keys = list(dict.fromkeys([*wa, *wb]))
    pairs = sorted(set(sa) | set(sb))
    from annotation.quality.metrics.discretion import discrepancy

    return {
        "status": [a.get("status"), b.get("status")],
        "method": [a.get("method"), b.get("method")],
        "categories": [a.get("categories"), b.get("categories")],
        "priority": [pa, pb],
        "weights": [{"key": k, "a": wa.get(k), "b": wb.get(k)} for k in keys],
        "supremacy": [
            {
                "pair": pair,
                "a": (sa.get(pair) or {}).get("ps"),
                "a_n": (sa.get(pair) or {}).get("n", 0),
                "b": (sb.get(pair) or {}).get("ps"),
                "b_n": (sb.get(pair) or {}).get("n", 0),
            }
            for pair in pairs
        ],
        "dd_between": discrepancy(wa, wb) if wa and wb else None,
        "da": [
            a.get("da") if not pooled else _weights_entry(a).get("da"),
            b.get("da") if not pooled else _weights_entry(b).get("da"),
        ],
        "dd_declared": [a.get("dd_declared"), b.get("dd_declared")]
        if not pooled
        else [_weights_entry(a).get("dd_declared"), _weights_entry(b).get("dd_declared")],
    }


def _weights_entry(profile: dict) -> dict:
    return (profile.get("annotators") or {}).get(profile.get("pooled") or "") or {}


def compare(a: ModelVersion, b: ModelVersion) -> dict[str, Any]:
    """Two versions side by side: headers, metrics, both discretion profiles, snapshots,
    parents and the principle-set diff from ``a`` to ``b``."""
    ma, mb = _flatten(a.eval_metrics or {}), _flatten(b.eval_metrics or {})
    metrics = []
    for key in sorted(set(ma) | set(mb)):
        va, vb = ma.get(key), mb.get(key)
        metrics.append(
            {"key": key, "a": va, "b": vb, "delta": vb - va if None not in (va, vb) else None}
        )
    return {
        "a": version_header(a),
        "b": version_header(b),
        "parents": [
            [{"role": link.role, "label": label(link.parent)} for link in v.parent_links.all()]
            for v in (a, b)
        ],
        "snapshots": [
            snapshot_record(v.dataset_snapshot) if v.dataset_snapshot else None for v in (a, b)
        ],
        "principle_sets": [v.principle_set.label if v.principle_set else None for v in (a, b)],
        "principle_set_diff": principle_set_diff(a.principle_set, b.principle_set),
        "metrics": metrics,
        "data_discretion": _discretion_side_by_side(
            a.data_discretion_profile or {}, b.data_discretion_profile or {}, pooled=True
        ),
        "model_discretion": _discretion_side_by_side(
            a.model_discretion_profile or {}, b.model_discretion_profile or {}, pooled=False
        ),
        "annotators": [a.annotator_contributions or {}, b.annotator_contributions or {}],
        "precedence": [_precedence_side(v) for v in (a, b)],
    }


def _precedence_side(version: ModelVersion) -> dict[str, Any] | None:
    """What a policy trained to a precedence was trained to, and how far it follows it."""
    if not version.precedence:
        return None
    profile = version.model_discretion_profile or {}
    return {
        "ranking": version.precedence.get("ranking"),
        "weights": version.precedence.get("weights") or {},
        "origin": version.precedence.get("origin") or {},
        "dd_target": profile.get("dd_target"),
        "follows": profile.get("follows_target") or [],
    }


# ---------------------------------------------------------------- MLflow-style search

_CLAUSE = re.compile(
    r"""\s*(?P<field>[A-Za-z_][\w.]*(?:`[^`]+`)?)\s*
        (?P<op>!=|=|(?i:not\s+like)|(?i:ilike)|(?i:like)|(?i:in))\s*
        (?P<value>'(?:[^']|'')*'|"(?:[^"]|"")*"|-?\d+|\((?:[^()])*\))\s*""",
    re.VERBOSE,
)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_TAG = re.compile(r"tags?\.(?P<key>`[^`]+`|[\w.]+)")
VERSION_FIELDS = {
    "name": "registered_model__name",
    "kind": "registered_model__kind",
    "version": "version",
    "version_number": "version",
    "stage": "stage",
    "current_stage": "stage",
    "source": "artifact_uri",
    "source_path": "artifact_uri",
    "sha256": "sha256",
    "run_id": "training_run__id",
    "dataset_snapshot": "dataset_snapshot_id",
    "principle_set": "principle_set__name",
}
MODEL_FIELDS = {"name": "name", "kind": "kind", "description": "description"}
ORDER_FIELDS = {
    "name": "registered_model__name",
    "version": "version",
    "version_number": "version",
    "created_at": "created_at",
    "creation_timestamp": "created_at",
    "stage": "stage",
}


MODEL_ORDER_FIELDS = {
    "name": "name",
    "kind": "kind",
    "created_at": "created_at",
    "creation_timestamp": "created_at",  # MLflow's names (a model is never updated here)
    "last_updated_timestamp": "created_at",
}


_ITEM = re.compile(r"""\s*('(?:[^']|'')*'|"(?:[^"]|"")*"|-?\d+)\s*(?:,|$)""")
# Columns that hold whole numbers, with the largest value each holds (a filter value outside
# is refused, as is anything but digits: the database would fail on it).
INTEGER_COLUMNS = {
    "version": 2**31 - 1,
    "training_run__id": 2**63 - 1,
    "dataset_snapshot_id": 2**63 - 1,
}


def _literal(raw: str) -> str | list:
    if raw[0] in "'\"":
        quote = raw[0]
        return raw[1:-1].replace(quote * 2, quote)
    if raw[0] == "(":
        inner, items, pos = raw[1:-1].strip(), [], 0
        while pos < len(inner):
            match = _ITEM.match(inner, pos)
            if not match:
                raise DomainError(f"cannot parse the list {raw!r}: write ('a', 'b') or (1, 2)")
            items.append(_literal(match[1]))
            pos = match.end()
        return items
    return raw  # a number: typed by the column (_typed)


def _typed(field: str, column: str, value: Any) -> Any:
    """``value`` as the column's type: a whole number in range for integer columns (a
    ``DomainError`` naming the field otherwise), text for the others."""
    largest = INTEGER_COLUMNS.get(column)
    if largest is None:
        return str(value)
    text = str(value).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 20 and int(text) <= largest):
        raise DomainError(f"{field} takes a whole number from 0 to {largest}, not {value!r}")
    return int(text)


def parse_filter(text: str, fields: dict[str, str]) -> Q:
    """MLflow's filter string (``name = 'rm' AND stage = 'production'``; operators =, !=,
    LIKE, ILIKE, NOT LIKE, IN (…)) → a Q object. Raises ``DomainError`` on anything else,
    values of the wrong type included. A tag (``tag.kind``, ``tags.`mlflow.x` ``: MLflow's
    clients add ``tag.`mlflow.prompt.is_prompt` != 'true'``) is the field of that name; any
    other tag is absent (``!=`` / NOT LIKE match every row, the rest none). LIKE runs as the
    database's own LIKE (``common.lookups``), never as a regex."""
    text = (text or "").strip()
    query = Q()
    if not text:
        return query
    if len(text) > 2000:
        raise DomainError("filter string is too long")
    for clause in _AND.split(text):
        match = _CLAUSE.fullmatch(clause)
        if not match:
            raise DomainError(f"cannot parse filter clause {clause.strip()!r}")
        field, op, value = match["field"].lower(), match["op"].lower(), _literal(match["value"])
        op = " ".join(op.split())
        tag = _TAG.fullmatch(field)
        if tag is not None:  # MLflow tags: ours are the fields; any other tag is absent
            field = tag["key"].strip("`")
            if field not in fields:
                query &= Q() if op in ("!=", "not like") else Q(pk__in=[])
                continue
        column = fields.get(field)
        if column is None:
            raise DomainError(f"unknown filter field {field!r}; use {', '.join(sorted(fields))}")
        if op == "in":
            if not isinstance(value, list):
                raise DomainError("IN takes a parenthesized list")
            clause_q = Q(**{f"{column}__in": [_typed(field, column, v) for v in value]})
        elif isinstance(value, list):
            raise DomainError(f"{op} takes a single value")
        elif op in ("=", "!="):
            clause_q = Q(**{column: _typed(field, column, value)})
            clause_q = ~clause_q if op == "!=" else clause_q
        elif column in INTEGER_COLUMNS:
            raise DomainError(f"{op.upper()} applies to text fields, not to {field}")
        else:
            lookup = ILike if op == "ilike" else Like
            clause_q = Q(lookup(F(column), str(value)))
            clause_q = ~clause_q if op == "not like" else clause_q
        query &= clause_q
    return query


def _order(order_by: Iterable[str]) -> list[str]:
    out = []
    for item in order_by:
        parts = item.split()
        if not parts:
            continue
        if len(parts) > 2 or parts[0].lower() not in ORDER_FIELDS:
            raise DomainError(
                f"cannot order by {item!r}; use {', '.join(sorted(ORDER_FIELDS))} [ASC|DESC]"
            )
        desc = len(parts) == 2 and parts[1].upper() == "DESC"
        if len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC"):
            raise DomainError(f"order direction must be ASC or DESC, not {parts[1]!r}")
        out.append(("-" if desc else "") + ORDER_FIELDS[parts[0].lower()])
    return out


def search_versions(filter_string: str = "", order_by: Iterable[str] = ()) -> QuerySet:
    ordering = _order(order_by) or ["registered_model__name", "-version"]
    return versions().filter(parse_filter(filter_string, VERSION_FIELDS)).order_by(*ordering, "id")


def search_models(filter_string: str = "", order_by: Iterable[str] = ()) -> QuerySet:
    ordering = []
    for item in order_by:
        parts = item.split()
        column = MODEL_ORDER_FIELDS.get(parts[0].lower()) if parts else None
        if column is None:
            raise DomainError(
                f"order registered models by {', '.join(MODEL_ORDER_FIELDS)} [ASC|DESC]"
            )
        desc = len(parts) > 1 and parts[1].upper() == "DESC"
        ordering.append(("-" if desc else "") + column)
    return (
        RegisteredModel.objects.filter(parse_filter(filter_string, MODEL_FIELDS))
        .prefetch_related("versions")
        .order_by(*(ordering or ["name"]), "id")
    )


# ---------------------------------------------------------------- arena leaderboard


def arena_battles(
    project: Project, *, scope: str = "humans", max_judgment_id: int | None = None
) -> tuple[list[arena.Battle], dict[str, list[arena.Battle]]]:
    """Battles between response sources from the project's compare / rank judgments (in
    submission order), overall and per principle (from principle verdicts)."""
    if scope not in ("humans", "all"):
        raise DomainError("scope must be humans or all")
    responses: dict[int, list[int]] = defaultdict(list)
    sources: dict[int, str] = {}
    for task_id, response_id, source in (
        TaskResponse.objects.filter(task__project=project, task__kind__in=("compare", "rank"))
        .order_by("task_id", "position")
        .values_list("task_id", "response_id", "response__source")
    ):
        responses[task_id].append(response_id)
        sources[response_id] = source
    contested = {t for t, ids in responses.items() if len({sources[i] for i in ids} - {""}) > 1}
    judgments = Judgment.objects.filter(task_id__in=contested)
    if scope == "humans":
        judgments = judgments.filter(annotator__profile__kind=AnnotatorProfile.Kind.HUMAN)
    if max_judgment_id is not None:
        judgments = judgments.filter(id__lte=max_judgment_id)
    rows = list(judgments.order_by("id").values_list("id", "task_id", "ordering", "both_bad"))
    overall: list[arena.Battle] = []
    task_of: dict[int, int] = {}
    for jid, task_id, ordering, both_bad in rows:
        task_of[jid] = task_id
        overall += arena.battles_from_ordering(ordering, sources, both_bad=both_bad)
    per_principle: dict[str, list[arena.Battle]] = defaultdict(list)
    ids = list(task_of)
    for start in range(0, len(ids), 5000):
        for jid, key, verdict, preferred in (
            PrincipleVerdict.objects.filter(judgment_id__in=ids[start : start + 5000])
            .order_by("judgment_id", "principle__position")
            .values_list("judgment_id", "principle__key", "verdict", "preferred_response_id")
        ):
            per_principle[key] += arena.battles_from_verdict(
                preferred, verdict, responses[task_of[jid]], sources
            )
    return overall, dict(per_principle)


def arena_leaderboard(
    project: Project,
    *,
    principle: str | None = None,
    scope: str = "humans",
    both_bad: str = "tie",
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """The project's arena: overall and one board per principle (or only ``principle``)."""
    if both_bad not in ("tie", "ignore"):
        raise DomainError("both_bad must be tie or ignore")
    keys = list(project.principle_set.principles.order_by("position").values_list("key", flat=True))
    if principle and principle not in keys:
        raise DomainError(f"unknown principle {principle!r} of {project.principle_set.label}")
    overall, per_principle = arena_battles(project, scope=scope)
    # hundreds of tiny fits: BLAS threads only contend (10× slower on a busy machine)
    with threadpool_limits(limits=1):
        boards = {
            key: arena.leaderboard(
                per_principle.get(key, []), n_boot=n_boot, seed=seed, both_bad=both_bad
            )
            for key in keys
            if principle in (None, key)
        }
        board = arena.leaderboard(overall, n_boot=n_boot, seed=seed, both_bad=both_bad)
    return {
        "project": project.slug,
        "principle_set": project.principle_set.label,
        "scope": scope,
        "overall": board,
        "principles": boards,
    }
