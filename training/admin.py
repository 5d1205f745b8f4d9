from django.contrib import admin

from training import models


@admin.register(models.TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "queue", "progress", "created_at"]
    list_filter = ["kind", "status", "queue"]
    readonly_fields = ["log_tail", "error", "celery_task_id"]


@admin.register(models.RunMetric)
class RunMetricAdmin(admin.ModelAdmin):
    list_display = ["run", "step", "name", "value"]
    list_filter = ["name"]
