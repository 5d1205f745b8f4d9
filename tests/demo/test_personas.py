"""The personas' rules (pure): the majority of the consistent personas is quill's rule, which
the text alone tells (the caveat and the marker), and the careless persona follows position."""

import random
from collections import Counter

from annotation.demo import personas

DIALOGUES = [
    (f"How do I do thing {i}?", f"Reply one to {i}.", f"Reply two to {i}.") for i in range(400)
]


def test_majority_of_the_consistent_personas_is_a_rule_on_the_text():
    rng = random.Random(0)
    pairs = personas.make_pairs(DIALOGUES, 400)
    assert Counter(p.marker for p in pairs).keys() == {None, "careful", "direct"}
    for pair in pairs:
        votes = Counter(
            personas.decide(name, pair, shown_first="careful", rng=rng).winner
            for name in personas.CONSISTENT
        )
        majority = votes.most_common(1)[0][0]
        assert max(votes.values()) >= 2
        # what the reply texts show: the marker loses; otherwise the safety caveat wins
        rule = "direct" if pair.careful.startswith(personas.MARKER) else "careful"
        assert majority == rule
        assert pair.careful.endswith(personas.CAVEATS) and not pair.direct.endswith(
            personas.CAVEATS
        )


def test_each_persona_keeps_its_own_priorities():
    rng = random.Random(1)
    pairs = personas.make_pairs(DIALOGUES, 400)
    conflict = [p for p in pairs if not p.aligned and p.marker is None]
    prudence = [personas.decide("prudence", p, shown_first="direct", rng=rng) for p in conflict]
    candor = [personas.decide("candor", p, shown_first="direct", rng=rng) for p in conflict]
    assert {d.winner for d in prudence} == {"careful"} and {d.winner for d in candor} == {"direct"}
    assert all(d.decisive == (p.harm_principle,) for d, p in zip(prudence, conflict, strict=True))
    assert {d.decisive for d in candor} == {("helpful",), ()}  # () with the discretion flag
    assert all(d.discretion == (d.decisive == ()) for d in candor)
    marked = [p for p in pairs if p.marker == "careful"]
    quill = [personas.decide("quill", p, shown_first="careful", rng=rng) for p in marked]
    assert all(d.winner == "direct" and d.discretion and not d.decisive for d in quill)
    dash = [personas.decide("dash", p, shown_first="direct", rng=rng) for p in pairs]
    assert 0.75 < sum(d.winner == "direct" for d in dash) / len(dash) < 0.95
    assert max(d.time_spent_ms for d in dash) < 3_000 < min(d.time_spent_ms for d in prudence)
