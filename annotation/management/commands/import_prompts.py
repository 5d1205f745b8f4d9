from annotation.datasets.importers.prompts import import_prompts
from annotation.management.commands._base import ImportCommand


class Command(ImportCommand):
    help = (
        "Import prompts with responses from JSONL, JSON, CSV or Parquet into a project "
        "(all or nothing)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument(
            "--format",
            dest="fmt",
            choices=["jsonl", "json", "csv", "parquet"],
            help="File format (default: from the suffix).",
        )

    def run(self, *, file, project, fmt=None, **_):
        count = import_prompts(project=self.project(project), path=file, fmt=fmt)
        self.stdout.write(f"imported {count} tasks")
