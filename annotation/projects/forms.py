"""The project forms of the browser: create, and edit settings (the API's limits)."""

from __future__ import annotations

from django import forms

from annotation.models import PrincipleSet, Project, ProjectMembership
from annotation.projects.members import MAX_INVITATION_DAYS

DAY_S = 24 * 3600
SETTINGS_FIELDS = [
    "name", "description", "guidelines", "task_kinds", "annotations_per_task", "lease_seconds",
    "edit_window_seconds", "gold_ratio", "both_bad_creates_demonstration", "randomize_positions",
]  # fmt: skip


class ProjectSettingsForm(forms.ModelForm):
    """What may change once a project exists (its slug and principle-set version may not)."""

    task_kinds = forms.MultipleChoiceField(
        choices=Project.TaskKind.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[Project.TaskKind.COMPARE],
        help_text="The kinds of task this project serves.",
    )
    annotations_per_task = forms.IntegerField(
        min_value=1,
        max_value=100,
        initial=1,
        label="Overlap",
        help_text="Judgments wanted per task, each by a different annotator.",
    )
    lease_seconds = forms.IntegerField(
        min_value=1,
        max_value=7 * DAY_S,
        initial=15 * 60,
        label="Lease length (seconds)",
        help_text="How long a task stays reserved for the annotator who opened it.",
    )
    edit_window_seconds = forms.IntegerField(
        min_value=0,
        max_value=30 * DAY_S,
        initial=10 * 60,
        label="Edit window (seconds)",
        help_text="How long an annotator may still change a submitted judgment.",
    )
    gold_ratio = forms.FloatField(
        min_value=0.0,
        max_value=1.0,
        initial=0.0,
        label="Gold share",
        help_text="Share of tasks (0 to 1) served as gold questions with a known answer.",
    )

    class Meta:
        model = Project
        fields = SETTINGS_FIELDS
        labels = {
            "both_bad_creates_demonstration": "Both bad → demonstration follow-up",
            "randomize_positions": "Shuffle response positions per annotator",
        }
        help_texts = {
            "guidelines": "Markdown, shown to annotators beside every task.",
            "both_bad_creates_demonstration": (
                "When an annotator marks both responses bad, a task asking for a written "
                "answer follows."
            ),
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "guidelines": forms.Textarea(attrs={"rows": 12}),
        }


class ProjectCreateForm(ProjectSettingsForm):
    """A new project: its settings, plus the slug and the published principle-set version its
    judgments are pinned to."""

    principle_set = forms.ModelChoiceField(
        queryset=PrincipleSet.objects.filter(status=PrincipleSet.Status.PUBLISHED).order_by(
            "name", "-version"
        ),
        label="Principle set version",
        help_text="Published versions only; a project's judgments stay pinned to it.",
    )

    class Meta(ProjectSettingsForm.Meta):
        fields = ["name", "slug", "principle_set", *SETTINGS_FIELDS[1:]]
        widgets = {
            **ProjectSettingsForm.Meta.widgets,
            "name": forms.TextInput(attrs={"autofocus": True}),
        }
        help_texts = {
            **ProjectSettingsForm.Meta.help_texts,
            "slug": "In the project's addresses; letters, digits, - and _; fixed once created.",
        }


MEMBER_ROLES = [(value, label) for value, label in ProjectMembership.Role.choices]


class MemberCapsForm(forms.Form):
    """A member's role and caps (empty: no cap)."""

    role = forms.ChoiceField(
        choices=MEMBER_ROLES, initial=ProjectMembership.Role.ANNOTATOR, label="Role"
    )
    max_judgments = forms.IntegerField(
        min_value=0, max_value=10**9, required=False, label="Max judgments"
    )
    max_per_day = forms.IntegerField(
        min_value=0, max_value=10**9, required=False, label="Max per day"
    )


class MemberAddForm(MemberCapsForm):
    """Add a member by username or e-mail."""

    who = forms.CharField(max_length=254, label="Username or e-mail")
    field_order = ["who", "role", "max_judgments", "max_per_day"]


class InvitationForm(forms.Form):
    invite_role = forms.ChoiceField(
        choices=MEMBER_ROLES, initial=ProjectMembership.Role.ANNOTATOR, label="Role"
    )
    expires_days = forms.IntegerField(
        min_value=1, max_value=MAX_INVITATION_DAYS, initial=7, label="Expires in days"
    )
