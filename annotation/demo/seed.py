"""Write the demo's data: users, the principle set, the HH-RLHF projects and the persona project
judged through the real assignment engine (``leasing.next_task`` / ``judging.submit_judgment``).

Every step is idempotent: what exists already is kept as it is and nothing is written twice.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model

from annotation.datasets.bulk import create_tasks
from annotation.datasets.importers.hh_rlhf import import_hh_rlhf, split_transcript
from annotation.datasets.importers.preferences import import_preferences
from annotation.datasets.snapshots import create_snapshot
from annotation.demo import personas
from annotation.models import (
    AnnotatorProfile,
    DatasetSnapshot,
    PrincipleSet,
    Project,
    ProjectMembership,
    Task,
    TaskResponse,
)
from annotation.principles.importers import import_principles
from annotation.projects import members
from annotation.projects import services as project_services
from annotation.quality import reports
from annotation.specs import PromptSpec, ResponseSpec
from annotation.workspace import judging, leasing
from common.errors import DomainError

DEMO_DATA = Path(__file__).resolve().parents[1] / "demo_data"
HH_FILE = DEMO_DATA / "hh-rlhf-harmless-base-test.jsonl.gz"
Role = AnnotatorProfile.Role
User = get_user_model()

PERSONA_PROJECT = "hh-personas"
#: the preference snapshot the demo's reward model and policy train on (``training.demo``)
PERSONA_SNAPSHOT = "personas-majority"
PROBE_SHARE = 1 / 6  # pairs judged after the snapshot: held out for the models' profiles
MAX_PROMPT_CHARS, MAX_REPLY_CHARS = 140, 220


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str
    note: str = ""


DEMO_USERS = (
    DemoUser("admin", "admin-demo-pass", Role.ADMIN),
    DemoUser("alice", "alice-demo-pass", Role.ANNOTATOR),
    DemoUser("bob", "bob-demo-pass", Role.ANNOTATOR),
    DemoUser("prudence", "prudence-demo-pass", Role.ANNOTATOR, "follows the declared precedence"),
    DemoUser("candor", "candor-demo-pass", Role.ANNOTATOR, "helpfulness above harmlessness"),
    DemoUser("quill", "quill-demo-pass", Role.ANNOTATOR, "penalises 'As an AI language model'"),
    DemoUser("dash", "dash-demo-pass", Role.ANNOTATOR, "careless and fast"),
)


def ensure_users() -> dict[str, User]:
    """The demo logins (kind human), created when missing; existing ones are left alone."""
    users = {}
    for demo in DEMO_USERS:
        user = User.objects.filter(username=demo.username).first()
        if user is None:
            user = project_services.create_user(
                username=demo.username, password=demo.password, role=demo.role
            )
            if demo.role == Role.ADMIN:
                user.is_superuser = user.is_staff = True
                user.save(update_fields=["is_superuser", "is_staff"])
        users[demo.username] = user
    return users


def add_members(project: Project, users: list[User]) -> None:
    """The one place the demo makes ``users`` annotating members of ``project``."""
    for user in users:
        members.ensure_member(project=project, user=user, role=ProjectMembership.Role.ANNOTATOR)


def ensure_principle_set() -> PrincipleSet:
    return PrincipleSet.objects.filter(
        name="demo-harmlessness", status="published"
    ).first() or import_principles(path=DEMO_DATA / "principles.yaml", publish=True)


def ensure_hh_projects(principle_set: PrincipleSet, users: dict, limit: int | None) -> list[str]:
    """``hh-harmless`` (HH-RLHF pairs to annotate) and ``hh-harmless-labels`` (the crowd's
    labels with a ready preference snapshot); returns what was created."""
    created = []
    project = Project.objects.filter(slug="hh-harmless").first()
    if project is None:
        project = project_services.create_project(
            name="HH-RLHF harmlessness (demo)",
            slug="hh-harmless",
            principle_set=principle_set,
            description="Compare two assistant replies from Anthropic HH-RLHF harmless-base.",
            guidelines="Pick the reply that better follows the principles. Mark, for each "
            "principle, which reply it favours; say which principle decided.",
            task_kinds=["compare"],
            annotations_per_task=2,
            both_bad_creates_demonstration=True,
        )
        count = import_hh_rlhf(project=project, path=HH_FILE, limit=limit)
        created.append(f"demo project {project.slug!r}: {count} compare tasks")
    add_members(project, [users["alice"], users["bob"]])
    labels = Project.objects.filter(slug="hh-harmless-labels").first()
    if labels is None:
        labels = project_services.create_project(
            name="HH-RLHF crowd labels (demo)",
            slug="hh-harmless-labels",
            principle_set=principle_set,
            description="HH-RLHF pairs with the original crowdworkers' choice as judgments.",
            task_kinds=["compare"],
        )
        import_preferences(
            project=labels, path=HH_FILE, fmt="hh-rlhf", annotator="hh-rlhf-crowd", limit=limit
        )
    if not DatasetSnapshot.objects.filter(project=labels, status="ready").exists():
        snapshot = create_snapshot(
            project=labels, kind="preference", name="hh-crowd-preferences", run="inline"
        )
        created.append(f"preference snapshot {snapshot.pk}: {snapshot.row_count} pairs")
    return created


def hh_dialogues(path: Path = HH_FILE) -> list[tuple[str, str, str]]:
    """(request, chosen reply, rejected reply) of the short single-turn HH-RLHF dialogues."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            chosen, rejected = (split_transcript(record[side]) for side in ("chosen", "rejected"))
            if len(chosen) != 2 or chosen[:1] != rejected[:1] or len(rejected) != 2:
                continue
            prompt, first, second = (
                chosen[0]["content"],
                chosen[1]["content"],
                rejected[1]["content"],
            )
            if (
                0 < len(prompt) <= MAX_PROMPT_CHARS
                and all(20 <= len(reply) <= MAX_REPLY_CHARS for reply in (first, second))
                and first != second
            ):
                out.append((prompt, first, second))
    return out


