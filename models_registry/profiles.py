"""What a model version records about the people and principles behind it.

* :func:`annotator_contributions` — pseudonym → judgments (or demonstrations) and share, from the
  dataset snapshot's ``per_annotator_counts``.
* :func:`data_discretion_profile` — the discretion of exactly the snapshot's comparisons (its
  tasks, judgments up to its frozen horizon, its contributing annotators) through
  :mod:`annotation.analytics`: categories, DA per annotator, PS with counts, revealed priority,
  DD between annotators and against the declared precedence, plus the pooled snapshot label.
* :func:`probe_for` / :func:`record_model_profile` — the model's *own* discretion: the worker
  scores a probe set of comparisons that carry principle verdicts (held-out tasks of the
  snapshot's project, or a chosen probe project), hands the scores here, and the version's
  annotator (kind ``model``) gets one judgment per probe task with origin
  ``model:<name>@<version>``; its profile is then computed by the same analytics as every human
  and compared with them (DD per annotator, with the human majority and with the declared order).

Human annotators appear only under their HMAC pseudonym (as in every export); model annotators
under their username. Scoring itself (torch) lives in ``training.generation``: this module never
imports training.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from threadpoolctl import threadpool_limits

from annotation.datasets.exports.pseudonyms import Pseudonymizer
from annotation.datasets.snapshots import artifact_file
from annotation.models import (
    AnnotatorProfile,
    DatasetSnapshot,
    Demonstration,
    Judgment,
    PrincipleVerdict,
    Project,
    Task,
    TaskResponse,
)
from annotation.projects import services as project_services
from annotation.quality import inputs as quality_inputs
from annotation.quality.metrics import discretion as disc
from common import events
from common.errors import DomainError
from models_registry.models import ModelVersion

User = get_user_model()
POOLED = "snapshot-label"  # the snapshot's majority preference per comparison, as an annotator
HUMANS = "humans"  # the human annotators' majority preference on the probe, as an annotator
MAX_PROBE = 2000
SCORE_TOL = 1e-6


# ---------------------------------------------------------------- names


def origin_of(version: ModelVersion) -> str:
    """``model:<name>@<version>``: a response's source and a model judgment's origin."""
    return f"model:{version.registered_model.name}@{version.version}"


def annotator_username(version: ModelVersion) -> str:
    name = version.registered_model.name[: 150 - len(f"model:@{version.version}")]
    return f"model:{name}@{version.version}"


def ensure_annotator(version: ModelVersion):
    """The user of kind ``model`` standing for ``version`` (created once, linked on the row)."""
    if version.annotator_id:
        return version.annotator
    user = project_services.get_or_create_model_annotator(
        name=annotator_username(version), model_ref=origin_of(version)
    )
    ModelVersion.objects.filter(pk=version.pk).update(annotator=user)
    version.annotator = user
    return user


def _pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(settings.PSEUDONYM_KEY)


def _display_names(usernames: Iterable[str]) -> dict[str, tuple[str, str, str]]:
    """username → (display name, kind, pseudonym): humans shown by pseudonym, models by
    username (a model is not a person)."""
    pseudonym = _pseudonymizer()
    out = {}
    for uid, username, kind in User.objects.filter(username__in=list(usernames)).values_list(
        "id", "username", "profile__kind"
    ):
        kind = kind or AnnotatorProfile.Kind.HUMAN
        alias = pseudonym(uid)
        out[username] = (username if kind == AnnotatorProfile.Kind.MODEL else alias, kind, alias)
    return out


def _project_pseudonym_kinds(project: Project) -> dict[str, str]:
    pseudonym = _pseudonymizer()
    rows = set(
        Judgment.objects.filter(task__project=project)
        .values_list("annotator_id", "annotator__profile__kind")
        .distinct()
    )
    rows |= set(
        Demonstration.objects.filter(prompt__project=project)
        .values_list("annotator_id", "annotator__profile__kind")
        .distinct()
    )
    return {pseudonym(uid): kind or AnnotatorProfile.Kind.HUMAN for uid, kind in rows}


# ---------------------------------------------------------------- snapshot rows


def snapshot_rows(
    snapshot: DatasetSnapshot, columns: Sequence[str] | None = None
) -> Iterator[dict]:
    """Every row of the snapshot's artifact (JSONL or Parquet); [] when it has none."""
    if not snapshot.artifact_path:
        return
    path = artifact_file(snapshot)
    if not path.exists():
        return
    if snapshot.format == DatasetSnapshot.Format.PARQUET:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        wanted = [c for c in columns or [] if c in parquet.schema_arrow.names] or None
        for batch in parquet.iter_batches(batch_size=4096, columns=wanted):
            yield from batch.to_pylist()
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


