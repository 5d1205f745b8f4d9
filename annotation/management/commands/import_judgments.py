from annotation.datasets.importers.judgments import FORMATS, import_judgments
from annotation.management.commands._base import ImportCommand


class Command(ImportCommand):
    help = (
        "Import judgments of an algorithmic annotator (principle oracle, reward model, LLM judge, "
        "policy log-probabilities) from a CSV keyed by row_id = the prompt's external_id "
        "(all or nothing)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument(
            "--annotator", required=True, help="Name of the model annotator (created if new)."
        )
        parser.add_argument("--format", dest="fmt", required=True, choices=FORMATS)
        parser.add_argument("--model-ref", default="", help='e.g. "model:gpt-4o@2024-08-06".')
        parser.add_argument(
            "--ignore-unknown-rows",
            action="store_true",
            help="Skip rows whose row_id is not a prompt of the project (else an error).",
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Delete the annotator's earlier judgments on the same tasks first.",
        )

    def run(self, *, file, project, annotator, fmt, model_ref, ignore_unknown_rows, replace, **_):
        result = import_judgments(
            project=self.project(project),
            path=file,
            fmt=fmt,
            annotator=annotator,
            model_ref=model_ref,
            ignore_unknown_rows=ignore_unknown_rows,
            replace=replace,
        )
        parts = [
            f"imported {result.judgments} judgments by {result.annotator}",
            f"{result.preferences} with a preference",
        ]
        if result.verdicts:
            parts.append(f"{result.verdicts} principle verdicts")
        if result.skipped_rows:
            parts.append(f"{result.skipped_rows} rows with unknown row ids skipped")
        if result.replaced:
            parts.append(f"{result.replaced} earlier judgments replaced")
        self.stdout.write(", ".join(parts))
