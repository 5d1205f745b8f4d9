import json
import time

from django.core.management.base import BaseCommand, CommandError

from annotation.models import DatasetSnapshot
from common.errors import DomainError
from training import services, trainers, validation
from training.models import TrainingRun


def progress_bar(run: TrainingRun, width: int = 30) -> str:
    filled = int(run.progress * width)
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {run.current_step}/{run.max_steps} {run.status}"
    )


class Command(BaseCommand):
    help = "Launch a training run (reward, sft, dpo, kto, orpo, grpo, ppo) on a Celery queue."

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=trainers.KINDS)
        parser.add_argument("--snapshot", type=int, required=True, help="Dataset snapshot id.")
        parser.add_argument(
            "--base",
            default="builtin:tiny",
            help="builtin:tiny, a registered name@version, a hub id (org/name) or a path "
            "under a model root (MODEL_ROOTS).",
        )
        parser.add_argument("--reward-model", help="Registered reward model name@version.")
        parser.add_argument("--config", default="{}", help="JSON object of config fields.")
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="FIELD=JSON",
            help="One config field (repeatable), e.g. --set max_steps=50.",
        )
        parser.add_argument("--queue", choices=TrainingRun.Queue.values, default="cpu")
        parser.add_argument("--processes", type=int, default=1, help="> 1 runs under torchrun.")
        parser.add_argument("--name", default="")
        parser.add_argument(
            "--precedence",
            help='GRPO / PPO trained to a precedence of principles (JSON), e.g. \'{"reward_group":'
            ' 3, "weights_from": "revealed", "annotators": ["alice"]}\'.',
        )
        parser.add_argument("--wait", action="store_true", help="Show progress until it ends.")

    def handle(self, *, kind, snapshot, base, reward_model, config, set, queue, processes,
               name, wait, precedence, **_):  # fmt: skip
        try:
            values = json.loads(config)
            precedence = json.loads(precedence) if precedence else None
            if not isinstance(values, dict):
                raise CommandError("--config must be a JSON object of config fields")
            for item in set:
                field, _, raw = item.partition("=")
                values[field] = json.loads(raw) if raw else None
        except (json.JSONDecodeError, RecursionError) as exc:
            raise CommandError(f"config is not valid JSON: {exc}") from exc
        try:
            run = services.launch_run(
                kind=kind,
                config=values,
                snapshot=DatasetSnapshot.objects.filter(pk=snapshot).first(),
                base_model=base,
                reward_model_version=validation.registered_version(reward_model, "reward_model")
                if reward_model
                else None,
                queue=queue,
                num_processes=processes,
                name=name,
                precedence=precedence,
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"run {run.pk} queued on {queue}")
        if not wait:
            return
        while True:
            run.refresh_from_db()
            self.stdout.write("\r" + progress_bar(run), ending="")
            self.stdout.flush()
            if run.is_finished:
                break
            time.sleep(1)
        self.stdout.write("")
        if run.status == TrainingRun.Status.FAILED:
            raise CommandError(f"run {run.pk} failed:\n{run.error}")
        if run.output_model_version:
            self.stdout.write(f"registered {run.output_model_version}")
