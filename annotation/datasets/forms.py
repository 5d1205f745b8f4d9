"""Forms of the staff dataset pages. They only gather the inputs: what a snapshot may be is
decided by ``filters.prepare`` (through ``snapshots.create_snapshot``), as for the API."""

from __future__ import annotations

import re

from django import forms
from django.contrib.auth import get_user_model

from annotation.datasets.exports.records import (
    AGGREGATIONS,
    EXPANSIONS,
    PROMPT_STYLES,
    STYLES,
    TIE_POLICIES,
)
from annotation.datasets.selectors import TASK_STATUSES
from annotation.models import AnnotatorProfile, DatasetSnapshot, Project


def _choices(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(value, value.replace("_", " ")) for value in values]


EVERY_PRINCIPLE = "*"


def user_ids(text: str) -> list[int]:
    """User ids of the usernames in ``text`` (separated by spaces or commas); an unknown name
    is a validation error naming it."""
    names = [n for n in re.split(r"[\s,]+", text) if n]
    users = dict(get_user_model().objects.filter(username__in=names).values_list("username", "pk"))
    unknown = [n for n in names if n not in users]
    if unknown:
        raise forms.ValidationError(f"no such user: {', '.join(unknown)}")
    return [users[n] for n in names]


class SnapshotForm(forms.Form):
    """The fields of ``POST /api/v1/snapshots/`` (``SnapshotCreateSerializer`` and its filters)."""

    name = forms.CharField(max_length=200, required=False)
    kind = forms.ChoiceField(choices=DatasetSnapshot.Kind.choices, initial="preference")
    format = forms.ChoiceField(choices=DatasetSnapshot.Format.choices, initial="jsonl")
    aggregation = forms.ChoiceField(choices=_choices(AGGREGATIONS), initial="raw")
    principle_set = forms.ChoiceField(
        required=False,
        help_text="A snapshot reads the judgments pinned to the project's principle set.",
    )
    annotator_kinds = forms.MultipleChoiceField(
        choices=AnnotatorProfile.Kind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every kind.",
    )
    annotators = forms.CharField(
        max_length=2000, required=False, help_text="Usernames, comma-separated (empty: everyone)."
    )
    date_from = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    date_to = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    min_agreement = forms.FloatField(
        required=False,
        help_text="0–1: leave out rows whose annotators agree less.",
        widget=forms.NumberInput(attrs={"step": "0.05", "min": "0", "max": "1"}),
    )
    exclude_flagged = forms.BooleanField(required=False, initial=True)
    exclude_gold = forms.BooleanField(required=False)
    exclude_discretion = forms.BooleanField(required=False)
    exclude_both_bad = forms.BooleanField(required=False)
    include_rationale = forms.BooleanField(required=False, initial=True)
    tie_policy = forms.ChoiceField(choices=_choices(TIE_POLICIES), initial="drop")
    style = forms.ChoiceField(choices=_choices(STYLES), initial="conversational")
    prompt_style = forms.ChoiceField(choices=_choices(PROMPT_STYLES), initial="explicit")
    expansion = forms.ChoiceField(choices=_choices(EXPANSIONS), initial="all_pairs")

    principle = forms.ChoiceField(
        required=False,
        label="Chosen / rejected by",
        help_text="A principle's verdicts instead of the overall ranking (preference only; "
        "pairs it calls a tie or not applicable are left out).",
    )

    FLAGS = ("exclude_flagged", "exclude_gold", "exclude_discretion", "exclude_both_bad",
             "include_rationale", "tie_policy", "style", "prompt_style", "expansion",
             "principle_set")  # fmt: skip

    def __init__(self, project: Project, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        label = project.principle_set.label
        self.fields["principle_set"].choices = [(label, label)]
        self.fields["principle_set"].initial = label
        keys = project.principle_set.principles.order_by("position").values_list("key", "title")
        self.fields["principle"].choices = [
            ("", "the overall ranking"),
            (EVERY_PRINCIPLE, "each principle: one snapshot per principle"),
            *((key, f"principle {key}: {title}") for key, title in keys),
        ]

    def clean(self) -> dict:
        data = super().clean()
        if data.get("principle") and data.get("kind") != "preference":
            self.add_error("principle", "a principle's pairs are a preference dataset")
        return data

    def clean_annotators(self) -> list[int]:
        return user_ids(self.cleaned_data["annotators"])

    def filters(self) -> dict:
        """The ``filters`` object of the API request."""
        data = self.cleaned_data
        out = {key: data[key] for key in self.FLAGS}
        if data["annotators"]:
            out["annotators"] = data["annotators"]
        if data["annotator_kinds"]:
            out["annotator_kinds"] = list(data["annotator_kinds"])
        if data["min_agreement"] is not None:
            out["min_agreement"] = data["min_agreement"]
        if data["principle"] and data["principle"] != EVERY_PRINCIPLE:
            out["principle"] = data["principle"]
        for key in ("date_from", "date_to"):
            if data[key]:
                out[key] = data[key].isoformat()
        return out


class TaskFilterForm(forms.Form):
    """The tasks browser's filters (GET)."""

    q = forms.CharField(required=False, max_length=200, label="Prompt text")
    status = forms.ChoiceField(choices=[("", "any"), *_choices(TASK_STATUSES)], required=False)
    flagged = forms.ChoiceField(
        choices=[("", "any"), ("yes", "has a flagged judgment"), ("no", "no flagged judgment")],
        required=False,
    )
    min_agreement = forms.FloatField(required=False, min_value=0, max_value=1)
    max_agreement = forms.FloatField(required=False, min_value=0, max_value=1)


class FlagForm(forms.Form):
    """Flag a judgment (a reason is required by ``judging.flag_judgment``) or clear its flag."""

    flagged = forms.TypedChoiceField(
        choices=[("1", "flag"), ("0", "unflag")], coerce=lambda value: value == "1"
    )
    reason = forms.CharField(required=False, widget=forms.Textarea({"rows": 2, "autofocus": True}))
