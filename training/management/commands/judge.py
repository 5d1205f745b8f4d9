"""``manage.py judge launch|run|cancel|status|templates``: judge jobs from the shell."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotation.models import DatasetSnapshot, Project
from common.errors import DomainError
from models_registry.models import ModelVersion
from training.judges import runner, selectors, services, templates
from training.models import JudgeJob


class Command(BaseCommand):
    help = (
        "LLM judges and principle oracles (issue 19). launch: create a job (queued, or run here "
        "with --here); run ID: run (or resume) a job in this process, asking only what is "
        "missing; cancel ID; status [ID]; templates. A critique template (--template "
        "critique-revision --principle KEY) critiques and revises every response; each "
        "revision becomes a demonstrate task."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        launch = sub.add_parser("launch", help="Create a judge job.")
        launch.add_argument("--project", required=True, help="Project slug.")
        launch.add_argument("--backend", choices=JudgeJob.Backend.values, default="http")
        launch.add_argument("--base-url", help="OpenAI-compatible base URL (…/v1).")
        launch.add_argument("--model", help="Model name the endpoint serves.")
        launch.add_argument("--api-key-env", help="Environment variable that holds the key.")
        launch.add_argument("--concurrency", type=int)
        launch.add_argument("--model-version", type=int, help="Registered model version id.")
        launch.add_argument(
            "--template", default=templates.PRINCIPLE_DEFAULT, help="NAME or NAME@VERSION."
        )
        launch.add_argument("--annotator", default="", help="Model annotator name.")
        launch.add_argument("--tasks", default="", help="Comma-separated task ids (default all).")
        launch.add_argument("--snapshot", type=int, help="Judge the tasks of this snapshot.")
        launch.add_argument(
            "--principle",
            default="",
            help="Critique template: the principle key to critique and revise against.",
        )
        launch.add_argument(
            "--max-tokens", type=int, help="Critique template: longest critique or revision."
        )
        launch.add_argument("--here", action="store_true", help="Run in this process.")
        run = sub.add_parser("run", help="Run or resume a job in this process.")
        run.add_argument("job", type=int)
        cancel = sub.add_parser("cancel", help="Cancel a job.")
        cancel.add_argument("job", type=int)
        status = sub.add_parser("status", help="Jobs and their progress.")
        status.add_argument("job", type=int, nargs="?")
        sub.add_parser("templates", help="The judge templates (latest versions first).")

    def handle(self, *args, action, **options):
        try:
            getattr(self, f"_{action}")(**options)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc

    def _job(self, pk: int) -> JudgeJob:
        job = JudgeJob.objects.filter(pk=pk).first()
        if job is None:
            raise CommandError(f"no judge job {pk}")
        return job

    def _launch(self, *, project, backend, template, here, **o):
        proj = Project.objects.select_related("principle_set").filter(slug=project).first()
        if proj is None:
            raise CommandError(f"no project with slug {project!r}")
        config = {
            key: o[arg]
            for key, arg in (
                ("base_url", "base_url"),
                ("model", "model"),
                ("api_key_env", "api_key_env"),
                ("concurrency", "concurrency"),
                ("max_tokens", "max_tokens"),
            )
            if o.get(arg) is not None
        }
        version = None
        if o["model_version"]:
            version = ModelVersion.objects.select_related("registered_model").filter(
                pk=o["model_version"]
            )
            version = version.first()
            if version is None:
                raise CommandError(f"no model version {o['model_version']}")
        try:
            tasks = [int(t) for t in o["tasks"].split(",") if t.strip()]
        except ValueError as exc:
            raise CommandError("--tasks: comma-separated integers") from exc
        snapshot = None
        if o["snapshot"]:
            snapshot = DatasetSnapshot.objects.filter(pk=o["snapshot"]).first()
            if snapshot is None:
                raise CommandError(f"no snapshot {o['snapshot']}")
        job = services.launch_job(
            project=proj,
            snapshot=snapshot,
            backend=backend,
            config=config,
            template=selectors.template_named(template),
            model_version=version,
            task_ids=tasks,
            annotator=o["annotator"],
            principle=o["principle"],
            enqueue=not here,
        )
        self.stdout.write(f"judge job {job.pk} ({job.annotator.username}) created")
        if here:
            self._run(job=job.pk)

    def _run(self, *, job, **_):
        record = self._job(job)
        if record.status != JudgeJob.Status.QUEUED:
            services.resume(record, enqueue=False)
        runner.execute(record.pk)
        self._status(job=record.pk)
        record.refresh_from_db()
        if record.status == JudgeJob.Status.FAILED:
            raise CommandError(record.error.splitlines()[0] if record.error else "failed")

    def _cancel(self, *, job, **_):
        record = services.request_cancel(self._job(job))
        self.stdout.write(f"judge job {record.pk}: {record.status}")

    def _status(self, *, job=None, **_):
        jobs = [self._job(job)] if job else list(selectors.jobs()[:50])
        for j in jobs:
            j.refresh_from_db()
            self.stdout.write(
                f"{j.pk}\t{j.status}\t{j.done_items}/{j.total_items}\t{j.verdicts} {_made(j)}\t"
                f"{j.prompt_tokens + j.completion_tokens} tokens\t${j.estimated_cost:.4f}\t"
                f"{j.annotator.username}\t{j.error.splitlines()[0] if j.error else ''}"
            )

    def _templates(self, **_):
        templates.ensure_defaults()
        for t in selectors.templates():
            self.stdout.write(f"{t.name}@{t.version}\t{t.kind}\t{t.sha256[:12]}\t{t.options}")


def _made(job: JudgeJob) -> str:
    return "revisions" if job.principle_id else "verdicts"
