"""Launch forms built from the trainers' own config schema (fields, defaults, help, types)."""

from __future__ import annotations

import ast
import re

from django import forms

from annotation.datasets.exports.records import AGGREGATIONS
from annotation.datasets.forms import user_ids
from annotation.models import AnnotatorProfile, DatasetSnapshot, Project
from models_registry.models import ModelVersion
from training import groups, trainers, validation
from training.models import RunGroup, TrainingRun

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


PRECEDENCE_KINDS = ("grpo", "ppo")
#: kinds whose base is a policy (a causal LM), never a reward model
POLICY_KINDS = ("sft", "dpo", "kto", "orpo", "grpo", "ppo")
#: kinds whose rewards may name a reward model version
REWARD_MODEL_KINDS = ("grpo", "ppo")
GRPO_KL_NOTE = (
    "GRPO logs no KL by default: beta = 0 loads no reference model, so there is no KL to the "
    "base to penalise or report. Set beta > 0 to log it (and pay for a reference model)."
)


class PrecedenceFields(forms.Form):
    """Train to a precedence of principles (GRPO / PPO): the fields a launch form adds."""

    precedence_group = forms.ModelChoiceField(
        queryset=RunGroup.objects.filter(status=RunGroup.Status.LAUNCHED),
        required=False,
        label="Principle reward models",
        help_text='A "reward per principle" group: the policy is rewarded by its models, '
        "mixed by the weights below (leave empty for an ordinary run).",
    )
    weights_from = forms.ChoiceField(
        choices=[
            ("declared", "the principle set's declared precedence"),
            ("revealed", "the revealed priorities of annotators"),
            ("explicit", "explicit weights"),
        ],
        initial="declared",
        required=False,
    )
    precedence_weights = forms.JSONField(
        required=False, label="Weights", help_text='Explicit weights, e.g. {"p": 0.7, "q": 0.3}.'
    )
    precedence_annotators = forms.CharField(
        required=False,
        max_length=2000,
        label="Annotators",
        help_text="Revealed: usernames whose plurality's fitted priorities give the ranking.",
    )


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
    note = ""  # a word about the kind, shown above the fields

    def __init__(self, kind: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.filter_by_kind(kind)
        if kind in PRECEDENCE_KINDS:
            self.fields.update(PrecedenceFields().fields)
        self.config_names = []
        for spec in trainers.describe_fields(kind, validation.limits()):
            self.fields[f"config_{spec['name']}"] = _config_field(spec)
            self.config_names.append(spec["name"])

    def filter_by_kind(self, kind: str) -> None:
        """Offer only what fits the kind: its snapshot kind, policy (causal LM) versions as the
        base of a policy run, and a reward model only where the rewards may use one."""
        wanted = validation.SNAPSHOT_KIND_FOR[kind]
        if wanted:
            field = self.fields["snapshot"]
            field.queryset = field.queryset.filter(kind__in=wanted)
            field.help_text = f"A ready {' or '.join(wanted)} snapshot."
        if kind in POLICY_KINDS:
            field = self.fields["base_model_version"]
            field.queryset = field.queryset.exclude(registered_model__kind="reward")
            field.help_text = "A registered policy (causal LM) version to start from."
        if kind not in REWARD_MODEL_KINDS:
            del self.fields["reward_model_version"]
        if kind == "grpo":
            self.note = GRPO_KL_NOTE

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

    def precedence(self) -> dict | None:
        """The ``precedence`` request, when a group of principle reward models is chosen."""
        data = self.cleaned_data
        group = data.get("precedence_group")
        if group is None:
            return None
        request: dict = {"reward_group": group.pk, "weights_from": data["weights_from"]}
        if data["weights_from"] == "explicit":
            request["weights"] = data.get("precedence_weights")
        if data["weights_from"] == "revealed":
            names = re.split(r"[\s,]+", data.get("precedence_annotators") or "")
            request["annotators"] = [name for name in names if name]
        return request

    def config_fields(self):
        return [self[f"config_{name}"] for name in self.config_names]

    def input_fields(self):
        return [self[name] for name in self.fields if not name.startswith("config_")]


class ResumeForm(forms.Form):
    """Resume a cancelled or failed run: optionally to a higher step (extend)."""

    max_steps = forms.IntegerField(required=False, min_value=1)


class PrincipleRewardsForm(LaunchForm):
    """ "Reward per principle": the verdict source and the minimum pairs, then a reward run's
    inputs and config (the snapshot is built per principle, so it is not asked)."""

    project = forms.ModelChoiceField(
        queryset=Project.objects.filter(is_active=True).select_related("principle_set")
    )
    annotator_kinds = forms.MultipleChoiceField(
        choices=AnnotatorProfile.Kind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Verdicts from",
        help_text="Whose principle verdicts label the pairs (none ticked: everyone's), e.g. "
        "the human annotators, or a model annotator such as a principle oracle.",
    )
    annotators = forms.CharField(
        max_length=2000,
        required=False,
        help_text="Only these usernames' verdicts (comma-separated; empty: everyone).",
    )
    aggregation = forms.ChoiceField(
        choices=[(a, a.replace("_", " ")) for a in AGGREGATIONS],
        initial="raw",
        help_text="raw: a pair per verdict; majority / bradley terry: one per task, by plurality.",
    )
    exclude_flagged = forms.BooleanField(required=False, initial=True)
    min_pairs = forms.IntegerField(
        min_value=1,
        max_value=groups.MIN_PAIRS_MAX,
        initial=groups.MIN_PAIRS_DEFAULT,
        help_text="A principle with fewer pairs gets no reward model (the group page says so).",
    )
    field_order = ["name", "project", "annotator_kinds", "annotators", "aggregation",
                   "exclude_flagged", "min_pairs"]  # fmt: skip

    def __init__(self, *args, **kwargs) -> None:
        super().__init__("reward", *args, **kwargs)
        del self.fields["snapshot"]
        self.order_fields(self.field_order)

    def clean_annotators(self) -> list[int]:
        return user_ids(self.cleaned_data["annotators"])

    def filters(self) -> dict:
        """The snapshot filters every principle's snapshot is built with."""
        data = self.cleaned_data
        out: dict = {"exclude_flagged": data["exclude_flagged"]}
        if data["annotator_kinds"]:
            out["annotator_kinds"] = list(data["annotator_kinds"])
        if data["annotators"]:
            out["annotators"] = data["annotators"]
        return out
