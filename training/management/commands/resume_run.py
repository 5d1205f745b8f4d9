"""``manage.py resume_run <id> [--max-steps N]``: queue a cancelled or failed run again from
its last checkpoint (a higher ``--max-steps`` extends it)."""

from django.core.management.base import BaseCommand, CommandError

from common.errors import DomainError
from training import services
from training.models import TrainingRun


class Command(BaseCommand):
    help = "Resume (or extend) a cancelled or failed training run from its last checkpoint."

    def add_arguments(self, parser) -> None:
        parser.add_argument("run_id", type=int)
        parser.add_argument("--max-steps", type=int, help="Train to this step (extend).")

    def handle(self, *, run_id: int, max_steps: int | None, **_) -> None:
        run = TrainingRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"no training run {run_id}")
        try:
            run = services.resume_run(run=run, max_steps=max_steps)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"run {run.pk} queued on {run.queue}, to step {run.max_steps}")
