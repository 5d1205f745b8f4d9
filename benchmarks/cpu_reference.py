"""This machine's speed at the moment: a fixed pure-Python workload timed in CPU seconds.

A shared virtual machine's speed drifts: on the development box, idle, this reference's median
went from 38 to 74 ms and back within a minute, and the same export ran 1.8× apart between
sessions. Each benchmark prints the reference beside its figures; only figures taken at a
similar reference compare (lower is faster).
"""

from __future__ import annotations

import statistics
import time


def _workload() -> int:
    """String, dict and integer work, like a request's (about 40 ms on the box's fast phase)."""
    seen: dict[str, int] = {}
    total = 0
    for i in range(120_000):
        key = f"k{i % 997}"
        seen[key] = seen.get(key, 0) + i
        total += len(key) * (i % 7)
    return total + len(seen)


def reference_ms(repeats: int = 5) -> tuple[float, float, float]:
    """(min, median, max) CPU milliseconds of the workload over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        _workload()
        times.append(1000 * (time.process_time() - started))
    return min(times), statistics.median(times), max(times)


def describe(repeats: int = 5) -> str:
    low, median, high = reference_ms(repeats)
    return f"CPU reference {median:.0f} ms ({low:.0f}–{high:.0f}; fixed work, lower is faster)"


if __name__ == "__main__":
    print(describe())