@dataclass
class SnapshotFacts:
    """Task ids and contributors of a snapshot, read once from its rows."""

    task_ids: list[int] = field(default_factory=list)
    annotators: Counter = field(default_factory=Counter)
    cited: Counter = field(default_factory=Counter)
    rows: int = 0


def snapshot_facts(snapshot: DatasetSnapshot) -> SnapshotFacts:
    facts = SnapshotFacts()
    tasks: dict[int, None] = {}
    judgments: set = set()
    for row in snapshot_rows(
        snapshot, ["task_id", "annotator_ids", "annotator_id", "judgment_ids", "cited_principles"]
    ):
        facts.rows += 1
        if isinstance(row.get("task_id"), int):
            tasks.setdefault(row["task_id"], None)
        ids = row.get("annotator_ids")
        jids = row.get("judgment_ids") or []
        if isinstance(ids, list):
            for annotator, jid in zip(ids, jids or [None] * len(ids), strict=False):
                if jid is None or jid not in judgments:
                    facts.annotators[annotator] += 1
                    judgments.add(jid)
        elif isinstance(row.get("annotator_id"), str):
            facts.annotators[row["annotator_id"]] += 1
        for key in row.get("cited_principles") or []:
            facts.cited[key] += 1
    facts.task_ids = list(tasks)
    return facts


# ---------------------------------------------------------------- contributions


def annotator_contributions(
    snapshot: DatasetSnapshot | None, facts: SnapshotFacts | None = None
) -> dict[str, dict]:
    """pseudonym → {"judgments", "share", "kind", "unit"}, largest contribution first."""
    if snapshot is None:
        return {}
    counts = dict(snapshot.per_annotator_counts or {})
    if not counts:
        facts = facts or snapshot_facts(snapshot)
        counts = dict(facts.annotators)
    total = sum(counts.values())
    if not total:
        return {}
    kinds = _project_pseudonym_kinds(snapshot.project)
    unit = "demonstrations" if snapshot.kind == DatasetSnapshot.Kind.SFT else "judgments"
    return {
        name: {
            "judgments": int(n),
            "share": round(n / total, 6),
            "kind": kinds.get(name, AnnotatorProfile.Kind.HUMAN),
            "unit": unit,
        }
        for name, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    }


# ---------------------------------------------------------------- discretion sections


def _declared(inputs: quality_inputs.DiscretionInputs) -> dict[str, Any]:
    if not inputs.keys:
        return {"weights": {}, "priority": []}
    weights = disc.declared_weights(inputs.declared)
    levels = sorted({w for w in weights.values() if w is not None}, reverse=True)
    return {
        "weights": weights,
        "priority": [[k for k, w in weights.items() if w == level] for level in levels],
    }


def _majority(vectors: Iterable[np.ndarray], n: int) -> np.ndarray:
    total = np.zeros(n, dtype=np.int64)
    for vec in vectors:
        total += vec
    return np.sign(total).astype(np.int8)


