"""Orderings (buckets of response ids, best first; a bucket is a tie) → pairs and consensus."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise

Ordering = Sequence[Sequence[int]]


def ranks(ordering: Ordering) -> dict[int, int]:
    """Response id → bucket index (0 is best)."""
    return {rid: index for index, bucket in enumerate(ordering) for rid in bucket}


def expand_pairs(ordering: Ordering, expansion: str = "all_pairs") -> list[tuple[int, int]]:
    """Strict ``(better, worse)`` pairs of an ordering.

    * ``all_pairs``: every response against every response in a later bucket;
    * ``best_vs_rest``: the top bucket against every later response;
    * ``adjacent``: each bucket against the next one.
    """
    simple = len(ordering) == 2 and len(ordering[0]) == 1 and len(ordering[1]) == 1
    if simple and expansion in {"all_pairs", "best_vs_rest", "adjacent"}:  # the compare case
        return [(ordering[0][0], ordering[1][0])]
    buckets = [list(bucket) for bucket in ordering if bucket]
    pairs: list[tuple[int, int]] = []
    if expansion == "all_pairs":
        for i, upper in enumerate(buckets):
            for lower in buckets[i + 1 :]:
                pairs.extend((a, b) for a in upper for b in lower)
    elif expansion == "best_vs_rest":
        for lower in buckets[1:]:
            pairs.extend((a, b) for a in buckets[0] for b in lower)
    elif expansion == "adjacent":
        for upper, lower in pairwise(buckets):
            pairs.extend((a, b) for a in upper for b in lower)
    else:
        raise ValueError(f"unknown pair expansion {expansion!r}")
    return pairs


def tied_pairs(ordering: Ordering) -> list[tuple[int, int]]:
    """Pairs of responses that share a bucket (each unordered pair once)."""
    pairs = []
    for bucket in ordering:
        items = list(bucket)
        pairs.extend((a, b) for i, a in enumerate(items) for b in items[i + 1 :])
    return pairs


def pair_votes(orderings: Iterable[Ordering]) -> Counter:
    """``votes[(a, b)]``: how many orderings put ``a`` strictly above ``b``."""
    votes: dict = {}
    get = votes.get
    for ordering in orderings:
        for pair in expand_pairs(ordering, "all_pairs"):
            votes[pair] = get(pair, 0) + 1
    return Counter(votes)


def _buckets_by_score(
    items: Sequence[int], scores: dict[int, float], tol: float
) -> list[list[int]]:
    ordered = sorted(items, key=lambda rid: (-scores[rid], items.index(rid)))
    buckets: list[list[int]] = []
    for rid in ordered:
        if buckets and abs(scores[buckets[-1][0]] - scores[rid]) <= tol:
            buckets[-1].append(rid)
        else:
            buckets.append([rid])
    return buckets


def majority_ordering(items: Sequence[int], orderings: Sequence[Ordering]) -> list[list[int]]:
    """Consensus by pairwise majority (Copeland score: majority wins minus losses)."""
    votes = pair_votes(orderings)
    score = dict.fromkeys(items, 0.0)
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            if votes[(a, b)] > votes[(b, a)]:
                score[a] += 1
                score[b] -= 1
            elif votes[(b, a)] > votes[(a, b)]:
                score[b] += 1
                score[a] -= 1
    return _buckets_by_score(items, score, 0.0)


def bradley_terry_scores(
    items: Sequence[int],
    orderings: Sequence[Ordering],
    *,
    prior: float = 0.1,
    iterations: int = 200,
) -> dict[int, float]:
    """Log-strengths by Hunter's MM algorithm; a tie counts half a win each way and ``prior``
    virtual ties against every other item keep the estimate finite."""
    wins: Counter = Counter()
    games: Counter = Counter()
    for ordering in orderings:
        for a, b in expand_pairs(ordering, "all_pairs"):
            wins[a] += 1
            games[frozenset((a, b))] += 1
        for a, b in tied_pairs(ordering):
            wins[a] += 0.5
            wins[b] += 0.5
            games[frozenset((a, b))] += 1
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            wins[a] += prior / 2
            wins[b] += prior / 2
            games[frozenset((a, b))] += prior
    strength = dict.fromkeys(items, 1.0)
    for _ in range(iterations):
        updated = {}
        for a in items:
            denominator = sum(
                games[frozenset((a, b))] / (strength[a] + strength[b]) for b in items if b != a
            )
            updated[a] = wins[a] / denominator if denominator else strength[a]
        total = sum(updated.values()) or 1.0
        updated = {k: v * len(items) / total for k, v in updated.items()}
        converged = max(abs(updated[k] - strength[k]) for k in items) < 1e-10
        strength = updated
        if converged:
            break
    return {k: math.log(v) for k, v in strength.items()}


def bradley_terry_ordering(items: Sequence[int], orderings: Sequence[Ordering]) -> list[list[int]]:
    """Consensus by Bradley–Terry strengths; items within 1e-6 in log-strength are tied."""
    return _buckets_by_score(items, bradley_terry_scores(items, orderings), 1e-6)
