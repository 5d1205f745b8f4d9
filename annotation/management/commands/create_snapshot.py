import json

from django.core.management.base import CommandError

from annotation.datasets import snapshots
from annotation.management.commands._base import ImportCommand


class Command(ImportCommand):
    help = (
        "Build a dataset snapshot (TRL preference / SFT / KTO / ranking / raw; JSONL or Parquet) "
        "into ARTIFACT_ROOT and print its path, row count and sha256."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument(
            "--kind", default="preference", choices=["preference", "sft", "kto", "ranking", "raw"]
        )
        parser.add_argument("--format", dest="fmt", default="jsonl", choices=["jsonl", "parquet"])
        parser.add_argument(
            "--aggregation", default="raw", choices=["raw", "majority", "bradley_terry"]
        )
        parser.add_argument(
            "--filters", default="{}", help='JSON, e.g. \'{"style": "text", "min_agreement": 0.7}\''
        )
        parser.add_argument("--name", default="")
        parser.add_argument(
            "--each-principle",
            action="store_true",
            help="One preference snapshot per principle, chosen / rejected by its verdicts.",
        )

    def run(self, *, project, kind, fmt, aggregation, filters, name, each_principle, **_):
        try:
            parsed = json.loads(filters)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--filters is not JSON: {exc}") from exc
        options = {
            "project": self.project(project), "fmt": fmt, "aggregation": aggregation,
            "filters": parsed, "name": name, "run": "inline",
        }  # fmt: skip
        if each_principle:
            built = snapshots.create_principle_snapshots(**options)
        else:
            built = [snapshots.create_snapshot(kind=kind, **options)]
        for snapshot in built:
            if snapshot.status != "ready":
                raise CommandError(f"snapshot {snapshot.pk} failed: {snapshot.error}")
            self.stdout.write(
                f"snapshot {snapshot.pk}: {snapshot.row_count} rows, sha256 {snapshot.sha256}, "
                f"{snapshots.artifact_file(snapshot)}"
            )
