"""Words the whole domain shares: verdict values and slot letters. Pure Python (the metrics,
the export formats and the trainers read it too)."""

from __future__ import annotations

SLOT_LETTERS = "ABCDEFGH"  # a task shows at most 8 responses: slot i is SLOT_LETTERS[i]

TIE = "tie"  # a principle favours no response over the other
NOT_APPLICABLE = "not_applicable"  # the stored verdict (PrincipleVerdict.Verdict)
NA = "n/a"  # how exports and the API write it
# What a client may send for "not applicable" (any case); a missing verdict is one too.
NOT_APPLICABLE_ALIASES = frozenset({NA, "na", NOT_APPLICABLE, ""})


def is_not_applicable(value: object) -> bool:
    """Whether a verdict value, as a client or a dataset spells it, means "not applicable"."""
    return value is None or (isinstance(value, str) and value.lower() in NOT_APPLICABLE_ALIASES)


def names_no_response(value: object) -> bool:
    """Whether a verdict favours no response: a tie or not applicable (any spelling)."""
    return is_not_applicable(value) or (isinstance(value, str) and value.lower() == TIE)
