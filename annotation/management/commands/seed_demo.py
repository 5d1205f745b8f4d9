from django.db import transaction

from annotation.demo import seed
from annotation.management.commands._base import ImportCommand


class Command(ImportCommand):
    help = (
        "Create the demo users, a principle set, an HH-RLHF compare project to annotate, a"
        " project of the HH-RLHF crowd labels with a ready preference snapshot, and a project"
        " judged by four scripted personas with its snapshot (idempotent)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="Only the first N HH pairs.")
        parser.add_argument(
            "--persona-pairs", type=int, default=300, help="Pairs the personas judge."
        )

    @transaction.atomic
    def run(self, *, limit, persona_pairs, **_):
        users = seed.ensure_users()
        principle_set = seed.ensure_principle_set()
        for line in seed.ensure_hh_projects(principle_set, users, limit) + (
            seed.ensure_persona_project(principle_set, users, persona_pairs)
        ):
            self.stdout.write(line)
        self.stdout.write("Logins (demo only — change them for anything real):")
        for demo in seed.DEMO_USERS:
            note = f"  ({demo.note})" if demo.note else ""
            self.stdout.write(f"  {demo.role:<10} {demo.username} / {demo.password}{note}")
