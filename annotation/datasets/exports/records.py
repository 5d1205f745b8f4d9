"""Plain inputs to row shaping. The Django side fills these from ``values()`` queries."""

from __future__ import annotations

from dataclasses import dataclass, field

from annotation.vocabulary import NA, TIE

KINDS = ("preference", "sft", "kto", "ranking", "raw")
STYLES = ("conversational", "text")
PROMPT_STYLES = ("explicit", "implicit")
EXPANSIONS = ("all_pairs", "best_vs_rest", "adjacent")
TIE_POLICIES = ("drop", "both_orders")
AGGREGATIONS = ("raw", "majority", "bradley_terry")

# Judgment strength (0 none … 3 much better) → TRL ``margin`` (Llama 2's "small" margins).
DEFAULT_MARGINS = (0.0, 1 / 3, 2 / 3, 1.0)

# A principle's verdict on one pair, oriented to the chosen / rejected response.
FAVOURS_CHOSEN, FAVOURS_REJECTED = "chosen", "rejected"
FAVOURS_TIE, FAVOURS_NEITHER, FAVOURS_NA = TIE, "neither", NA


@dataclass(slots=True)
class TaskContent:
    """A task's prompt and responses (response id → text, canonical position order)."""

    task_id: int
    prompt_id: int
    kind: str
    messages: list[dict]
    responses: dict[int, str]
    is_gold: bool = False
    external_id: str = ""


@dataclass(slots=True)
class JudgmentRecord:
    """One judgment. ``ordering``: buckets of response ids, best first (a bucket is a tie).
    ``verdicts``: principle key → response id (that principle prefers it), ``"tie"`` or
    ``"n/a"``."""

    judgment_id: int
    task_id: int
    annotator: str
    ordering: list[list[int]]
    strength: int = 0
    both_bad: bool = False
    verdicts: dict[str, int | str] = field(default_factory=dict)
    decisive: list[str] = field(default_factory=list)
    discretion: bool = False
    discretion_note: str = ""
    rationale: str = ""
    confidence: int | None = None
    time_spent_ms: int | None = None
    created_at: str = ""
    origin: str = ""
    annotator_kind: str = "human"


@dataclass(slots=True)
class DemoRecord:
    """A demonstration (SFT answer) with the principles it cites."""

    demonstration_id: int
    prompt_id: int
    task_id: int | None
    annotator: str
    messages: list[dict]
    text: str
    based_on: int | None = None
    cited: list[str] = field(default_factory=list)
    created_at: str = ""


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """How rows are shaped. Validated by ``validate()`` (raises ``ValueError``)."""

    kind: str = "preference"
    style: str = "conversational"
    prompt_style: str = "explicit"
    expansion: str = "all_pairs"
    tie_policy: str = "drop"
    aggregation: str = "raw"
    spec_version: str = ""
    margins: tuple[float, ...] = DEFAULT_MARGINS
    min_agreement: float | None = None
    exclude_both_bad: bool = False
    exclude_discretion: bool = False
    include_rationale: bool = True
    # Non-empty: a per-principle preference dataset; chosen / rejected follow this principle's
    # verdicts instead of the overall ranking (``rows.principle_view``).
    principle: str = ""

    def validate(self) -> ExportOptions:
        for name, allowed in (
            ("kind", KINDS),
            ("style", STYLES),
            ("prompt_style", PROMPT_STYLES),
            ("expansion", EXPANSIONS),
            ("tie_policy", TIE_POLICIES),
            ("aggregation", AGGREGATIONS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.min_agreement is not None and not 0 <= self.min_agreement <= 1:
            raise ValueError("min_agreement must be between 0 and 1")
        if len(self.margins) != 4:
            raise ValueError("margins needs one value per strength 0..3")
        if self.aggregation != "raw" and self.kind not in {"preference", "ranking"}:
            raise ValueError("majority / bradley_terry aggregation is for preference and ranking")
        if self.principle and self.kind != "preference":
            raise ValueError("a principle's pairs are a preference dataset (kind preference)")
        return self
