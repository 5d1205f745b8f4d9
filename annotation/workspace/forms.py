"""Workspace forms: they speak in *slots* (A, B, … as shown) and hand services response ids.

A page never carries response ids: the assignment's ``display_order`` maps slot ``i`` to its
response, so neither a response's source nor its import order can be read from the HTML.
"""

from __future__ import annotations

from django import forms

from annotation.models import Principle

SKIP_REASONS = [
    ("unclear", "The prompt or responses are unclear"),
    ("expertise", "I lack the expertise to judge this"),
    ("content", "I don't want to read this content"),
    ("broken", "Something is broken (missing or garbled text)"),
    ("other", "Other"),
]


class _Shared:
    """A field that every form instance shares instead of deep-copying it (Django copies each
    declared field per form, which cost more than cleaning the submit): for fields nothing
    changes per form."""

    def __deepcopy__(self, memo: dict) -> _Shared:
        return self


class _CharField(_Shared, forms.CharField):
    pass


class _IntegerField(_Shared, forms.IntegerField):
    pass


class _BooleanField(_Shared, forms.BooleanField):
    pass


class _TypedChoiceField(_Shared, forms.TypedChoiceField):
    pass


class _SlotForm(forms.Form):
    idempotency_key = _CharField(max_length=100, required=False)
    time_spent_ms = _IntegerField(min_value=0, max_value=2**31 - 1, required=False)

    def __init__(self, data=None, *, display_order: list[int], principles, **kwargs):
        super().__init__(data, **kwargs)
        self.display_order = list(display_order)
        self.principles: tuple[Principle, ...] = tuple(principles)

    def response_id(self, slot: str) -> int:
        return self.display_order[int(slot)]


class JudgmentForm(_SlotForm):
    """Compare: ``choice`` (slot or ``tie``) + ``strength``. Rank: ``rank-<slot>`` = 1..K,
    equal ranks tie. Both: ``v-<principle key>`` = slot / ``tie`` / ``na``, ``decisive``.

    The per-principle and per-slot inputs are read in ``clean`` rather than declared as fields:
    building a field per principle for every submit cost more than the rest of the request."""

    choice = _CharField(required=False)
    strength = _TypedChoiceField(
        choices=[(str(i), str(i)) for i in range(4)], coerce=int, required=False, empty_value=0
    )
    both_bad = _BooleanField(required=False)
    discretion = _BooleanField(required=False)
    discretion_note = _CharField(max_length=2000, required=False)
    rationale = _CharField(max_length=20_000, required=False)
    confidence = _TypedChoiceField(
        choices=[(str(i), str(i)) for i in range(1, 6)],
        coerce=int,
        required=False,
        empty_value=None,
    )

    def __init__(self, data=None, *, kind: str, display_order, principles, **kwargs):
        super().__init__(data, display_order=display_order, principles=principles, **kwargs)
        self.kind = kind

    def _clean_verdicts(self) -> dict[str, str]:
        allowed = {*(str(i) for i in range(len(self.display_order))), "tie", "na"}
        verdicts = {}
        for p in self.principles:
            value = self.data.get(f"v-{p.key}") or "na"
            if value not in allowed:
                self.add_error(None, f"v-{p.key}: {value!r} is not a slot, tie or na.")
            verdicts[p.key] = value
        return verdicts

    def _clean_decisive(self) -> list[str]:
        keys = {p.key for p in self.principles}
        decisive = self.data.getlist("decisive")  # the posted QueryDict
        for key in decisive:
            if key not in keys:
                self.add_error(None, f"decisive: {key!r} is not a principle of this project.")
        return decisive

    def _clean_ranks(self) -> list[int]:
        count = len(self.display_order)
        ranks = []
        for i in range(count):
            value = self.data.get(f"rank-{i}") or ""
            if not value.isdigit() or not 1 <= int(value) <= count:
                self.add_error(None, f"rank-{i}: give every response a rank from 1 to {count}.")
                return []
            ranks.append(int(value))
        return ranks

    def clean(self):
        data = super().clean()
        data["verdicts"] = self._clean_verdicts()
        data["decisive"] = self._clean_decisive()
        ranks = self._clean_ranks() if self.kind == "rank" else []
        if self.errors:
            return data
        order = self.display_order
        if self.kind == "rank":
            by_rank: dict[int, list[int]] = {}
            for rid, rank in zip(order, ranks, strict=True):
                by_rank.setdefault(rank, []).append(rid)
            data["ordering"] = [by_rank[r] for r in sorted(by_rank)]
        else:
            choice = data.get("choice") or ("tie" if data.get("both_bad") else "")
            if choice == "tie":
                data["ordering"] = [list(order)]
            elif choice in {str(i) for i in range(len(order))}:
                best = order[int(choice)]
                data["ordering"] = [[best], [rid for rid in order if rid != best]]
            else:
                raise forms.ValidationError("Choose A, B or tie first (keys 1, 2 or 0).")
            if choice == "tie":
                data["strength"] = 0
        return data

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        verdicts: dict[str, int | str] = {
            key: "tie" if value == "tie" else self.response_id(value)
            for key, value in data["verdicts"].items()
            if value != "na"
        }
        return {
            "ordering": data["ordering"],
            "strength": data["strength"] if self.kind == "compare" else 0,
            "both_bad": data["both_bad"],
            "verdicts": verdicts,
            "decisive": list(data["decisive"]),
            "discretion": data["discretion"],
            "discretion_note": data["discretion_note"],
            "rationale": data["rationale"],
            "confidence": data["confidence"],
            "time_spent_ms": data["time_spent_ms"],
        }


class DemonstrationForm(_SlotForm):
    text = forms.CharField(max_length=100_000, strip=False)
    based_on = forms.CharField(required=False)
    cited = forms.MultipleChoiceField(required=False)

    def __init__(self, data=None, *, display_order, principles, **kwargs):
        super().__init__(data, display_order=display_order, principles=principles, **kwargs)
        self.fields["cited"].choices = [(p.key, p.key) for p in self.principles]

    def clean_based_on(self) -> int | None:
        value = self.cleaned_data.get("based_on") or ""
        if value == "":
            return None
        if value not in {str(i) for i in range(len(self.display_order))}:
            raise forms.ValidationError("Unknown response to start from.")
        return self.response_id(value)


class SkipForm(forms.Form):
    reason = forms.ChoiceField(choices=SKIP_REASONS)
    note = forms.CharField(max_length=400, required=False)

    def reason_text(self) -> str:
        label = dict(SKIP_REASONS)[self.cleaned_data["reason"]]
        note = self.cleaned_data["note"].strip()
        return f"{self.cleaned_data['reason']}: {note or label}"
