from annotation.management.commands._base import ImportCommand
from annotation.principles.importers import FORMATS, import_principles


class Command(ImportCommand):
    help = "Import a principle set (YAML/JSON, one per line, or OpenAI Model Spec markdown)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--name", help="Principle-set name (default: from the file).")
        parser.add_argument("--format", choices=FORMATS, help="Default: from the file suffix.")
        parser.add_argument("--titles", help="One short title per line (for the lines format).")
        parser.add_argument("--publish", action="store_true", help="Publish (freeze) it.")

    def run(self, *, file, name, format, titles, publish, **_):
        principle_set = import_principles(
            path=file, name=name, fmt=format, titles=titles, publish=publish
        )
        count = principle_set.principles.count()
        self.stdout.write(f"{principle_set} ({principle_set.status}): {count} principles")
