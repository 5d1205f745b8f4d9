"""``manage.py add_member``: make a user a member of a project, as the members page does."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project, ProjectMembership
from annotation.projects import members, selectors
from common.errors import DomainError


class Command(BaseCommand):
    help = "Add a user (by username or e-mail) to a project with a role and optional caps."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="The project's slug.")
        parser.add_argument("--user", required=True, help="Username or e-mail.")
        parser.add_argument(
            "--role", default=ProjectMembership.Role.ANNOTATOR,
            choices=ProjectMembership.Role.values,
        )  # fmt: skip
        parser.add_argument("--max-judgments", type=int, default=None)
        parser.add_argument("--max-per-day", type=int, default=None)

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project {options['project']!r}")
        try:
            membership = members.add_member(
                project=project,
                user=selectors.find_user(options["user"]),
                role=options["role"],
                max_judgments=options["max_judgments"],
                max_per_day=options["max_per_day"],
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{membership.user.get_username()} is now {membership.role} of {project.slug}"
        )