def _section(
    inputs: quality_inputs.DiscretionInputs,
    annotators: dict[str, np.ndarray],
    kinds: dict[str, str],
    judgments: dict[str, int],
) -> dict[str, Any]:
    """Categories once, then per annotator DA / PS with counts / priority / DD (all pairs and
    against the declared precedence), JSON-ready."""
    keys = inputs.keys
    with threadpool_limits(limits=1):
        report = disc.discretion_report(
            inputs.P, annotators, keys, declared=inputs.declared if keys else None
        )
        profiles = report["annotators"]
        out: dict[str, Any] = {}
        for name, prof in profiles.items():
            out[name] = {
                "kind": kinds.get(name, "human"),
                "judgments": judgments.get(name, 0),
                "da": prof["da"],
                "da_n": prof["da_n"],
                "da_sd": prof["da_sd"],
                "priority": prof["priority"],
                "weights": prof["weights"],
                "supremacy": prof["supremacy"],
                "dd_declared": prof["dd_declared"],
                "dd": {
                    other: disc.discrepancy(prof["weights"], profiles[other]["weights"])
                    for other in profiles
                    if other != name
                },
            }
    return {
        "pairs": report["n"],
        "covered_pairs": inputs.covered,
        "categories": report["categories"],
        "principles": keys,
        "declared": _declared(inputs),
        "annotators": out,
    }


def _rename(inputs: quality_inputs.DiscretionInputs) -> tuple[dict, dict, dict, dict]:
    """The inputs' annotators under display names (pseudonyms for humans), their kinds,
    judgment counts and export pseudonyms."""
    names = _display_names(name for name in inputs.annotators if name != quality_inputs.HUMAN_LABEL)
    annotators, kinds, judgments, aliases = {}, {}, {}, {}
    for name, vector in inputs.annotators.items():
        shown, kind, alias = names.get(name, (name, inputs.kinds.get(name, "human"), name))
        if name == quality_inputs.HUMAN_LABEL:
            shown, kind, alias = "dataset-label", "dataset", ""
        annotators[shown] = vector
        kinds[shown] = kind
        judgments[shown] = inputs.judgments.get(name, 0)
        aliases[shown] = alias
    return annotators, kinds, judgments, aliases


def data_discretion_profile(
    snapshot: DatasetSnapshot | None, facts: SnapshotFacts | None = None
) -> dict[str, Any]:
    """The discretion exercised in exactly the snapshot's comparisons (see module doc)."""
    if snapshot is None:
        return {}
    facts = facts or snapshot_facts(snapshot)
    base = {
        "snapshot": snapshot.pk,
        "snapshot_kind": snapshot.kind,
        "summary": snapshot.discretion_summary or {},
        "computed_at": timezone.now().isoformat(),
    }
    if snapshot.kind == DatasetSnapshot.Kind.SFT:
        return {
            **base,
            "status": "ready",
            "demonstrations": facts.rows,
            "cited_principles": dict(facts.cited.most_common()),
            "note": "demonstrations carry no comparison: discretion is measured on preferences",
        }
    max_judgment_id = (snapshot.filters or {}).get("max_judgment_id")
    task_ids: list[int] | None = facts.task_ids
    if len(task_ids) == Task.objects.filter(project=snapshot.project).count():
        task_ids = None  # every task of the project: no (possibly huge) IN list
    inputs = quality_inputs.discretion_inputs(
        snapshot.project, task_ids=task_ids, max_judgment_id=max_judgment_id
    )
    annotators, kinds, judgments, aliases = _rename(inputs)
    contributors = set(snapshot.per_annotator_counts or facts.annotators)
    keep = {
        name
        for name in annotators
        if aliases[name] in contributors or (kinds[name] == "dataset" and not contributors)
    }
    if not keep:  # e.g. a hand-made snapshot without provenance columns: every annotator
        keep = set(annotators)
    annotators = {k: v for k, v in annotators.items() if k in keep}
    n = inputs.P.shape[0]
    if annotators:
        annotators[POOLED] = _majority(annotators.values(), n)
        kinds[POOLED] = "pooled"
        judgments[POOLED] = int(np.count_nonzero(annotators[POOLED]))
    section = _section(inputs, annotators, kinds, judgments)
    return quality_inputs.jsonable(
        {
            **base,
            "status": "ready" if n else "empty",
            "source": f"annotation.analytics over the snapshot's {len(facts.task_ids)} tasks"
            + (f", judgments ≤ {max_judgment_id}" if max_judgment_id else ""),
            "verdict_source": "human verdicts (plurality)",
            "pooled": POOLED,
            **section,
        }
    )


