"""Judge jobs and templates, the reads (pages, API, CLI)."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from annotation.models import AnnotatorProfile, PrincipleVerdict
from annotation.quality.metrics.agreement import cohen_pairs
from common.errors import DomainError
from training.judges import templates as judge_templates
from training.models import JudgeJob, JudgeTemplate


def jobs() -> QuerySet[JudgeJob]:
    return JudgeJob.objects.select_related(
        "project", "template", "annotator", "model_version__registered_model"
    ).order_by("-id")


def templates() -> QuerySet[JudgeTemplate]:
    return JudgeTemplate.objects.order_by("name", "-version")


def template_named(spec: str) -> JudgeTemplate:
    """``name`` (its latest version) or ``name@version``; the defaults exist on first use."""
    judge_templates.ensure_defaults()
    name, _, version = spec.partition("@")
    found = JudgeTemplate.objects.filter(name=name)
    if version:
        if not version.isdigit():
            raise DomainError(f"template version must be a number, got {version!r}")
        found = found.filter(version=int(version))
    template = found.order_by("-version").first()
    if template is None:
        raise DomainError(f"no judge template {spec!r}")
    return template


def human_agreement(job: JudgeJob) -> list[dict]:
    """How far the job's oracle can be trusted, principle by principle: its verdict against
    each human annotator's on the same task (a unit = task × human), three labels (prefers one
    response, prefers the other, not applicable; a tie counts as its own label). Per principle
    (document order): units ``n``, share of agreeing units and Cohen's κ (None when undefined
    or with fewer than 2 units)."""
    rows = PrincipleVerdict.objects.filter(
        judgment__task__project_id=job.project_id,
        principle__principle_set_id=job.project.principle_set_id,
    ).filter(
        Q(judgment__annotator=job.annotator)
        | Q(judgment__annotator__profile__kind=AnnotatorProfile.Kind.HUMAN)
    )
    oracle: dict[tuple[int, int], str] = {}
    human: list[tuple[int, int, int, str]] = []  # (principle, task, annotator, label)
    for task_id, annotator_id, principle_id, verdict, preferred in rows.values_list(
        "judgment__task_id",
        "judgment__annotator_id",
        "principle_id",
        "verdict",
        "preferred_response_id",
    ):
        label = f"r{preferred}" if preferred else verdict
        if annotator_id == job.annotator_id:
            oracle[(principle_id, task_id)] = label
        else:
            human.append((principle_id, task_id, annotator_id, label))
    triples: dict[int, list[tuple]] = {}
    for principle_id, task_id, annotator_id, label in human:
        mine = oracle.get((principle_id, task_id))
        if mine is not None:
            unit = (task_id, annotator_id)
            triples.setdefault(principle_id, []).extend(
                [(unit, "oracle", mine), (unit, "human", label)]
            )
    out = []
    for p in job.project.principle_set.principles.order_by("position"):
        units = triples.get(p.pk, [])
        n = len(units) // 2
        agree = sum(1 for o, h in zip(units[::2], units[1::2], strict=True) if o[2] == h[2])
        pairs = cohen_pairs(units) if n >= 2 else []
        out.append(
            {
                "principle": p.key,
                "title": p.title,
                "n": n,
                "agreement": agree / n if n else None,
                "kappa": pairs[0]["kappa"] if pairs else None,
            }
        )
    return out
