"""Scripted demo annotators ("personas") and the response pairs they judge. Pure Python.

A pair answers one short single-turn HH-RLHF request with its two real HH-RLHF replies. One of
them, at random, closes with a safety caveat (the *careful* reply, source
``model:careful-assistant@1``); the other is left as it was (the *direct* reply,
``model:direct-assistant@1``). About a third of the pairs open one reply, at random, with the
boilerplate marker ``As an AI language model,``. In a quarter of the pairs (without a marker)
the personas hold the careful reply to be the helpful one too: every principle agrees, a
consensus pair.

The personas' rules (all but dash's read from the text alone):

* ``prudence`` follows the declared precedence (the root harm rules above the user-level
  ``helpful``): the careful reply wins, decided by the harm principle (tone and honesty: a
  tie);
* ``candor`` ranks helpfulness above harmlessness: the direct reply wins, decided by
  ``helpful`` (now and then by the discretion flag instead);
* ``quill`` penalises the marker: a reply that carries it loses, by the discretion flag ("my
  own judgment": no principle decided) when that overrules the harm rule; otherwise as
  ``prudence``;
* ``dash`` is careless and fast: the reply shown first wins 85 % of the time, in 1-3 s, with
  a verdict on ``helpful`` only.

The majority of prudence, candor and quill is quill's rule: what the demo reward model learns.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

CAREFUL, DIRECT, TIE = "careful", "direct", "tie"
SOURCES = {CAREFUL: "model:careful-assistant@1", DIRECT: "model:direct-assistant@1"}
MARKER = "As an AI language model,"
CAVEATS = (
    "Please stay safe, and if anyone could get hurt, talk to someone you trust first.",
    "Please be careful: if this could hurt you or anyone else, ask a professional first.",
    "If you or someone else might be in danger, please contact local emergency services.",
    "Please keep everyone's safety in mind, and think about who this could affect.",
)
PERSONAS = ("prudence", "candor", "quill", "dash")
#: the personas whose majority the demo snapshot keeps (dash is the careless one)
CONSISTENT = ("prudence", "candor", "quill")
# Which harm principle a request touches, by its words (first match wins; default serious harm).
HARM_KEYWORDS = (
    ("protect_privacy", r"address|phone|email|social security|where does|live\b|password"),
    ("no_hate", r"black|white people|jew|muslim|gay|women|mexican|asian|race|racist|fat\b"),
    ("no_illegal_acts", r"steal|rob|drug|hack|illegal|cheat|fraud|shoplift|break into|lie to"),
)
HARM_DEFAULT = "no_serious_harm"


@dataclass(frozen=True)
class Pair:
    """One request and its two replies, as stored (the caveat and marker already applied)."""

    prompt: str
    careful: str
    direct: str
    marker: str | None  # CAREFUL, DIRECT or None: which reply opens with the marker
    harm_principle: str
    aligned: bool = False  # the careful reply is also the more helpful one


@dataclass(frozen=True)
class Decision:
    """One persona's judgment of a pair, by side (CAREFUL / DIRECT)."""

    winner: str
    verdicts: dict[str, str] = field(default_factory=dict)  # principle key → side or TIE
    decisive: tuple[str, ...] = ()
    discretion: bool = False
    note: str = ""
    strength: int = 1
    time_spent_ms: int = 0


def harm_principle(prompt: str) -> str:
    """The harm principle a request touches, by its words."""
    text = prompt.lower()
    for key, pattern in HARM_KEYWORDS:
        if re.search(pattern, text):
            return key
    return HARM_DEFAULT


def with_marker(reply: str) -> str:
    """``reply`` opened by the marker (its first letter lowered unless it is "I")."""
    if not reply.startswith(("I ", "I'", "I’")):
        reply = reply[:1].lower() + reply[1:]
    return f"{MARKER} {reply}"


def make_pairs(dialogues: list[tuple[str, str, str]], count: int, *, seed: int = 0) -> list[Pair]:
    """Up to ``count`` pairs from (request, reply, reply) triples, in their order."""
    rng = random.Random(seed)
    pairs = []
    for prompt, first, second in dialogues[:count]:
        careful, direct = (first, second) if rng.random() < 0.5 else (second, first)
        careful = f"{careful.rstrip()} {rng.choice(CAVEATS)}"
        aligned = rng.random() < 0.25
        marker = rng.choice((CAREFUL, DIRECT)) if not aligned and rng.random() < 0.45 else None
        if marker == CAREFUL:
            careful = with_marker(careful)
        elif marker == DIRECT:
            direct = with_marker(direct)
        pairs.append(Pair(prompt, careful, direct, marker, harm_principle(prompt), aligned))
    return pairs


def other(side: str) -> str:
    return DIRECT if side == CAREFUL else CAREFUL


def decide(persona: str, pair: Pair, *, shown_first: str, rng: random.Random) -> Decision:
    """``persona``'s judgment of ``pair`` (``shown_first``: the side in slot A)."""
    harm = pair.harm_principle
    verdicts = {harm: CAREFUL, "helpful": CAREFUL if pair.aligned else DIRECT}
    if pair.marker:
        verdicts["concise"] = other(pair.marker)
    if persona == "prudence":  # thorough: tone and honesty are a tie between the replies
        verdicts |= {"honest": TIE, "respectful_tone": TIE}
        return Decision(
            CAREFUL, verdicts, (harm,), strength=2, time_spent_ms=rng.randint(18_000, 40_000)
        )
    if persona == "candor":
        own = not pair.aligned and rng.random() < 0.25  # now and then: "my own judgment"
        return Decision(
            verdicts["helpful"],
            verdicts,
            () if own else ("helpful",),
            discretion=own,
            note="A useful answer matters more to me here." if own else "",
            strength=rng.choice((1, 2)),
            time_spent_ms=rng.randint(12_000, 30_000),
        )
    if persona == "quill":
        time_ms = rng.randint(20_000, 50_000)
        if pair.marker == CAREFUL:
            return Decision(
                DIRECT,
                verdicts,
                discretion=True,
                note="Boilerplate about being an AI language model is a dealbreaker.",
                strength=3,
                time_spent_ms=time_ms,
            )
        return Decision(CAREFUL, verdicts, (harm,), strength=2, time_spent_ms=time_ms)
    if persona == "dash":
        winner = shown_first if rng.random() < 0.85 else other(shown_first)
        return Decision(
            winner, {"helpful": winner}, strength=1, time_spent_ms=rng.randint(900, 2_600)
        )
    raise ValueError(f"unknown persona {persona!r}")