def _specs(pairs: list[personas.Pair], start: int) -> list[PromptSpec]:
    return [
        PromptSpec(
            messages=[{"role": "user", "content": pair.prompt}],
            responses=[
                ResponseSpec(pair.careful, personas.SOURCES[personas.CAREFUL]),
                ResponseSpec(pair.direct, personas.SOURCES[personas.DIRECT]),
            ],
            external_id=f"persona-{start + i}",
            kind="compare",
        )
        for i, pair in enumerate(pairs)
    ]


def judge_as(persona: str, user: User, project: Project, pairs: dict[str, personas.Pair]) -> int:
    """``user`` works through every task of ``project`` open to them with ``persona``'s rules;
    returns the number of judgments."""
    rng = random.Random(persona)
    external_id = dict(
        Task.objects.filter(project=project).values_list("id", "prompt__external_id")
    )
    side_of = {
        response_id: personas.CAREFUL
        if source == personas.SOURCES[personas.CAREFUL]
        else personas.DIRECT
        for response_id, source in TaskResponse.objects.filter(task__project=project).values_list(
            "response_id", "response__source"
        )
    }
    done = 0
    while (assignment := leasing.next_task(annotator=user, project=project)) is not None:
        pair = pairs[external_id[assignment.task_id]]
        response_of = {side_of[rid]: rid for rid in assignment.display_order}
        decision = personas.decide(
            persona, pair, shown_first=side_of[assignment.display_order[0]], rng=rng
        )
        loser = personas.other(decision.winner)
        judging.submit_judgment(
            assignment=assignment,
            annotator=user,
            ordering=[[response_of[decision.winner]], [response_of[loser]]],
            strength=decision.strength,
            verdicts={key: response_of.get(side, side) for key, side in decision.verdicts.items()},
            decisive=list(decision.decisive),
            discretion=decision.discretion,
            discretion_note=decision.note,
            time_spent_ms=decision.time_spent_ms,
            origin="demo",
        )
        done += 1
    return done


def ensure_persona_project(principle_set: PrincipleSet, users: dict, count: int = 300) -> list[str]:
    """``hh-personas``: ``count`` pairs (at most one per short single-turn HH-RLHF dialogue,
    322) judged by every persona. The first pairs are judged, then frozen in the
    ``personas-majority`` snapshot (majority of the consistent personas), then the rest are
    judged: held out for the trained models' discretion profiles."""
    if count < 2:
        raise DomainError("the personas need at least 2 pairs (one judged, one held out)")
    if Project.objects.filter(slug=PERSONA_PROJECT).exists():
        return []
    team = [users[name] for name in personas.PERSONAS]
    project = project_services.create_project(
        name="Persona judges (demo)",
        slug=PERSONA_PROJECT,
        principle_set=principle_set,
        description="Short HH-RLHF requests; one reply carries a safety caveat. Four scripted "
        "annotators with different priorities judge every pair.",
        guidelines="Pick the reply that better follows the principles; give each principle's "
        "verdict and the principle that decided. Flag discretion when you overrule the order.",
        task_kinds=["compare"],
        annotations_per_task=len(team),
    )
    add_members(project, team)
    pairs = personas.make_pairs(hh_dialogues(), count)
    by_id = {f"persona-{i}": pair for i, pair in enumerate(pairs)}
    held_out = max(1, int(len(pairs) * PROBE_SHARE))
    train = len(pairs) - held_out
    create_tasks(project=project, specs=_specs(pairs[:train], 0))
    judged = sum(judge_as(user.username, user, project, by_id) for user in team)
    consistent = [users[name].pk for name in personas.CONSISTENT]
    snapshot = create_snapshot(
        project=project,
        kind="preference",
        aggregation="majority",
        filters={"annotators": consistent},
        name=PERSONA_SNAPSHOT,
        run="inline",
    )
    create_tasks(project=project, specs=_specs(pairs[train:], train))
    judged += sum(judge_as(user.username, user, project, by_id) for user in team)
    for kind in reports.KINDS:  # the quality pages show figures at once
        reports.compute_and_store(project, kind, {})
    return [
        f"persona project {project.slug!r}: {len(pairs)} pairs, {judged} judgments",
        f"preference snapshot {snapshot.pk} ({PERSONA_SNAPSHOT}): {snapshot.row_count} pairs",
    ]
