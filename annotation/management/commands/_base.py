"""Shared plumbing for import commands: turn domain errors into clean CommandErrors."""

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from common.errors import DomainError


class ImportCommand(BaseCommand):
    """Runs ``self.run(**options)``; any ``DomainError`` becomes a one-line error, exit 1."""

    def handle(self, *args, **options):
        try:
            return self.run(**options)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc

    def run(self, **options):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def project(slug: str) -> Project:
        try:
            return Project.objects.get(slug=slug)
        except Project.DoesNotExist as exc:
            raise CommandError(f"no project with slug {slug!r}") from exc
