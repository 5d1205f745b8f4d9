"""Plain value objects that describe what to create: principles, prompts, responses."""

from __future__ import annotations

from dataclasses import dataclass, field

from annotation.models import (
    Principle,
)

# Precedence of authority tiers, highest first; ``declared_priority`` defaults to this rank.
AUTHORITY_RANK = {
    Principle.Authority.PLATFORM: 0,
    Principle.Authority.ROOT: 0,
    Principle.Authority.SYSTEM: 1,
    Principle.Authority.DEVELOPER: 2,
    Principle.Authority.USER: 3,
    Principle.Authority.GUIDELINE: 4,
}


@dataclass(frozen=True)
class PrincipleSpec:
    """A principle before it is stored (what every principle importer produces)."""

    key: str
    title: str
    text: str = ""
    section: str = ""
    kind: str = Principle.Kind.GUIDELINE
    authority: str = Principle.Authority.USER
    declared_priority: int | None = None


@dataclass(frozen=True)
class ResponseSpec:
    text: str
    source: str = ""
    label: str = ""  # "chosen" / "rejected" when the source data carries a verdict
    generation_params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PromptSpec:
    """A prompt with its candidate responses, as parsed from an import file."""

    messages: list[dict]
    responses: list[ResponseSpec]
    external_id: str = ""
    metadata: dict = field(default_factory=dict)
    kind: str = ""  # compare / rank / demonstrate; derived from the response count if empty
    submitted: int = 0  # judgments imported with it (``on_batch`` writes them)