def safe(compute, *args, **kwargs) -> dict[str, Any]:
    """``compute(...)``, or ``{"status": "failed", "error": …}``: lineage must never block a
    registration."""
    try:
        return compute(*args, **kwargs)
    except Exception as exc:
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------- probe set


@dataclass(frozen=True)
class ProbeItem:
    task_id: int
    first: int  # response id oriented +1 (chosen-labelled, else position 0)
    second: int
    prompt: list[dict]
    first_text: str
    second_text: str


@dataclass(frozen=True)
class Probe:
    project: Project
    items: list[ProbeItem]
    held_out: bool
    reference: str | None  # verdict source: None = human verdicts
    description: str

    @property
    def task_ids(self) -> list[int]:
        return [item.task_id for item in self.items]


def _verdict_tasks(project: Project, reference: str | None) -> set[int]:
    qs = PrincipleVerdict.objects.filter(
        judgment__task__project=project, verdict=PrincipleVerdict.Verdict.PREFERS
    )
    if reference:
        qs = qs.filter(judgment__annotator__username=reference)
    else:
        qs = qs.filter(judgment__annotator__profile__kind=AnnotatorProfile.Kind.HUMAN)
    return set(qs.values_list("judgment__task_id", flat=True).distinct())


def probe_for(
    version: ModelVersion, *, project: Project | None = None, limit: int = MAX_PROBE
) -> Probe:
    """Two-response tasks with principle verdicts: of ``project`` when given, else the held-out
    tasks (not in the snapshot) of the snapshot's project, else — when every such task was
    trained on — the snapshot's own tasks (``held_out`` False, an in-sample measurement)."""
    snapshot = version.dataset_snapshot
    chosen = project is not None
    if project is None:
        if snapshot is None:
            return Probe(Project(), [], False, None, "no dataset snapshot and no probe project")
        project = snapshot.project
    reference = quality_inputs.default_reference(project)
    candidates = _verdict_tasks(project, reference)
    trained = (
        set(snapshot_facts(snapshot).task_ids)
        if snapshot is not None and snapshot.project_id == project.pk
        else set()
    )
    held_out = sorted(candidates - trained)
    if held_out:
        task_ids, is_held_out = held_out, True
        description = (
            f"chosen probe project {project.slug}"
            if chosen and not trained
            else f"{len(held_out)} held-out tasks of {project.slug} (not in the snapshot)"
        )
    else:
        task_ids, is_held_out = sorted(candidates), False
        description = f"{len(task_ids)} tasks of {project.slug} that the model was trained on"
    rng = np.random.default_rng(0)
    if len(task_ids) > limit:
        task_ids = sorted(rng.choice(task_ids, size=limit, replace=False).tolist())
    pairs = quality_inputs.pair_tasks(project, task_ids)
    texts: dict[int, str] = {}
    for response_id, text in TaskResponse.objects.filter(
        task_id__in=pairs.task_ids.tolist()
    ).values_list("response_id", "response__text"):
        texts[response_id] = text
    prompts = dict(
        Task.objects.filter(pk__in=pairs.task_ids.tolist()).values_list("id", "prompt__messages")
    )
    items = [
        ProbeItem(int(t), int(a), int(b), prompts[int(t)], texts[int(a)], texts[int(b)])
        for t, a, b in zip(pairs.task_ids, pairs.first, pairs.second, strict=True)
    ]
    return Probe(project, items, is_held_out, reference, description)


# ---------------------------------------------------------------- the model's own discretion


