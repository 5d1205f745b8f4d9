"""Pure row shaping (no database): pairs, consensus, TRL preference rows and friends."""

import json

import datasets
import pytest

from annotation.datasets.exports.pairs import (
    bradley_terry_ordering,
    expand_pairs,
    majority_ordering,
)
from annotation.datasets.exports.pseudonyms import Pseudonymizer
from annotation.datasets.exports.records import (
    DemoRecord,
    ExportOptions,
    JudgmentRecord,
    TaskContent,
)
from annotation.datasets.exports.rows import TaskShaper, render_text_prompt, sft_row
from annotation.datasets.exports.writers import JsonlWriter, ParquetWriter, schema_for

TASK = TaskContent(1, 10, "compare", [{"role": "user", "content": "Hi?"}], {5: "Hello", 6: "Go"})
RANK = TaskContent(
    2,
    20,
    "rank",
    [{"role": "user", "content": "Rank"}],
    {1: "one", 2: "two", 3: "three", 4: "four"},
)


def j(jid, ordering, annotator="a-1", **kw):
    return JudgmentRecord(jid, kw.pop("task_id", 1), annotator, ordering, **kw)


def shape(task, judgments, **options):
    shaper = TaskShaper(ExportOptions(**options))
    return list(shaper.rows(task, judgments)), shaper.summary


def test_expansions_over_buckets_with_ties():
    ordering = [[1], [2, 3], [4]]
    assert expand_pairs(ordering, "all_pairs") == [(1, 2), (1, 3), (1, 4), (2, 4), (3, 4)]
    assert expand_pairs(ordering, "best_vs_rest") == [(1, 2), (1, 3), (1, 4)]
    assert expand_pairs(ordering, "adjacent") == [(1, 2), (1, 3), (2, 4), (3, 4)]
    assert expand_pairs([[1, 2]], "all_pairs") == []


def test_consensus_by_majority_and_bradley_terry():
    orderings = [[[1], [2], [3]], [[1], [3], [2]], [[2], [1], [3]]]
    assert majority_ordering([1, 2, 3], orderings) == [[1], [2], [3]]
    assert majority_ordering([1, 2, 3], orderings[:2]) == [[1], [2, 3]]
    assert bradley_terry_ordering([1, 2, 3], orderings)[0] == [1]
    assert majority_ordering([1, 2], [[[1], [2]], [[2], [1]]]) == [[1, 2]]


def test_preference_row_has_trl_columns_margin_and_oriented_provenance():
    judgment = j(
        7,
        [[5], [6]],
        strength=3,
        verdicts={"safe": 6, "kind": 5, "honest": "tie", "x": "n/a"},
        decisive=["kind"],
        discretion_note="",
    )
    (row,), summary = shape(TASK, [judgment], spec_version="spec@2")
    assert row["prompt"] == [{"role": "user", "content": "Hi?"}]
    assert row["chosen"] == [{"role": "assistant", "content": "Hello"}]
    assert row["rejected"] == [{"role": "assistant", "content": "Go"}]
    assert row["margin"] == 1.0 and row["judgment_ids"] == [7] and row["annotator_ids"] == ["a-1"]
    assert row["principles"] == [
        {"key": "safe", "favours": "rejected", "decisive": False},
        {"key": "kind", "favours": "chosen", "decisive": True},
        {"key": "honest", "favours": "tie", "decisive": False},
        {"key": "x", "favours": "n/a", "decisive": False},
    ]
    assert row["spec_version"] == "spec@2" and row["discretion"] is False
    assert summary.as_dict()["principle_conflicts"] == 1


def test_arbitrary_discretion_when_all_principles_favour_the_rejected():
    judgment = j(1, [[5], [6]], verdicts={"safe": 6, "kind": 6})
    (row,), summary = shape(TASK, [judgment])
    assert row["discretion"] is True and summary.arbitrary == 1
    assert shape(TASK, [judgment], exclude_discretion=True)[0] == []


def test_text_style_and_implicit_prompt():
    (row,), _ = shape(TASK, [j(1, [[6], [5]])], style="text")
    assert row["prompt"] == "\n\nHuman: Hi?\n\nAssistant:" == render_text_prompt(TASK.messages)
    assert (row["chosen"], row["rejected"]) == (" Go", " Hello")
    (row,), _ = shape(TASK, [j(1, [[6], [5]])], prompt_style="implicit")
    assert "prompt" not in row and row["chosen"][-1] == {"role": "assistant", "content": "Go"}
    assert row["chosen"][0] == {"role": "user", "content": "Hi?"}


def test_ties_dropped_or_emitted_both_ways_and_both_bad_kept_or_excluded():
    tie = j(1, [[5, 6]], both_bad=True)
    assert shape(TASK, [tie])[0] == []
    rows, _ = shape(TASK, [tie], tie_policy="both_orders")
    assert [(r["chosen_response_id"], r["rejected_response_id"], r["tie"]) for r in rows] == [
        (5, 6, True),
        (6, 5, True),
    ]
    assert all(r["margin"] == 0 and r["both_bad"] for r in rows)
    bad = j(2, [[5], [6]], both_bad=True)
    assert shape(TASK, [bad])[0][0]["both_bad"] is True
    assert shape(TASK, [bad], exclude_both_bad=True)[0] == []


