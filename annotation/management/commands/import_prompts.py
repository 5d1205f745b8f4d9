from ...importers.prompts import import_prompts
from ._base import ImportCommand


class Command(ImportCommand):
    help = "Import prompts with responses from JSON Lines into a project (all or nothing)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="Project slug.")

    def run(self, *, file, project, **_):
        count = import_prompts(project=self.project(project), path=file)
        self.stdout.write(f"imported {count} tasks")
