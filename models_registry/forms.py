"""Forms of the registry pages (stage changes, re-profiling, generation jobs)."""

from __future__ import annotations

from django import forms

from annotation.models import Project
from models_registry import services
from models_registry.models import ModelVersion, RegisteredModel


class StageForm(forms.Form):
    stage = forms.ChoiceField(choices=ModelVersion.Stage.choices)
    note = forms.CharField(required=False, max_length=2000, widget=forms.TextInput)
    archive_existing = forms.BooleanField(
        required=False, help_text="Archive the model's other versions in that stage."
    )


class ProfileForm(forms.Form):
    probe_project = forms.ModelChoiceField(
        Project.objects.order_by("name"),
        required=False,
        to_field_name="slug",
        empty_label="held-out tasks of the training snapshot's project",
    )
    method = forms.ChoiceField(choices=[(m, m) for m in services.PROFILE_METHODS])
    reward_model = forms.ModelChoiceField(
        ModelVersion.objects.filter(registered_model__kind=RegisteredModel.Kind.REWARD)
        .select_related("registered_model")
        .order_by("registered_model__name", "-version"),
        required=False,
        empty_label="—",
    )


def _policies():
    return (
        ModelVersion.objects.exclude(registered_model__kind=RegisteredModel.Kind.REWARD)
        .select_related("registered_model")
        .order_by("registered_model__name", "-version")
    )


class GenerateForm(forms.Form):
    project = forms.ModelChoiceField(Project.objects.order_by("name"), to_field_name="slug")
    models = forms.ModelMultipleChoiceField(_policies(), help_text="Registered policies.")
    samples_per_model = forms.IntegerField(min_value=1, max_value=16, initial=2)
    max_prompts = forms.IntegerField(min_value=1, max_value=100_000, initial=50)
    max_new_tokens = forms.IntegerField(min_value=1, max_value=4096, initial=48)
    temperature = forms.FloatField(min_value=0.01, max_value=5.0, initial=1.0)
    top_p = forms.FloatField(min_value=0.01, max_value=1.0, initial=1.0)
    seed = forms.IntegerField(min_value=0, initial=0)
    engine = forms.ChoiceField(choices=[(e, e) for e in services.ENGINES])
    queue = forms.ChoiceField(choices=[(q, q) for q in services.GENERATION_QUEUES])
