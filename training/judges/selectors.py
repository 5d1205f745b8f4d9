"""Judge jobs and templates, the reads (pages, API, CLI)."""

from __future__ import annotations

from django.db.models import QuerySet

from annotation.quality import oracles
from common.errors import DomainError
from training.judges import templates as judge_templates
from training.models import JudgeJob, JudgeRevision, JudgeTemplate


def jobs() -> QuerySet[JudgeJob]:
    return JudgeJob.objects.select_related(
        "project", "template", "annotator", "model_version__registered_model", "principle"
    ).order_by("-id")


def revisions(job: JudgeJob) -> QuerySet[JudgeRevision]:
    """A critique job's critiques and revisions, in the order they were written."""
    return JudgeRevision.objects.filter(job=job).select_related("principle").order_by("id")


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
    """How far the job's oracle can be trusted, principle by principle, against the human
    annotators (``annotation.quality.oracles.human_agreement``)."""
    return oracles.human_agreement(job.project, job.annotator_id)
