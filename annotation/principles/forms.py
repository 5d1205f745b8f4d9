"""Forms of the principle-set pages: rows typed in (a formset), pasted text, a version pair.

Pasted text goes through the importers (``importers.parse_text``): the same readers as files.
"""

from __future__ import annotations

from collections import Counter

from django import forms

from annotation.errors import ImportFileError
from annotation.models import Principle, PrincipleSet
from annotation.principles.importers import KIND_BY_AUTHORITY, parse_text
from annotation.specs import PrincipleSpec

MAX_PRINCIPLES = 1000  # as the API's PrincipleSetCreateSerializer
PASTE_FORMATS = [
    ("model-spec", "OpenAI Model Spec markdown (## Title {#key authority=root})"),
    ("yaml", "YAML (a list of key / title / text / authority / priority)"),
    ("lines", "One principle per line"),
    ("json", "JSON (the same fields as YAML)"),
]


class PrincipleRowForm(forms.Form):
    """One principle as a table row; a blank title is the text's beginning (as the importers)."""

    key = forms.SlugField(
        max_length=120, help_text="Stable across versions: letters, digits, - and _."
    )
    title = forms.CharField(max_length=300, required=False)
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
    section = forms.CharField(max_length=300, required=False)
    authority = forms.ChoiceField(
        choices=Principle.Authority.choices, initial=Principle.Authority.USER
    )
    kind = forms.ChoiceField(choices=[("", "(auto)"), *Principle.Kind.choices], required=False)
    declared_priority = forms.IntegerField(
        min_value=0,
        max_value=2**31 - 1,
        required=False,
        label="Priority",
        help_text="Lower is higher; blank: the authority's rank.",
    )

    def spec(self) -> PrincipleSpec:
        data = self.cleaned_data
        return PrincipleSpec(
            key=data["key"],
            title=(data["title"] or data["text"])[:300],
            text=data["text"],
            section=data["section"],
            kind=data["kind"] or KIND_BY_AUTHORITY[data["authority"]],
            authority=data["authority"],
            declared_priority=data["declared_priority"],
        )

    @staticmethod
    def initial_for(principle: Principle) -> dict:
        fields = ("key", "title", "text", "section", "authority", "kind", "declared_priority")
        return {name: getattr(principle, name) for name in fields}


class BaseRowFormSet(forms.BaseFormSet):
    """Rows in order; blank extra rows and rows ticked for removal are left out. Duplicate keys
    are marked on each row that repeats one."""

    def kept_forms(self) -> list[PrincipleRowForm]:
        return [
            form
            for form in self.forms
            if form.cleaned_data and not (self.can_delete and self._should_delete_form(form))
        ]

    def clean(self) -> None:
        if any(self.errors):
            return
        kept = self.kept_forms()
        if not kept:
            raise forms.ValidationError("Add at least one principle.")
        counts = Counter(form.cleaned_data["key"] for form in kept)
        for form in kept:
            key = form.cleaned_data["key"]
            if counts[key] > 1:
                form.add_error("key", f"Duplicate key {key!r}: each key appears once.")

    def specs(self) -> list[PrincipleSpec]:
        return [form.spec() for form in self.kept_forms()]


def row_formset(extra: int) -> type[BaseRowFormSet]:
    return forms.formset_factory(
        PrincipleRowForm,
        formset=BaseRowFormSet,
        extra=extra,
        can_delete=True,
        max_num=MAX_PRINCIPLES,
        validate_max=True,
        absolute_max=MAX_PRINCIPLES,
    )


def with_one_more_row(data, prefix: str = "form"):
    """The posted data of a row formset with one more (blank) row: "Add a row" without JS."""
    data = data.copy()
    data[f"{prefix}-TOTAL_FORMS"] = str(int(data.get(f"{prefix}-TOTAL_FORMS") or 0) + 1)
    return data


class SetForm(forms.Form):
    """Name and description of a new set; an existing name makes its next version."""

    name = forms.CharField(
        max_length=200, help_text="An existing name creates that set's next version."
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class DescriptionForm(forms.Form):
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class PasteForm(forms.Form):
    """Principles pasted in one of the importers' formats; ``specs`` holds them once valid."""

    name = forms.CharField(
        max_length=200,
        required=False,
        help_text="Blank: the name given in the YAML. An existing name creates its next version.",
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    format = forms.ChoiceField(choices=PASTE_FORMATS, initial="model-spec")
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 14}), label="Principles")

    specs: list[PrincipleSpec]

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        try:
            self.specs, meta = parse_text(data["text"], data["format"])
        except ImportFileError as exc:
            where = f"line {exc.line}: " if exc.line is not None else ""
            self.add_error("text", f"{where}{exc.reason}")
            return data
        duplicates = sorted(k for k, n in Counter(s.key for s in self.specs).items() if n > 1)
        if duplicates:
            self.add_error("text", f"duplicate keys: {', '.join(duplicates)}")
        if len(self.specs) > MAX_PRINCIPLES:
            self.add_error("text", f"{len(self.specs)} principles: at most {MAX_PRINCIPLES}")
        data["name"] = data["name"] or str(meta.get("name", "")).strip()[:200]
        if not data["name"]:
            self.add_error("name", "Name the set (or give 'name:' in the YAML).")
        data["description"] = data["description"] or str(meta.get("description", ""))
        return data


class DiffForm(forms.Form):
    """Two versions of one set."""

    base = forms.ModelChoiceField(queryset=PrincipleSet.objects.none(), label="From")
    other = forms.ModelChoiceField(queryset=PrincipleSet.objects.none(), label="To")

    def __init__(self, *args, versions, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in ("base", "other"):
            self.fields[name].queryset = versions
            self.fields[name].label_from_instance = lambda v: f"v{v.version} ({v.status})"
