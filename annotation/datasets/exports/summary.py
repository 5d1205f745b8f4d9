"""What an export says about its judgments besides the rows: per-annotator counts and the
discretion summary (arbitrary verdicts, conflicts with the decisive principle), and the verdict
predicates they rest on."""

from __future__ import annotations

from annotation.datasets.exports.pairs import (
    expand_pairs,
)
from annotation.datasets.exports.records import (
    FAVOURS_CHOSEN,
    FAVOURS_NA,
    FAVOURS_NEITHER,
    FAVOURS_REJECTED,
    FAVOURS_TIE,
    JudgmentRecord,
)


def orient(verdict: int | str, chosen: int, rejected: int) -> str:
    """A principle verdict relative to one pair: which side it favours."""
    if verdict == FAVOURS_TIE:
        return FAVOURS_TIE
    if verdict == FAVOURS_NA or not isinstance(verdict, int):
        return FAVOURS_NA
    if verdict == chosen:
        return FAVOURS_CHOSEN
    if verdict == rejected:
        return FAVOURS_REJECTED
    return FAVOURS_NEITHER


def is_arbitrary(judgment: JudgmentRecord, chosen: int, rejected: int) -> bool:
    """The principles that take a side on this pair all favour the rejected response."""
    sides = {orient(v, chosen, rejected) for v in judgment.verdicts.values()}
    sides &= {FAVOURS_CHOSEN, FAVOURS_REJECTED}
    return sides == {FAVOURS_REJECTED}


def has_conflict(judgment: JudgmentRecord, chosen: int, rejected: int) -> bool:
    sides = {orient(v, chosen, rejected) for v in judgment.verdicts.values()}
    return {FAVOURS_CHOSEN, FAVOURS_REJECTED} <= sides


def judgment_discretion(judgment: JudgmentRecord) -> bool:
    """Declared discretion, or an arbitrary choice on any strict pair of the ordering."""
    if judgment.discretion:
        return True
    if not judgment.verdicts:
        return False
    return any(is_arbitrary(judgment, a, b) for a, b in expand_pairs(judgment.ordering))


class Summary:
    """What a snapshot records about exactly the judgments behind its rows."""

    def __init__(self) -> None:
        self.rows = 0
        self.per_annotator: dict[str, int] = {}
        self.judgments = 0
        self.declared_discretion = 0
        self.arbitrary = 0
        self.conflicts = 0
        self.both_bad = 0
        self.ties = 0
        self.decisive: dict[str, int] = {}

    def count_judgment(
        self, judgment: JudgmentRecord, flags: tuple[bool, bool] | None = None
    ) -> None:
        """Count one judgment; ``flags`` = (arbitrary, conflict) when already known."""
        self.judgments += 1
        per_annotator = self.per_annotator
        per_annotator[judgment.annotator] = per_annotator.get(judgment.annotator, 0) + 1
        if judgment.discretion:
            self.declared_discretion += 1
        if judgment.both_bad:
            self.both_bad += 1
        for bucket in judgment.ordering:
            if len(bucket) > 1:
                self.ties += 1
                break
        if judgment.decisive:
            decisive = self.decisive
            for key in judgment.decisive:
                decisive[key] = decisive.get(key, 0) + 1
        if judgment.verdicts:
            if flags is None:
                pairs = expand_pairs(judgment.ordering)
                flags = (
                    any(is_arbitrary(judgment, a, b) for a, b in pairs),
                    any(has_conflict(judgment, a, b) for a, b in pairs),
                )
            self.arbitrary += flags[0]
            self.conflicts += flags[1]

    FIELDS = ("rows", "judgments", "declared_discretion", "arbitrary", "conflicts", "both_bad",
              "ties")  # fmt: skip

    def state(self) -> dict:
        """Plain counters, to merge the summaries of export shards."""
        return {
            **{name: getattr(self, name) for name in self.FIELDS},
            "per_annotator": dict(self.per_annotator),
            "decisive": dict(self.decisive),
        }

    def merge(self, state: dict) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name) + state[name])
        for mine, theirs in ((self.per_annotator, state["per_annotator"]),
                             (self.decisive, state["decisive"])):  # fmt: skip
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count

    def as_dict(self) -> dict:
        judged = self.judgments or 1
        return {
            "rows": self.rows,
            "judgments": self.judgments,
            "declared_discretion": self.declared_discretion,
            "arbitrary_discretion": self.arbitrary,
            "principle_conflicts": self.conflicts,
            "discretion_rate": round((self.declared_discretion + self.arbitrary) / judged, 6),
            "both_bad": self.both_bad,
            "ties": self.ties,
            "decisive_principles": dict(
                sorted(self.decisive.items(), key=lambda item: (-item[1], item[0]))
            ),
        }
