"""django-filter FilterSets for the REST API list endpoints."""

from __future__ import annotations

import django_filters as df

from annotation.models import (
    Assignment,
    DatasetSnapshot,
    Demonstration,
    ImportJob,
    Judgment,
    Principle,
    PrincipleSet,
    Project,
    Prompt,
    Response,
    Task,
    Webhook,
    WebhookDelivery,
)
from common.filters import FilterSet, IdFilter, IntegerFilter


class ProjectFilter(FilterSet):
    class Meta:
        model = Project
        fields = ["is_active", "slug", "principle_set"]


class PrincipleSetFilter(FilterSet):
    class Meta:
        model = PrincipleSet
        fields = ["name", "status", "version", "parent"]


class PrincipleFilter(FilterSet):
    class Meta:
        model = Principle
        fields = ["principle_set", "key", "kind", "authority"]


class PromptFilter(FilterSet):
    class Meta:
        model = Prompt
        fields = ["project", "external_id"]


class ResponseFilter(FilterSet):
    project = IdFilter(field_name="prompt__project")

    class Meta:
        model = Response
        fields = ["prompt", "project"]


class TaskFilter(FilterSet):
    min_submitted = IntegerFilter(field_name="submitted_count", lookup_expr="gte")
    max_submitted = IntegerFilter(field_name="submitted_count", lookup_expr="lte")

    class Meta:
        model = Task
        fields = ["project", "kind", "is_gold", "prompt"]


class AssignmentFilter(FilterSet):
    project = IdFilter(field_name="task__project")

    class Meta:
        model = Assignment
        fields = ["project", "task", "state"]


class JudgmentFilter(FilterSet):
    project = IdFilter(field_name="task__project")
    created_after = df.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = df.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")
    annotator_kind = df.ChoiceFilter(
        field_name="annotator__profile__kind", choices=[("human", "human"), ("model", "model")]
    )

    class Meta:
        model = Judgment
        fields = ["project", "task", "annotator", "origin", "both_bad", "discretion",
                  "strength", "created_after", "created_before", "annotator_kind"]  # fmt: skip


class DemonstrationFilter(FilterSet):
    project = IdFilter(field_name="prompt__project")

    class Meta:
        model = Demonstration
        fields = ["project", "task", "prompt"]


class SnapshotFilter(FilterSet):
    class Meta:
        model = DatasetSnapshot
        fields = ["project", "kind", "format", "status", "aggregation"]


class ImportJobFilter(FilterSet):
    class Meta:
        model = ImportJob
        fields = ["project", "status", "format"]


class WebhookFilter(FilterSet):
    class Meta:
        model = Webhook
        fields = ["project", "is_active"]


class WebhookDeliveryFilter(FilterSet):
    class Meta:
        model = WebhookDelivery
        fields = ["status", "event"]
