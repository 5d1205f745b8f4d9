"""Django admin. Published principle sets are read-only here too (edits go through forks)."""

from django.contrib import admin

from annotation import models


class PrincipleInline(admin.TabularInline):
    model = models.Principle
    extra = 0
    fields = ["position", "key", "title", "authority", "kind", "declared_priority", "section"]

    def has_change_permission(self, request, obj=None):
        return obj is None or not obj.is_published

    has_add_permission = has_delete_permission = has_change_permission


@admin.register(models.PrincipleSet)
class PrincipleSetAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "status", "published_at", "parent"]
    list_filter = ["status"]
    search_fields = ["name"]
    inlines = [PrincipleInline]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.is_published:
            return [f.name for f in self.model._meta.fields]
        return ["status", "published_at"]


@admin.register(models.AnnotatorProfile)
class AnnotatorProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "kind", "role", "model_ref"]
    list_filter = ["kind", "role"]


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "principle_set", "annotations_per_task", "task_count"]
    prepopulated_fields = {"slug": ["name"]}


class TaskResponseInline(admin.TabularInline):
    model = models.TaskResponse
    extra = 0
    raw_id_fields = ["response"]


@admin.register(models.Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "is_gold", "submitted_count"]
    list_filter = ["project", "kind", "is_gold"]
    raw_id_fields = ["prompt", "origin_judgment"]
    inlines = [TaskResponseInline]


@admin.register(models.Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "external_id", "created_at"]
    list_filter = ["project"]
    search_fields = ["external_id"]


@admin.register(models.Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "source"]
    raw_id_fields = ["prompt", "author"]


@admin.register(models.Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "annotator", "state", "leased_until"]
    list_filter = ["state"]
    raw_id_fields = ["task", "annotator"]


class PrincipleVerdictInline(admin.TabularInline):
    model = models.PrincipleVerdict
    extra = 0
    raw_id_fields = ["principle", "preferred_response"]


@admin.register(models.Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "annotator", "strength", "both_bad", "discretion", "flagged",
                    "created_at"]  # fmt: skip
    list_filter = ["both_bad", "discretion", "flagged", "origin"]
    raw_id_fields = ["task", "annotator", "assignment", "flagged_by"]
    inlines = [PrincipleVerdictInline]


@admin.register(models.Demonstration)
class DemonstrationAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "annotator", "created_at"]
    raw_id_fields = ["prompt", "task", "annotator", "based_on"]


@admin.register(models.DatasetSnapshot)
class DatasetSnapshotAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "format", "status", "row_count", "sha256"]
    list_filter = ["kind", "status"]
    readonly_fields = ["sha256", "size_bytes", "row_count", "artifact_path"]
