from django.core.management.base import BaseCommand

from training import demo


class Command(BaseCommand):
    help = (
        "Queue the demo's training on the personas' snapshot (after seed_demo): a tiny reward"
        " model, then a tiny DPO policy scored by it. Queues nothing when already queued."
    )

    def handle(self, **_):
        for line in demo.queue_demo_training() or ["demo training already queued"]:
            self.stdout.write(line)
