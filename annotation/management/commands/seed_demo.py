from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from annotation.datasets.importers.hh_rlhf import import_hh_rlhf
from annotation.datasets.importers.preferences import import_preferences
from annotation.datasets.snapshots import create_snapshot
from annotation.management.commands._base import ImportCommand
from annotation.models import AnnotatorProfile, DatasetSnapshot, PrincipleSet, Project
from annotation.principles.importers import import_principles
from annotation.projects import members
from annotation.projects import services as project_services

DEMO_DATA = Path(__file__).resolve().parents[2] / "demo_data"
Role = AnnotatorProfile.Role
DEMO_USERS = [
    ("admin", "admin-demo-pass", Role.ADMIN),
    ("alice", "alice-demo-pass", Role.ANNOTATOR),
    ("bob", "bob-demo-pass", Role.ANNOTATOR),
]


class Command(ImportCommand):
    help = (
        "Create demo users, a principle set, an HH-RLHF compare project to annotate, and a"
        " project of the HH-RLHF crowd labels with a ready preference snapshot (idempotent)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="Only the first N HH pairs.")

    @transaction.atomic
    def run(self, *, limit, **_):
        User = get_user_model()
        hh_file = DEMO_DATA / "hh-rlhf-harmless-base-test.jsonl.gz"
        for username, password, role in DEMO_USERS:
            if not User.objects.filter(username=username).exists():
                user = project_services.create_user(username=username, password=password, role=role)
                if role == Role.ADMIN:
                    user.is_superuser = user.is_staff = True
                    user.save(update_fields=["is_superuser", "is_staff"])
        principle_set = PrincipleSet.objects.filter(
            name="demo-harmlessness", status="published"
        ).first() or import_principles(path=DEMO_DATA / "principles.yaml", publish=True)
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
            count = import_hh_rlhf(project=project, path=hh_file, limit=limit)
            self.stdout.write(f"demo project {project.slug!r}: {count} compare tasks")
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
                project=labels, path=hh_file, fmt="hh-rlhf", annotator="hh-rlhf-crowd", limit=limit
            )
        for username, _, role in DEMO_USERS:
            if role == Role.ANNOTATOR:  # the demo annotators work on the compare project
                members.ensure_member(
                    project=project, user=User.objects.get(username=username), role=role
                )
        if not DatasetSnapshot.objects.filter(project=labels, status="ready").exists():
            snapshot = create_snapshot(
                project=labels, kind="preference", name="hh-crowd-preferences", run="inline"
            )
            self.stdout.write(f"preference snapshot {snapshot.pk}: {snapshot.row_count} pairs")
        self.stdout.write("Logins (demo only — change them for anything real):")
        for username, password, role in DEMO_USERS:
            self.stdout.write(f"  {role:<10} {username} / {password}")
