"""The staff page's launch form (checked again by ``services.launch_job``)."""

from __future__ import annotations

from django import forms

from annotation.models import DatasetSnapshot, Project
from models_registry.models import ModelVersion
from training.models import JudgeJob, JudgeTemplate


class JudgeLaunchForm(forms.Form):
    project = forms.ModelChoiceField(queryset=Project.objects.filter(is_active=True))
    template = forms.ModelChoiceField(
        queryset=JudgeTemplate.objects.order_by("name", "-version"),
        required=False,
        help_text="Default: the latest principle-verdict template.",
    )
    backend = forms.ChoiceField(choices=JudgeJob.Backend.choices)
    base_url = forms.URLField(
        required=False, assume_scheme="https", help_text="HTTP: e.g. http://127.0.0.1:8000/v1"
    )
    model = forms.CharField(required=False, max_length=200, help_text="HTTP: served model name.")
    api_key_env = forms.CharField(
        required=False, max_length=100, help_text="HTTP: the NAME of the key's variable."
    )
    concurrency = forms.IntegerField(required=False, min_value=1, help_text="HTTP: default 8.")
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.select_related("registered_model").order_by("-id"),
        required=False,
        help_text="Registered model backend.",
    )
    snapshot = forms.ModelChoiceField(
        queryset=DatasetSnapshot.objects.order_by("-id"),
        required=False,
        help_text="Optional: judge only the tasks of this snapshot.",
    )
    annotator = forms.CharField(required=False, max_length=150, help_text="Default: derived.")
    principle = forms.CharField(
        required=False,
        max_length=100,
        help_text="Critique template: the principle key to critique and revise against.",
    )
    max_tokens = forms.IntegerField(
        required=False, min_value=1, help_text="Critique template: default 512."
    )

    def config(self) -> dict:
        data = self.cleaned_data
        keys: tuple[str, ...] = ("max_tokens",)
        if data["backend"] == JudgeJob.Backend.HTTP:
            keys += ("base_url", "model", "api_key_env", "concurrency")
        return {k: data[k] for k in keys if data.get(k) not in (None, "")}
