from annotation.datasets.importers.hh_rlhf import import_hh_rlhf
from annotation.management.commands._base import ImportCommand


class Command(ImportCommand):
    help = "Import HH-RLHF transcripts (.jsonl or .jsonl.gz) as compare tasks (all or nothing)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--limit", type=int, help="Only the first N pairs.")

    def run(self, *, file, project, limit, **_):
        count = import_hh_rlhf(project=self.project(project), path=file, limit=limit)
        self.stdout.write(f"imported {count} compare tasks")
