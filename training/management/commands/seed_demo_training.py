from django.core.management.base import BaseCommand, CommandError

from common.errors import DomainError
from training import demo


class Command(BaseCommand):
    help = (
        "Queue the demo's training on the personas' snapshot (after seed_demo): a tiny reward"
        " model, then a tiny DPO policy scored by it. Queues nothing when already queued."
    )

    def handle(self, **_):
        try:
            lines = demo.queue_demo_training()
        except DomainError as exc:  # e.g. the broker refused the job (the run is marked failed)
            raise CommandError(str(exc)) from exc
        for line in lines or ["demo training already queued"]:
            self.stdout.write(line)
