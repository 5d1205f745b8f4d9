"""``TimedCache``: the per-process memo behind the workspace's role and project caches."""

from common.timed_cache import TimedCache


def test_a_value_is_reused_until_it_expires_and_the_memo_is_bounded():
    calls = []

    def compute(value):
        return lambda: calls.append(value) or value

    kept = TimedCache(seconds=60, limit=2)
    assert [kept.get("a", compute(1)), kept.get("a", compute(2))] == [1, 1]
    expired = TimedCache(seconds=0, limit=2)
    assert [expired.get("a", compute(3)), expired.get("a", compute(4))] == [3, 4]
    for key in "bcd":  # past the limit the memo starts again
        kept.get(key, compute(key))
    assert kept.get("a", compute(5)) == 5
    kept.clear()
    assert kept.get("a", compute(6)) == 6
    assert calls == [1, 3, 4, "b", "c", "d", 5, 6]