def preferences_from_scores(
    first: Sequence[float], second: Sequence[float], tol: float = SCORE_TOL
) -> list[int]:
    """+1 when the first response scores higher, −1 lower, 0 (abstain) within ``tol``."""
    out = []
    for a, b in zip(first, second, strict=True):
        if not (math.isfinite(a) and math.isfinite(b)) or abs(a - b) <= tol:
            out.append(0)
        else:
            out.append(1 if a > b else -1)
    return out


@transaction.atomic
def record_model_judgments(
    *, version: ModelVersion, probe: Probe, preferences: Sequence[int], method: str
) -> int:
    """The version's annotator judges every probe task (replacing its earlier judgments there):
    ``[[preferred], [other]]``, or ``[]`` when it abstains. Task overlap is left alone."""
    user = ensure_annotator(version)
    task_ids = probe.task_ids
    replaced, _ = Judgment.objects.filter(annotator=user, task_id__in=task_ids).delete()
    origin = origin_of(version)[:60]
    created = Judgment.objects.bulk_create(
        (
            Judgment(
                task_id=item.task_id,
                annotator=user,
                ordering=(
                    [[item.first], [item.second]]
                    if pref > 0
                    else [[item.second], [item.first]]
                    if pref < 0
                    else []
                ),
                rationale=f"{method}" + ("" if pref else ": equal scores, abstains"),
                origin=origin,
            )
            for item, pref in zip(probe.items, preferences, strict=True)
        ),
        batch_size=2000,
    )
    Project.objects.filter(pk=probe.project.pk).update(
        judgment_count=F("judgment_count") + len(created) - replaced
    )
    events.publish("judgments.imported", project_id=probe.project.pk, judgments=len(created))
    return len(created)


def record_model_profile(
    *,
    version: ModelVersion,
    probe: Probe,
    method: str,
    first_scores: Sequence[float],
    second_scores: Sequence[float],
) -> dict[str, Any]:
    """Write the model's probe judgments and store its discretion profile on the version."""
    preferences = preferences_from_scores(first_scores, second_scores)
    record_model_judgments(version=version, probe=probe, preferences=preferences, method=method)
    profile = model_profile(version=version, probe=probe, method=method)
    profile["scores"] = {
        "mean_margin": float(np.mean(np.subtract(first_scores, second_scores)))
        if len(first_scores)
        else None,
        "prefers_first": preferences.count(1),
        "prefers_second": preferences.count(-1),
        "abstains": preferences.count(0),
    }
    save_model_profile(version, profile)
    return profile


def model_profile(*, version: ModelVersion, probe: Probe, method: str) -> dict[str, Any]:
    """The version's discretion on the probe, next to every other annotator of those tasks."""
    name = annotator_username(version)
    inputs = quality_inputs.discretion_inputs(
        probe.project, reference=probe.reference, task_ids=probe.task_ids
    )
    annotators, kinds, judgments, _ = _rename(inputs)
    humans = [v for k, v in annotators.items() if kinds[k] == AnnotatorProfile.Kind.HUMAN]
    n = inputs.P.shape[0]
    if humans:
        annotators[HUMANS] = _majority(humans, n)
        kinds[HUMANS] = "pooled"
        judgments[HUMANS] = int(np.count_nonzero(annotators[HUMANS]))
    section = _section(inputs, annotators, kinds, judgments)
    mine = section["annotators"].get(name)
    if mine is None:
        return {"status": "unavailable", "reason": "the model judged no probe pair"}
    own = annotators[name]
    agreement = None
    if HUMANS in annotators:
        both = (own != 0) & (annotators[HUMANS] != 0)
        agreement = float((own[both] == annotators[HUMANS][both]).mean()) if both.any() else None
    dd = mine["dd"]
    return quality_inputs.jsonable(
        {
            "status": "ready",
            "method": method,
            "annotator": name,
            "origin": origin_of(version),
            "probe": {
                "project": probe.project.slug,
                "tasks": len(probe.items),
                "held_out": probe.held_out,
                "description": probe.description,
                "verdict_source": f"annotator {probe.reference}"
                if probe.reference
                else "human verdicts (plurality)",
            },
            "pairs": section["pairs"],
            "categories": section["categories"],
            "principles": section["principles"],
            "declared": section["declared"],
            "da": mine["da"],
            "da_n": mine["da_n"],
            "da_sd": mine["da_sd"],
            "priority": mine["priority"],
            "weights": mine["weights"],
            "supremacy": mine["supremacy"],
            "dd_declared": mine["dd_declared"],
            **against_target(version.precedence, mine),
            "dd_humans": dd.get(HUMANS),
            "dd_annotators": {
                other: value
                for other, value in dd.items()
                if section["annotators"][other]["kind"] == AnnotatorProfile.Kind.HUMAN
            },
            "dd_models": {
                other: value
                for other, value in dd.items()
                if section["annotators"][other]["kind"] == AnnotatorProfile.Kind.MODEL
            },
            "agreement_with_humans": agreement,
            "others": {
                other: {k: prof[k] for k in ("kind", "da", "da_n", "priority", "judgments")}
                for other, prof in section["annotators"].items()
                if other != name
            },
            "computed_at": timezone.now().isoformat(),
        }
    )


