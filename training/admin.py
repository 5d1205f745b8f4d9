from django.contrib import admin

from training import models


@admin.register(models.TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "queue", "progress", "created_at"]
    list_filter = ["kind", "status", "queue"]
    readonly_fields = ["log_tail", "error", "celery_task_id"]


@admin.register(models.WorkerNode)
class WorkerNodeAdmin(admin.ModelAdmin):
    """The workers and the GPUs they reported (``training.scheduling``)."""

    list_display = ["name", "gpu_count", "queues", "last_seen", "started_at"]
    readonly_fields = ["name", "queue", "queues", "gpus", "gpu_count", "started_at", "last_seen"]


@admin.register(models.RunMetric)
class RunMetricAdmin(admin.ModelAdmin):
    list_display = ["run", "step", "name", "value"]
    list_filter = ["name"]


@admin.register(models.JudgeJob)
class JudgeJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "template", "backend", "status", "done_items", "total_items"]
    list_filter = ["backend", "status"]
    readonly_fields = ["error"]


@admin.register(models.JudgeTemplate)
class JudgeTemplateAdmin(admin.ModelAdmin):
    """Read only: a new version is written through the API (``templates.create_version``)."""

    list_display = ["name", "version", "kind", "sha256", "created_at"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(models.JudgeRevision)
class JudgeRevisionAdmin(admin.ModelAdmin):
    """A critique job's critiques and revisions (read only: the job writes them)."""

    list_display = ["id", "job", "principle", "response", "demonstrate_task"]
    raw_id_fields = ["job", "task", "response", "revised_response", "demonstrate_task"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False
