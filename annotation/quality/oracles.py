"""Oracles against people: how far each model annotator's principle verdicts (an imported
oracle file, a judge job) agree with the human annotators', principle by principle.

A label is the response a verdict prefers, or its verdict (``not_applicable``, a tie) when it
prefers none; a unit is a task × human annotator on which the oracle also gave a verdict for
that principle. Reads only (selectors); the math is
``annotation.quality.metrics.agreement.agreement_with_reference``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db.models import Q

from annotation.models import AnnotatorProfile, PrincipleVerdict, Project
from annotation.quality.inputs import annotator_names, principles_of, task_filter
from annotation.quality.metrics.agreement import agreement_with_reference

Key = tuple[int, int]  # (principle id, task id)


def _labels(
    project: Project,
    oracle_ids: Iterable[int] | None,
    max_judgment_id: int | None = None,
    task_ids: Iterable[int] | None = None,
):
    """(oracle → principle → {task: label}, principle → [(task, human, label)])."""
    who = Q(judgment__annotator__profile__kind=AnnotatorProfile.Kind.HUMAN)
    if oracle_ids is None:
        who |= Q(judgment__annotator__profile__kind=AnnotatorProfile.Kind.MODEL)
    else:
        who |= Q(judgment__annotator_id__in=list(oracle_ids))
    rows = PrincipleVerdict.objects.filter(
        who,
        judgment__task__project=project,
        principle__principle_set_id=project.principle_set_id,
    )
    rows = task_filter(rows, "judgment__task_id", task_ids)
    if max_judgment_id is not None:
        rows = rows.filter(judgment_id__lte=max_judgment_id)
    oracle: dict[int, dict[int, dict[int, str]]] = defaultdict(lambda: defaultdict(dict))
    human: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for task_id, annotator_id, kind, principle_id, verdict, preferred in rows.values_list(
        "judgment__task_id",
        "judgment__annotator_id",
        "judgment__annotator__profile__kind",
        "principle_id",
        "verdict",
        "preferred_response_id",
    ):
        label = f"r{preferred}" if preferred else verdict
        if kind == AnnotatorProfile.Kind.HUMAN:
            human[principle_id].append((task_id, annotator_id, label))
        else:
            oracle[annotator_id][principle_id][task_id] = label
    return oracle, human


def human_agreement(project: Project, annotator_id: int) -> list[dict[str, Any]]:
    """One oracle, per principle (document order): ``principle``, ``title``, units ``n``,
    share of agreeing units and Cohen's κ."""
    oracle, human = _labels(project, [annotator_id])
    mine = oracle.get(annotator_id, {})
    return [
        {
            "principle": p.key,
            "title": p.title,
            **agreement_with_reference(mine.get(p.id, {}), human.get(p.id, [])),
        }
        for p in principles_of(project)
    ]


def oracle_section(
    project: Project,
    max_judgment_id: int | None = None,
    task_ids: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    """Every model annotator with principle verdicts here (or on ``task_ids``, up to a judgment
    horizon), by name: its per-principle rows (as :func:`human_agreement`) and the units over
    all principles."""
    oracle, human = _labels(project, None, max_judgment_id, task_ids)
    names = annotator_names(oracle)
    principles = principles_of(project)
    out = []
    for annotator_id, by_principle in oracle.items():
        rows = [
            {
                "principle": p.key,
                "title": p.title,
                **agreement_with_reference(by_principle.get(p.id, {}), human.get(p.id, [])),
            }
            for p in principles
        ]
        out.append(
            {
                "annotator": names[annotator_id][0],
                "units": sum(r["n"] for r in rows),
                "principles": rows,
            }
        )
    return sorted(out, key=lambda o: o["annotator"])