def against_target(precedence: dict, mine: dict[str, Any]) -> dict[str, Any]:
    """How a policy trained to a precedence follows it: DD between its revealed priorities and
    the target ranking (``dd_target``), and for each pair of principles in different target
    tiers whether the model's supremacy PS(higher, lower) exceeds 0.5 (``follows_target``;
    None where the probe had no conflict between them). Empty for a model with no target."""
    ranking = precedence.get("ranking") if precedence else None
    if not ranking:
        return {}
    target = {key: float(len(ranking) - tier) for tier, keys in enumerate(ranking) for key in keys}
    supremacy = {(row["winner"], row["loser"]): row for row in mine["supremacy"] or []}
    follows = []
    for tier, higher_keys in enumerate(ranking):
        for lower_keys in ranking[tier + 1 :]:
            for higher in higher_keys:
                for lower in lower_keys:
                    row = supremacy.get((higher, lower))
                    ps = row["ps"] if row and row.get("n") else None
                    follows.append(
                        {
                            "higher": higher,
                            "lower": lower,
                            "ps": ps,
                            "n": row.get("n", 0) if row else 0,
                            "follows": None if ps is None else ps > 0.5,
                        }
                    )
    return {
        "target": {"ranking": ranking, "origin": precedence.get("origin", {})},
        "dd_target": disc.discrepancy(mine["weights"], target),
        "follows_target": follows,
    }


def revealed_priorities(project: Project, usernames: Sequence[str]) -> dict[str, Any]:
    """The priorities the named annotators reveal together on ``project``: the Bradley–Terry
    weights of their plurality preference on the project's comparisons (as the discretion page
    fits them). Raises ``DomainError`` when one of them gave no principle verdict there."""
    inputs = quality_inputs.discretion_inputs(project)
    missing = [name for name in usernames if name not in inputs.annotators]
    if missing or not usernames:
        raise DomainError(
            f"no principle verdicts on {project.slug} from: {', '.join(missing) or 'nobody'}"
        )
    pooled = _majority((inputs.annotators[name] for name in usernames), inputs.P.shape[0])
    with threadpool_limits(limits=1):
        report = disc.discretion_report(inputs.P, {"revealed": pooled}, inputs.keys)
    revealed = report["annotators"]["revealed"]
    return {"weights": revealed["weights"], "priority": revealed["priority"]}


def save_model_profile(version: ModelVersion, profile: dict[str, Any]) -> None:
    from models_registry.cards import refresh_model_card

    ModelVersion.objects.filter(pk=version.pk).update(model_discretion_profile=profile)
    version.model_discretion_profile = profile
    refresh_model_card(version)


def supremacy_of(profile: dict, winner: str, loser: str) -> tuple[float | None, int]:
    """PS(winner, loser) and its conflict count N from a stored profile (None, 0 if absent)."""
    for row in profile.get("supremacy") or []:
        if row["winner"] == winner and row["loser"] == loser:
            return row["ps"], row["n"]
    return None, 0
