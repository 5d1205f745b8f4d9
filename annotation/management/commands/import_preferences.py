from annotation.datasets.importers.preferences import FORMATS, import_preferences
from annotation.management.commands._base import ImportCommand


class Command(ImportCommand):
    help = (
        "Import labelled preference data (TRL, HH-RLHF, Chatbot Arena, Label Studio) as tasks "
        "plus judgments by a named external annotator (all or nothing)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--format", dest="fmt", required=True, choices=FORMATS)
        parser.add_argument(
            "--annotator", required=True, help="Name of the external annotator (a user)."
        )
        parser.add_argument(
            "--annotator-kind",
            default="human",
            choices=["human", "model"],
            help="model for reward models / LLM judges.",
        )
        parser.add_argument("--model-ref", default="", help='e.g. "model:judge@3".')
        parser.add_argument(
            "--file-format",
            choices=["jsonl", "json", "csv", "parquet"],
            help="Container format (default: from the suffix).",
        )
        parser.add_argument(
            "--ls-keys", help="Label Studio data keys: prompt,left,right (default: detected)."
        )
        parser.add_argument("--limit", type=int, help="Only the first N records.")

    def run(
        self,
        *,
        file,
        project,
        fmt,
        annotator,
        annotator_kind,
        model_ref,
        file_format,
        ls_keys,
        limit,
        **_,
    ):
        result = import_preferences(
            project=self.project(project),
            path=file,
            fmt=fmt,
            annotator=annotator,
            annotator_kind=annotator_kind,
            model_ref=model_ref,
            file_format=file_format,
            ls_keys=ls_keys.split(",") if ls_keys else None,
            limit=limit,
        )
        self.stdout.write(
            f"imported {result.tasks} tasks and {result.judgments} judgments "
            f"by {', '.join(result.annotators)}"
        )
