"""Launch forms built from the trainers' own config schema (fields, defaults, help, types)."""

from __future__ import annotations

import ast
import re

from django import forms

from annotation.models import DatasetSnapshot
from models_registry.models import ModelVersion
from training import trainers, validation
from training.models import TrainingRun

TRI_STATE = [("", "auto"), ("true", "on"), ("false", "off")]


def _config_field(spec: dict) -> forms.Field:
    """A form field for one config field, chosen by its declared type."""
    kind, default, help_text = spec["type"], spec["default"], spec["help"]
    optional = kind.endswith("| None")
    common = {"required": False, "help_text": help_text, "initial": default}
    if kind.startswith("Literal["):
        options = ast.literal_eval("[" + kind[len("Literal[") : -1] + "]")
        return forms.ChoiceField(choices=[(o, o) for o in options], **common)
    if re.match(r"^(list|dict)\[", kind):
        return forms.JSONField(**common)
    base = kind.removesuffix(" | None")
    if base == "bool":
        if optional:
            return forms.TypedChoiceField(
                choices=TRI_STATE,
                coerce=lambda v: {"true": True, "false": False}.get(v),
                empty_value=None,
                **{**common, "initial": {True: "true", False: "false"}.get(default, "")},
            )
        return forms.BooleanField(**common)
    bounds = {"min_value": spec["minimum"], "max_value": spec["maximum"]}
    if base == "int":
        return forms.IntegerField(**bounds, **common)
    if base == "float":
        return forms.FloatField(**bounds, **common)
    return forms.CharField(**common)


class LaunchForm(forms.Form):
    """Inputs of a run plus every config field of its kind (validated by the trainer schema)."""

    name = forms.CharField(required=False, max_length=200)
    snapshot = forms.ModelChoiceField(
        queryset=DatasetSnapshot.objects.filter(status="ready").select_related("project")
    )
    base_model = forms.CharField(
        required=False,
        initial="builtin:tiny",
        max_length=validation.BASE_MODEL_MAX_CHARS,
        help_text="builtin:tiny, a registered name@version, a hub id (org/name) or a path under "
        "a model root. Ignored when a version is chosen.",
    )
    base_model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.select_related("registered_model"), required=False
    )
    reward_model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.filter(registered_model__kind="reward").select_related(
            "registered_model"
        ),
        required=False,
    )
    queue = forms.ChoiceField(choices=TrainingRun.Queue.choices, initial="cpu")
    num_processes = forms.IntegerField(min_value=1, initial=1)

    def __init__(self, kind: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.config_names = []
        for spec in trainers.describe_fields(kind, validation.limits()):
            self.fields[f"config_{spec['name']}"] = _config_field(spec)
            self.config_names.append(spec["name"])

    def reject(self, error: validation.LaunchRejected) -> None:
        """Show a rejected launch beside the field it names (``config.x.y`` → ``config_x``)."""
        name = error.field.replace("config.", "config_", 1).split(".")[0]
        self.add_error(name if name in self.fields else None, str(error))

    def config(self) -> dict:
        """Config values the user set (empty fields fall back to the schema's defaults)."""
        values = {}
        for name in self.config_names:
            value = self.cleaned_data.get(f"config_{name}")
            if value not in (None, ""):
                values[name] = value
        return values

    def config_fields(self):
        return [self[f"config_{name}"] for name in self.config_names]

    def input_fields(self):
        return [self[name] for name in self.fields if not name.startswith("config_")]
