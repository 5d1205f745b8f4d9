import json

from django.core.management.base import BaseCommand

from annotation.datasets import shards


class Command(BaseCommand):
    help = "Internal: export one task range of a snapshot into a part file (a build worker)."

    def add_arguments(self, parser):
        parser.add_argument("snapshot", type=int)
        parser.add_argument("--after", type=int, default=0, help="Task ids above this…")
        parser.add_argument("--until", type=int, help="…up to and including this one.")
        parser.add_argument("--out", required=True, help="Part file to write.")
        parser.add_argument("--summary", required=True, help="Where to write the counts (JSON).")

    def handle(self, *, snapshot, after, until, out, summary, **_):
        state = shards.write_shard(snapshot_id=snapshot, after=after, until=until, out=out)
        with open(summary, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
