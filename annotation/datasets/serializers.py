"""Serializers for snapshots and import jobs."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotation.models import (
    AnnotatorProfile,
    DatasetSnapshot,
    ImportJob,
    Project,
)

IMPORT_FORMATS = [
    ("prompts", "Prompts with responses"),
    ("trl", "TRL preference rows"),
    ("hh-rlhf", "HH-RLHF transcripts"),
    ("arena", "Chatbot Arena battles"),
    ("label-studio", "Label Studio export (pairwise or List + Ranker)"),
]


class SnapshotSerializer(serializers.ModelSerializer):
    download = serializers.SerializerMethodField()

    class Meta:
        model = DatasetSnapshot
        fields = ["id", "project", "principle_set", "name", "kind", "format", "filters",
                  "aggregation", "status", "progress", "row_count", "sha256", "size_bytes",
                  "per_annotator_counts", "discretion_summary", "error", "created_by",
                  "created_at", "download"]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_download(self, snapshot: DatasetSnapshot) -> str | None:
        if snapshot.status != DatasetSnapshot.Status.READY:
            return None
        return f"/api/v1/snapshots/{snapshot.pk}/download/"


class SnapshotCreateSerializer(serializers.Serializer):
    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.all())
    kind = serializers.ChoiceField(choices=DatasetSnapshot.Kind.choices)
    format = serializers.ChoiceField(
        choices=DatasetSnapshot.Format.choices, default=DatasetSnapshot.Format.JSONL
    )
    aggregation = serializers.ChoiceField(
        choices=["raw", "majority", "bradley_terry"], default="raw"
    )
    filters = serializers.DictField(
        required=False, default=dict,
        help_text="annotators, annotator_kinds, date_from, date_to, min_agreement, exclude_gold, "
        "exclude_flagged, exclude_discretion, exclude_both_bad, tie_policy, style, prompt_style, "
        "expansion, principle_set, include_rationale, principle (a principle key: chosen / "
        "rejected follow that principle's verdicts; preference only)",
    )  # fmt: skip
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    run = serializers.ChoiceField(choices=["auto", "inline", "async"], default="auto")


class ImportJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImportJob
        fields = ["id", "project", "format", "original_name", "options", "status", "stage",
                  "progress", "task_count", "judgment_count", "error", "traceback",
                  "created_by", "created_at", "finished_at"]  # fmt: skip
        read_only_fields = fields


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=IMPORT_FORMATS, default="prompts")
    annotator = serializers.CharField(max_length=140, required=False, allow_blank=True)
    annotator_kind = serializers.ChoiceField(
        choices=AnnotatorProfile.Kind.choices, default=AnnotatorProfile.Kind.HUMAN
    )
    model_ref = serializers.CharField(max_length=300, required=False, allow_blank=True)
    file_format = serializers.ChoiceField(
        choices=["jsonl", "json", "csv", "parquet"], required=False
    )
    ls_keys = serializers.CharField(
        max_length=400, required=False, allow_blank=True, help_text="prompt,left,right"
    )
