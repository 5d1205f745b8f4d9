"""``manage.py create_project``: a project for scripts, checked by the browser's own form."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import PrincipleSet, Project
from annotation.projects import services
from annotation.projects.forms import ProjectCreateForm
from common.errors import DomainError


def published_set(label: str | None) -> PrincipleSet:
    """``NAME@VERSION``, or ``NAME`` (its newest published version); without a label, the
    newest version of the only published set there is."""
    published = PrincipleSet.objects.filter(status=PrincipleSet.Status.PUBLISHED)
    if label is None:
        names = list(published.values_list("name", flat=True).distinct()[:2])
        if len(names) != 1:
            raise CommandError(
                "name the principle set with --principle-set NAME@VERSION "
                f"({'none is published' if not names else 'more than one is published'})"
            )
        label = names[0]
    name, sep, version = label.rpartition("@")
    if not sep:
        name, version = label, ""
    sets = published.filter(name=name)
    if version:
        if not version.removeprefix("v").isdigit():
            raise CommandError(f"{label!r}: the version after @ is a number")
        sets = sets.filter(version=int(version.removeprefix("v")))
    found = sets.order_by("-version").first()
    if found is None:
        raise CommandError(f"no published principle set {label!r}")
    return found


class Command(BaseCommand):
    help = "Create a project (the same checks as the browser's New project form)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--slug", required=True)
        parser.add_argument(
            "--principle-set",
            help="NAME@VERSION or NAME (newest published); default: the only published set.",
        )
        parser.add_argument("--description", default="")
        parser.add_argument("--guidelines-file", type=Path, help="Markdown for annotators.")
        parser.add_argument(
            "--task-kinds",
            default=Project.TaskKind.COMPARE,
            help=f"Comma-separated, of {', '.join(Project.TaskKind.values)} (default: compare).",
        )
        parser.add_argument("--overlap", type=int, default=1, help="Judgments per task.")
        parser.add_argument("--lease-seconds", type=int, default=15 * 60)
        parser.add_argument("--edit-window-seconds", type=int, default=10 * 60)
        parser.add_argument("--gold-ratio", type=float, default=0.0)
        parser.add_argument(
            "--both-bad-demonstration",
            action="store_true",
            help="A both-bad verdict creates a demonstration task.",
        )
        parser.add_argument(
            "--fixed-positions", action="store_true", help="Do not shuffle response positions."
        )

    def handle(self, *args, **options):
        principle_set = published_set(options["principle_set"])
        guidelines = options["guidelines_file"].read_text() if options["guidelines_file"] else ""
        data = {
            "name": options["name"],
            "slug": options["slug"],
            "principle_set": principle_set.pk,
            "description": options["description"],
            "guidelines": guidelines,
            "task_kinds": [k.strip() for k in options["task_kinds"].split(",") if k.strip()],
            "annotations_per_task": options["overlap"],
            "lease_seconds": options["lease_seconds"],
            "edit_window_seconds": options["edit_window_seconds"],
            "gold_ratio": options["gold_ratio"],
            "both_bad_creates_demonstration": options["both_bad_demonstration"],
            "randomize_positions": not options["fixed_positions"],
        }
        form = ProjectCreateForm(data)
        if not form.is_valid():
            raise CommandError(
                "; ".join(
                    f"{field}: {' '.join(errors)}" if field != "__all__" else " ".join(errors)
                    for field, errors in form.errors.items()
                )
            )
        try:
            project = services.create_project(**form.cleaned_data)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"created project {project.slug} ({principle_set.label})")
