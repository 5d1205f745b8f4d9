"""Write paths for the annotation domain. Keyword-only, typed, one transaction each."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from .errors import DomainError, ImmutableError
from .models import (
    AnnotatorProfile,
    Judgment,
    Principle,
    PrincipleSet,
    Project,
    Prompt,
    Response,
    Task,
    TaskResponse,
)

User = get_user_model()

# Precedence of authority tiers, highest first; ``declared_priority`` defaults to this rank.
AUTHORITY_RANK = {
    Principle.Authority.PLATFORM: 0,
    Principle.Authority.ROOT: 0,
    Principle.Authority.SYSTEM: 1,
    Principle.Authority.DEVELOPER: 2,
    Principle.Authority.USER: 3,
    Principle.Authority.GUIDELINE: 4,
}


@dataclass(frozen=True)
class PrincipleSpec:
    """A principle before it is stored (what every principle importer produces)."""

    key: str
    title: str
    text: str = ""
    section: str = ""
    kind: str = Principle.Kind.GUIDELINE
    authority: str = Principle.Authority.USER
    declared_priority: int | None = None


@dataclass(frozen=True)
class ResponseSpec:
    text: str
    source: str = ""
    label: str = ""  # "chosen" / "rejected" when the source data carries a verdict
    generation_params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PromptSpec:
    """A prompt with its candidate responses, as parsed from an import file."""

    messages: list[dict]
    responses: list[ResponseSpec]
    external_id: str = ""
    metadata: dict = field(default_factory=dict)
    kind: str = ""  # compare / rank / demonstrate; derived from the response count if empty


# ---------------------------------------------------------------- principle sets


def _require_draft(principle_set: PrincipleSet) -> None:
    if principle_set.is_published:
        raise ImmutableError(
            f"{principle_set} is published and immutable; fork it to make a new version."
        )


def _principle_rows(principle_set: PrincipleSet, specs: Sequence[PrincipleSpec]) -> list[Principle]:
    keys = [spec.key for spec in specs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise DomainError(f"duplicate principle keys: {', '.join(duplicates)}")
    return [
        Principle(
            principle_set=principle_set,
            position=position,
            **{
                **asdict(spec),
                "declared_priority": spec.declared_priority
                if spec.declared_priority is not None
                else AUTHORITY_RANK[spec.authority],
            },
        )
        for position, spec in enumerate(specs)
    ]


@transaction.atomic
def create_principle_set(
    *,
    name: str,
    principles: Sequence[PrincipleSpec],
    description: str = "",
    source: str = "",
    created_by: User | None = None,
    publish: bool = False,
) -> PrincipleSet:
    """Create the next version of ``name`` (version 1 if new) as a draft, optionally published."""
    latest = PrincipleSet.objects.select_for_update().filter(name=name).order_by("-version").first()
    principle_set = PrincipleSet.objects.create(
        name=name,
        version=(latest.version + 1) if latest else 1,
        parent=latest,
        description=description,
        source=source,
        created_by=created_by,
    )
    Principle.objects.bulk_create(_principle_rows(principle_set, principles))
    if publish:
        return publish_principle_set(principle_set=principle_set)
    return principle_set


@transaction.atomic
def update_principle(*, principle: Principle, **changes: object) -> Principle:
    """Edit a principle of a draft set; published sets refuse every edit."""
    principle_set = PrincipleSet.objects.select_for_update().get(pk=principle.principle_set_id)
    _require_draft(principle_set)
    allowed = {"title", "text", "section", "kind", "authority", "declared_priority"}
    unknown = set(changes) - allowed
    if unknown:
        raise DomainError(f"cannot change {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(principle, name, value)
    principle.full_clean()
    principle.save(update_fields=list(changes))
    return principle


@transaction.atomic
def add_principle(*, principle_set: PrincipleSet, spec: PrincipleSpec) -> Principle:
    principle_set = PrincipleSet.objects.select_for_update().get(pk=principle_set.pk)
    _require_draft(principle_set)
    position = principle_set.principles.count()
    existing = list(principle_set.principles.values_list("key", flat=True))
    if spec.key in existing:
        raise DomainError(f"duplicate principle key: {spec.key}")
    (row,) = _principle_rows(principle_set, [spec])
    row.position = position
    row.save()
    return row


@transaction.atomic
def remove_principle(*, principle: Principle) -> None:
    _require_draft(PrincipleSet.objects.select_for_update().get(pk=principle.principle_set_id))
    principle.delete()


@transaction.atomic
def publish_principle_set(*, principle_set: PrincipleSet) -> PrincipleSet:
    """Freeze a draft. Publishing twice is refused."""
    principle_set = PrincipleSet.objects.select_for_update().get(pk=principle_set.pk)
    _require_draft(principle_set)
    if not principle_set.principles.exists():
        raise DomainError("a principle set needs at least one principle to be published")
    principle_set.status = PrincipleSet.Status.PUBLISHED
    principle_set.published_at = timezone.now()
    principle_set.save(update_fields=["status", "published_at"])
    return principle_set


@transaction.atomic
def fork_principle_set(
    *, principle_set: PrincipleSet, created_by: User | None = None
) -> PrincipleSet:
    """A new draft version of the same name whose parent is ``principle_set``; keys are kept."""
    latest = (
        PrincipleSet.objects.select_for_update()
        .filter(name=principle_set.name)
        .order_by("-version")
        .first()
    )
    fork = PrincipleSet.objects.create(
        name=principle_set.name,
        version=latest.version + 1,
        parent=principle_set,
        description=principle_set.description,
        source=principle_set.source,
        created_by=created_by,
    )
    Principle.objects.bulk_create(
        Principle(
            principle_set=fork,
            key=p.key,
            title=p.title,
            text=p.text,
            section=p.section,
            kind=p.kind,
            authority=p.authority,
            declared_priority=p.declared_priority,
            position=p.position,
        )
        for p in principle_set.principles.all()
    )
    return fork


# ---------------------------------------------------------------- users


@transaction.atomic
def create_user(
    *,
    username: str,
    password: str | None,
    role: str = AnnotatorProfile.Role.ANNOTATOR,
    kind: str = AnnotatorProfile.Kind.HUMAN,
    model_ref: str = "",
    email: str = "",
) -> User:
    """A user with its profile. ``password=None`` makes an account that cannot log in."""
    user = User(username=username, email=email, is_staff=role == AnnotatorProfile.Role.ADMIN)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.save()
    AnnotatorProfile.objects.update_or_create(
        user=user, defaults={"role": role, "kind": kind, "model_ref": model_ref}
    )
    return user


def get_or_create_model_annotator(*, name: str, model_ref: str = "") -> User:
    """The user that stands for an algorithmic annotator (reward model, LLM judge, policy)."""
    user = User.objects.filter(username=name).select_related("profile").first()
    if user is None:
        return create_user(
            username=name,
            password=None,
            role=AnnotatorProfile.Role.VIEWER,
            kind=AnnotatorProfile.Kind.MODEL,
            model_ref=model_ref or f"external:{name}",
        )
    return user


# ---------------------------------------------------------------- projects and tasks


@transaction.atomic
def create_project(
    *,
    name: str,
    slug: str,
    principle_set: PrincipleSet,
    created_by: User | None = None,
    **settings: object,
) -> Project:
    if not principle_set.is_published:
        raise DomainError("a project must use a published principle set")
    project = Project(
        name=name, slug=slug, principle_set=principle_set, created_by=created_by, **settings
    )
    project.full_clean()
    project.save()
    return project


def task_kind_for(spec: PromptSpec) -> str:
    if spec.kind:
        return spec.kind
    count = len(spec.responses)
    if count == 0:
        return Task.Kind.DEMONSTRATE
    if count == 1:
        return Task.Kind.RATE
    return Task.Kind.COMPARE if count == 2 else Task.Kind.RANK


@transaction.atomic
def create_tasks(*, project: Project, specs: Iterable[PromptSpec], batch_size: int = 2000) -> int:
    """Store prompts, responses and one task per prompt in bulk; returns the task count."""
    total = 0
    batch: list[PromptSpec] = []
    for spec in specs:
        batch.append(spec)
        if len(batch) >= batch_size:
            total += _create_task_batch(project, batch)
            batch = []
    if batch:
        total += _create_task_batch(project, batch)
    Project.objects.filter(pk=project.pk).update(task_count=project.tasks.count())
    return total


def _create_task_batch(project: Project, specs: list[PromptSpec]) -> int:
    prompts = Prompt.objects.bulk_create(
        Prompt(project=project, messages=s.messages, metadata=s.metadata, external_id=s.external_id)
        for s in specs
    )
    responses = Response.objects.bulk_create(
        Response(prompt=prompt, text=r.text, source=r.source, generation_params=r.generation_params)
        for prompt, spec in zip(prompts, specs, strict=True)
        for r in spec.responses
    )
    tasks = Task.objects.bulk_create(
        Task(project=project, prompt=prompt, kind=task_kind_for(spec))
        for prompt, spec in zip(prompts, specs, strict=True)
    )
    links = []
    response_iter = iter(responses)
    for task, spec in zip(tasks, specs, strict=True):
        for position, response_spec in enumerate(spec.responses):
            links.append(
                TaskResponse(
                    task=task,
                    response=next(response_iter),
                    position=position,
                    source_label=response_spec.label,
                )
            )
    TaskResponse.objects.bulk_create(links)
    return len(tasks)


def refresh_project_counts(*, project_id: int) -> Project:
    """Recompute a project's cached counts (run by a Celery worker)."""
    counts = Task.objects.filter(project_id=project_id).aggregate(
        tasks=Count("id"),
        complete=Count(
            "id",
            filter=Q(
                submitted_count__gte=Project.objects.filter(pk=project_id).values(
                    "annotations_per_task"
                )[:1]
            ),
        ),
    )
    judgments = Judgment.objects.filter(task__project_id=project_id).count()
    Project.objects.filter(pk=project_id).update(
        task_count=counts["tasks"],
        completed_task_count=counts["complete"],
        judgment_count=judgments,
        counts_refreshed_at=timezone.now(),
    )
    return Project.objects.get(pk=project_id)
