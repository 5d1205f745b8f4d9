"""REST API for judges (staff): judge jobs (list, read, launch, cancel, resume) and judge
templates (list, read, write a new version). Thin over ``training.judges.services`` /
``templates``; registered in ``config.api_urls``."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.routers import BaseRouter

from annotation.models import DatasetSnapshot, Project
from annotation.permissions import STAFF
from common.api import ApiViewSet, validated
from common.filters import FilterSet
from models_registry.models import ModelVersion
from training.judges import selectors, services, templates
from training.models import JudgeJob, JudgeRevision, JudgeTemplate


class JudgeTemplateSerializer(serializers.ModelSerializer):
    class Meta:
        model = JudgeTemplate
        fields = ["id", "name", "version", "kind", "system", "user", "revision", "options",
                  "sha256", "created_at"]  # fmt: skip
        read_only_fields = fields


class TemplateWriteSerializer(serializers.Serializer):
    """A new version of a template (the latest one, unchanged, when the content is the same)."""

    name = serializers.SlugField(max_length=80)
    kind = serializers.ChoiceField(choices=JudgeTemplate.Kind.choices)
    system = serializers.CharField(max_length=20_000)
    user = serializers.CharField(
        max_length=20_000,
        help_text="With {prompt}, {response_a}, {response_b} (and {principle} for the "
        "principle kind), or {prompt}, {response}, {principle} (critique kind: the critique "
        "request); other braces doubled.",
    )
    options = serializers.ListField(
        child=serializers.CharField(max_length=20),
        max_length=3,
        required=False,
        default=list,
        help_text="2 or 3 answer labels; none for the critique kind.",
    )
    revision = serializers.CharField(
        max_length=20_000,
        required=False,
        default="",
        help_text="Critique kind: the follow-up request for the revised response.",
    )


class JudgeJobSerializer(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username", read_only=True)
    principle = serializers.CharField(source="principle.key", read_only=True, default=None)
    progress = serializers.FloatField(read_only=True)
    estimated_cost = serializers.FloatField(read_only=True)

    class Meta:
        model = JudgeJob
        fields = ["id", "name", "project", "template", "backend", "model_version", "config",
                  "task_ids", "snapshot", "annotator", "principle", "status", "total_items",
                  "done_items",
                  "progress", "requests", "retries", "prompt_tokens", "completion_tokens",
                  "estimated_cost", "verdicts", "cancel_requested", "error", "created_at",
                  "started_at", "finished_at"]  # fmt: skip
        read_only_fields = fields


class RevisionSerializer(serializers.ModelSerializer):
    principle = serializers.CharField(source="principle.key", read_only=True)

    class Meta:
        model = JudgeRevision
        fields = ["id", "task", "response", "principle", "critique", "revision",
                  "revised_response", "demonstrate_task", "prompt_tokens",
                  "completion_tokens"]  # fmt: skip
        read_only_fields = fields


class PrincipleAgreementSerializer(serializers.Serializer):
    principle = serializers.CharField()
    title = serializers.CharField()
    n = serializers.IntegerField(help_text="Units: task × human annotator, both with a verdict.")
    agreement = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's κ, oracle vs humans.")


class LaunchSerializer(serializers.Serializer):
    """What ``POST /judge-jobs/`` takes; ``config`` is checked by the backend's rules."""

    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.all())
    backend = serializers.ChoiceField(choices=JudgeJob.Backend.choices)
    config = serializers.DictField(
        required=False,
        default=dict,
        help_text="http: base_url, model, api_key_env (a variable name), concurrency, "
        "max_retries, top_logprobs, max_requests_per_s (0: unpaced), price_prompt_per_m, "
        "price_completion_per_m (per million tokens). "
        "model: batch_size, queue. Critique template: max_tokens (default 512).",
    )
    template = serializers.PrimaryKeyRelatedField(
        queryset=JudgeTemplate.objects.all(), required=False, allow_null=True
    )
    model_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.select_related("registered_model"),
        required=False,
        allow_null=True,
    )
    task_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**62),
        required=False,
        default=list,
        max_length=1_000_000,
    )
    snapshot = serializers.PrimaryKeyRelatedField(
        queryset=DatasetSnapshot.objects.select_related("project"),
        required=False,
        allow_null=True,
        help_text="Judge the tasks of this snapshot's frozen judgment set.",
    )
    annotator = serializers.CharField(required=False, default="", max_length=150)
    name = serializers.CharField(required=False, default="", max_length=200)
    principle = serializers.CharField(
        required=False,
        default="",
        max_length=100,
        help_text="Critique template: the key of the principle to critique and revise against.",
    )


class JudgeJobFilter(FilterSet):
    class Meta:
        model = JudgeJob
        fields = ["project", "status", "backend", "template"]


class JudgeJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Judge jobs (staff)."""

    queryset = selectors.jobs()
    serializer_class = JudgeJobSerializer
    filterset_class = JudgeJobFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]
    default_roles = STAFF

    @extend_schema(request=LaunchSerializer, responses={201: JudgeJobSerializer})
    def create(self, request):
        """Launch a job over the project's two-response compare tasks (or ``task_ids``): every
        pair × principle (principle template; the default) or pair (preference template), both
        orders; or, with a critique template and ``principle``, a critique and a revision of
        every response (each revision a demonstrate task). 400 naming the bad field; 503 when
        the broker cannot take it."""
        data = validated(LaunchSerializer, request.data)
        job = services.launch_job(**data, created_by=request.user)
        return Response(JudgeJobSerializer(job).data, status=201)

    @extend_schema(request=None, responses=JudgeJobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """A queued job is cancelled at once; a running one stops after its current chunk."""
        return Response(JudgeJobSerializer(services.request_cancel(self.get_object())).data)

    @extend_schema(responses=PrincipleAgreementSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def agreement(self, request, pk=None):
        """The oracle's agreement with the human annotators' verdicts, per principle."""
        rows = selectors.human_agreement(self.get_object())
        return Response(PrincipleAgreementSerializer(rows, many=True).data)

    @extend_schema(responses=RevisionSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[])
    def revisions(self, request, pk=None):
        """A critique job's critiques and revisions (with their demonstrate tasks), paginated."""
        rows = selectors.revisions(self.get_object())
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(RevisionSerializer(page, many=True).data)

    @extend_schema(request=None, responses=JudgeJobSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Queue the job again: it asks only the questions that have no answer yet."""
        return Response(JudgeJobSerializer(services.resume(self.get_object())).data)


class JudgeTemplateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Judge templates, every version (staff); the defaults exist on first listing."""

    queryset = selectors.templates()
    serializer_class = JudgeTemplateSerializer
    default_roles = STAFF

    def list(self, request, *args, **kwargs):
        templates.ensure_defaults()
        return super().list(request, *args, **kwargs)

    @extend_schema(request=TemplateWriteSerializer, responses={201: JudgeTemplateSerializer})
    def create(self, request):
        """Write a new version (400 when a placeholder is missing or malformed)."""
        data = validated(TemplateWriteSerializer, request.data)
        template = templates.create_version(**data, created_by=request.user)
        return Response(JudgeTemplateSerializer(template).data, status=201)


def register(router: BaseRouter) -> None:
    router.register("judge-jobs", JudgeJobViewSet, basename="judgejob")
    router.register("judge-templates", JudgeTemplateViewSet, basename="judgetemplate")
