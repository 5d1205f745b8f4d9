"""Arena leaderboard: pairwise battles between response sources → Bradley–Terry with bootstrap
confidence intervals, Elo, and win / loss / tie counts. Pure (no Django): plain data in, plain
dicts out; the Bradley–Terry fit and Elo are ``annotation.quality.metrics.consensus``.

A battle is ``(a, b, outcome)`` with outcome ``a_wins`` / ``b_wins`` / ``tie`` / ``both_bad``.
Ties count half a win each way; ``both_bad`` is a tie (Chatbot Arena's convention) or dropped
(``both_bad="ignore"``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from annotation.quality.metrics import consensus as cons

A_WINS, B_WINS, TIE, BOTH_BAD = cons.A_WINS, cons.B_WINS, cons.TIE, cons.BOTH_BAD
Battle = tuple[Hashable, Hashable, str]


def battles_from_ordering(
    ordering: Sequence[Sequence[int]],
    sources: Mapping[int, str],
    *,
    both_bad: bool = False,
) -> list[Battle]:
    """Every pair of responses of different sources in one judgment's ordering (buckets of
    response ids, best first): earlier bucket wins, same bucket ties; a both-bad judgment makes
    every pair a ``both_bad`` battle. Responses of the same source never battle."""
    buckets = [list(b) for b in ordering or [] if isinstance(b, list | tuple)]
    out: list[Battle] = []
    for i, upper in enumerate(buckets):
        for x_index, x in enumerate(upper):
            for y in upper[x_index + 1 :]:
                _add(out, sources, x, y, BOTH_BAD if both_bad else TIE)
            for lower in buckets[i + 1 :]:
                for y in lower:
                    _add(out, sources, x, y, BOTH_BAD if both_bad else A_WINS)
    return out


def battles_from_verdict(
    preferred: int | None, verdict: str, response_ids: Sequence[int], sources: Mapping[int, str]
) -> list[Battle]:
    """One principle's verdict on one task: the preferred response beats every other response
    (of another source); ``tie`` ties them all; anything else (not applicable) is no battle."""
    out: list[Battle] = []
    if verdict == "prefers" and preferred in response_ids:
        for other in response_ids:
            if other != preferred:
                _add(out, sources, preferred, other, A_WINS)
    elif verdict == "tie":
        for i, x in enumerate(response_ids):
            for y in response_ids[i + 1 :]:
                _add(out, sources, x, y, TIE)
    return out


def _add(out: list[Battle], sources: Mapping[int, str], x: int, y: int, outcome: str) -> None:
    sx, sy = sources.get(x), sources.get(y)
    if sx and sy and sx != sy:
        out.append((sx, sy, outcome))


def record(battles: Iterable[Battle], *, both_bad: str = "tie") -> dict[Hashable, Counter]:
    """Per source: wins, losses, ties, both_bad and battles (both-bad counted as ties unless
    ignored)."""
    counts: dict[Hashable, Counter] = {}
    for a, b, outcome in battles:
        ca, cb = counts.setdefault(a, Counter()), counts.setdefault(b, Counter())
        if outcome == BOTH_BAD:
            ca["both_bad"] += 1
            cb["both_bad"] += 1
            if both_bad == "ignore":
                continue
            outcome = TIE
        ca["battles"] += 1
        cb["battles"] += 1
        if outcome == A_WINS:
            ca["wins"] += 1
            cb["losses"] += 1
        elif outcome == B_WINS:
            cb["wins"] += 1
            ca["losses"] += 1
        else:
            ca["ties"] += 1
            cb["ties"] += 1
    return counts


def leaderboard(
    battles: Sequence[Battle],
    *,
    n_boot: int = 200,
    ci: float = 0.95,
    seed: int | None = 0,
    both_bad: str = "tie",
    elo_k: float = 4.0,
) -> dict[str, Any]:
    """Bradley–Terry scores on the Elo scale (1000 + 400·w/ln 10, centred) with percentile
    bootstrap intervals over resampled battles, rank by non-overlapping intervals, online Elo
    (battles in the given order) and counts. ``{"battles", "sources", "rows"}``."""
    if both_bad not in ("tie", "ignore"):
        raise ValueError("both_bad must be 'tie' or 'ignore'")
    battles = list(battles)
    kept = [b for b in battles if not (both_bad == "ignore" and b[2] == BOTH_BAD)]
    rows: list[dict[str, Any]] = []
    if len({s for a, b, _ in kept for s in (a, b)}) >= 2:
        table = cons.bt_leaderboard(kept, n_boot=n_boot, seed=seed, ci=ci, both_bad=both_bad)
        ratings = cons.elo(kept, k=elo_k, both_bad=both_bad)
        counts = record(battles, both_bad=both_bad)
        for row in table:
            c = counts.get(row["item"], Counter())
            played = c["battles"]
            rows.append(
                {
                    "source": row["item"],
                    "score": row["score"],
                    "ci_low": row["ci_low"],
                    "ci_high": row["ci_high"],
                    "rank": row["rank"],
                    "elo": ratings.get(row["item"]),
                    "battles": played,
                    "wins": c["wins"],
                    "losses": c["losses"],
                    "ties": c["ties"],
                    "both_bad": c["both_bad"],
                    "win_rate": (c["wins"] + 0.5 * c["ties"]) / played if played else None,
                }
            )
    return {
        "battles": len(kept),
        "sources": len(rows),
        "both_bad": both_bad,
        "n_boot": n_boot,
        "ci": ci,
        "rows": rows,
    }