def test_k_way_pairs_link_back_to_their_judgment_and_agreement():
    first = j(11, [[1], [2, 3], [4]])
    second = j(12, [[4], [1], [2], [3]], annotator="a-2")
    rows, summary = shape(RANK, [first, second], expansion="best_vs_rest")
    assert [
        (r["source_ranking_id"], r["chosen_response_id"], r["rejected_response_id"]) for r in rows
    ] == [("j11", 1, 2), ("j11", 1, 3), ("j11", 1, 4), ("j12", 4, 1), ("j12", 4, 2), ("j12", 4, 3)]
    assert rows[0]["agreement"] == 1.0 and rows[2]["agreement"] == 0.5
    assert all(r["pair_expansion"] == "best_vs_rest" for r in rows)
    assert dict(summary.per_annotator) == {"a-1": 1, "a-2": 1}
    assert shape(RANK, [first, second], min_agreement=0.75)[0][0]["agreement"] == 1.0


def test_majority_aggregation_gives_one_row_per_task_with_all_judgments():
    votes = [
        j(1, [[5], [6]], strength=3),
        j(2, [[5], [6]], annotator="a-2", strength=1),
        j(3, [[6], [5]], annotator="a-3"),
    ]
    (row,), summary = shape(TASK, votes, aggregation="majority")
    assert (row["chosen_response_id"], row["rejected_response_id"]) == (5, 6)
    assert row["judgment_ids"] == [1, 2, 3] and row["agreement"] == pytest.approx(2 / 3)
    assert row["margin"] == pytest.approx((1.0 + 1 / 3) / 2) and row["source_ranking_id"] == "t1"
    assert summary.judgments == 3
    (bt,), _ = shape(TASK, votes, aggregation="bradley_terry")
    assert bt["chosen_response_id"] == 5
    split = [j(1, [[5], [6]]), j(2, [[6], [5]], annotator="a-2")]
    assert shape(TASK, split, aggregation="majority")[0] == []


def test_kto_ranking_raw_and_sft_rows():
    rows, _ = shape(
        TASK, [j(1, [[5], [6]]), j(2, [[5, 6]], annotator="b", both_bad=True)], kind="kto"
    )
    assert [(r["response_id"], r["label"]) for r in rows] == [
        (5, True),
        (6, False),
        (5, False),
        (6, False),
    ]
    (ranking,), _ = shape(RANK, [j(4, [[3], [1, 2], [4]], verdicts={"s": 2})], kind="ranking")
    assert ranking["completions"] == ["one", "two", "three", "four"]
    assert ranking["ranking"] == [[2], [0, 1], [3]] and ranking["ranking_id"] == "j4"
    assert ranking["principles"] == [{"key": "s", "verdict": "prefers", "response_index": 1}]
    (raw,), _ = shape(TASK, [j(9, [[6], [5]], verdicts={"s": "tie"}, rationale="why")], kind="raw")
    assert raw["ordering"] == [[6], [5]] and raw["rationale"] == "why"
    assert raw["verdicts"] == [{"key": "s", "verdict": "tie", "response_id": None}]
    demo = DemoRecord(3, 10, None, "a-9", [{"role": "user", "content": "Q"}], "A", cited=["s"])
    row = sft_row(demo, spec_version="x@1")
    assert row["messages"][-1] == {"role": "assistant", "content": "A"}
    assert row["cited_principles"] == ["s"]


def test_invalid_orderings_are_skipped_and_options_validated():
    assert shape(TASK, [j(1, [[5], [99]])])[0] == []
    with pytest.raises(ValueError, match="expansion"):
        ExportOptions(expansion="zigzag").validate()


def test_pseudonyms_are_stable_keyed_and_not_usernames():
    first, second = Pseudonymizer("k1"), Pseudonymizer("k1")
    assert first(42) == second(42) != Pseudonymizer("k2")(42)
    assert first(42).startswith("a-") and len(first(42)) == 18 and "42" not in first(42)[2:4]


@pytest.mark.parametrize("style", ["conversational", "text"])
def test_writers_round_trip_through_datasets(tmp_path, style):
    shaper = TaskShaper(ExportOptions(style=style))
    rows = list(shaper.rows(TASK, [j(1, [[5], [6]], verdicts={"s": 5}, decisive=["s"])]))
    rows += list(shaper.rows(TASK, [j(2, [[6], [5]], annotator="a-2")]))
    jsonl = JsonlWriter(tmp_path / "p.jsonl")
    jsonl.write_rows(rows)
    digest = jsonl.close()
    assert len(digest) == 64 and jsonl.size == (tmp_path / "p.jsonl").stat().st_size
    parquet = ParquetWriter(tmp_path / "p.parquet", schema_for("preference", style))
    parquet.write_rows(rows[:1])
    parquet.write_rows(rows[1:])
    parquet.close()
    for kind, path in (("json", "p.jsonl"), ("parquet", "p.parquet")):
        loaded = datasets.load_dataset(kind, data_files=str(tmp_path / path), split="train")
        assert loaded.num_rows == 2
        assert loaded[0]["chosen"] == rows[0]["chosen"]
        assert loaded[1]["annotator_ids"] == ["a-2"]
    assert json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])["margin"] == 0.0
