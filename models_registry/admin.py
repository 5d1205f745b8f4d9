from django.contrib import admin

from models_registry import models


@admin.register(models.RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "created_at"]


class ModelParentInline(admin.TabularInline):
    model = models.ModelParent
    fk_name = "child"
    extra = 0


@admin.register(models.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["registered_model", "version", "stage", "sha256", "created_at"]
    list_filter = ["stage"]
    inlines = [ModelParentInline]
    readonly_fields = ["sha256", "size_bytes", "artifact_uri"]


@admin.register(models.StageChange)
class StageChangeAdmin(admin.ModelAdmin):
    list_display = ["model_version", "from_stage", "to_stage", "changed_by", "changed_at"]


@admin.register(models.GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "status", "task_count", "engine", "created_at"]
    list_filter = ["status"]
    readonly_fields = ["task_ids", "error", "celery_task_id"]
