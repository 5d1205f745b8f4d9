"""Row shaping for every export kind. Pure: plain records in, plain dicts out.

``TaskShaper(options).rows(task, judgments)`` yields the rows of one task and updates
``shaper.summary`` (per-annotator judgment counts and the discretion summary of exactly the
judgments that produced rows). Column sets are fixed per kind and style so JSONL and Parquet
files load with ``datasets.load_dataset`` unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace

from annotation.datasets.exports.pairs import (
    bradley_terry_ordering,
    expand_pairs,
    majority_ordering,
    pair_votes,
    ranks,
    tied_pairs,
)
from annotation.datasets.exports.records import (
    FAVOURS_CHOSEN,
    FAVOURS_REJECTED,
    DemoRecord,
    ExportOptions,
    JudgmentRecord,
    TaskContent,
)
from annotation.datasets.exports.summary import Summary, is_arbitrary, judgment_discretion, orient

ROLE_TAG = {"user": "Human", "assistant": "Assistant", "system": "System", "tool": "Tool"}


def render_text_prompt(messages: Sequence[dict]) -> str:
    """Messages → an HH-style transcript ending in an open ``Assistant:`` turn."""
    turns = "".join(f"\n\n{ROLE_TAG.get(m['role'], m['role'])}: {m['content']}" for m in messages)
    return turns + "\n\nAssistant:"


class TaskShaper:
    """Shapes the rows of one task at a time for ``options.kind``."""

    def __init__(self, options: ExportOptions) -> None:
        self.options = options.validate()
        self.summary = Summary()
        self._margins = options.margins
        self._conversational = options.style == "conversational"
        self._implicit = options.prompt_style == "implicit"
        self._principle_lists: dict[tuple, list[dict]] = {}

    # ------------------------------------------------------------ prompt / completion forms

    def prompt_value(self, task: TaskContent):
        if self._conversational:
            return task.messages
        return render_text_prompt(task.messages)

    def completion_value(self, text: str):
        if self._conversational:
            return [{"role": "assistant", "content": text}]
        return " " + text

    def _pair_columns(self, prompt, task: TaskContent, chosen: int, rejected: int) -> dict:
        c_value = self.completion_value(task.responses[chosen])
        r_value = self.completion_value(task.responses[rejected])
        if self._implicit:
            if self._conversational:
                return {"chosen": [*prompt, *c_value], "rejected": [*prompt, *r_value]}
            return {"chosen": prompt + c_value, "rejected": prompt + r_value}
        return {"prompt": prompt, "chosen": c_value, "rejected": r_value}

    # ------------------------------------------------------------ entry point

    def rows(self, task: TaskContent, judgments: Sequence[JudgmentRecord]) -> Iterator[dict]:
        options = self.options
        if options.exclude_both_bad:
            judgments = [j for j in judgments if not j.both_bad]
        if options.exclude_discretion:
            judgments = [j for j in judgments if not judgment_discretion(j)]
        judgments = [j for j in judgments if _valid_ordering(j.ordering, task.responses)]
        if options.principle:
            judgments = principle_view(judgments, options.principle, task.responses)
        if not judgments:
            return
        kind = options.kind
        if kind == "preference":
            if options.aggregation == "raw":
                yield from self._preference_raw(task, judgments)
            else:
                yield from self._preference_aggregated(task, judgments)
        elif kind == "ranking":
            yield from self._ranking(task, judgments)
        elif kind == "kto":
            yield from self._kto(task, judgments)
        elif kind == "raw":
            yield from self._raw(task, judgments)
        else:
            raise ValueError(f"kind {kind!r} is not shaped from judgments")

    # ------------------------------------------------------------ preference pairs

    def _principles(
        self, judgments: Sequence[JudgmentRecord], chosen: int, rejected: int
    ) -> list[dict]:
        if len(judgments) == 1:
            judgment = judgments[0]
            decisive = set(judgment.decisive)
            return [
                {"key": key, "favours": orient(v, chosen, rejected), "decisive": key in decisive}
                for key, v in judgment.verdicts.items()
            ]
        sides: dict[str, Counter] = {}
        decisive_counts: Counter = Counter()
        for judgment in judgments:
            for key, v in judgment.verdicts.items():
                sides.setdefault(key, Counter())[orient(v, chosen, rejected)] += 1
            decisive_counts.update(judgment.decisive)
        half = len(judgments) / 2
        return [
            {
                "key": key,
                "favours": counts.most_common(1)[0][0],
                "decisive": decisive_counts[key] > half,
            }
            for key, counts in sides.items()
        ]

    def _provenance(
        self,
        judgments: Sequence[JudgmentRecord],
        task: TaskContent,
        chosen: int,
        rejected: int,
        *,
        margin: float,
        strength: int,
        agreement: float,
        tie: bool,
        ranking_id: str,
    ) -> dict:
        options = self.options
        single = judgments[0] if len(judgments) == 1 else None
        if single is not None:
            discretion = single.discretion or is_arbitrary(single, chosen, rejected)
            note = single.discretion_note
            both_bad = single.both_bad
            decisive = list(single.decisive)
        else:
            flagged = sum(j.discretion or is_arbitrary(j, chosen, rejected) for j in judgments)
            discretion = flagged * 2 > len(judgments)
            note = ""
            both_bad = sum(j.both_bad for j in judgments) * 2 > len(judgments)
            counts = Counter(key for j in judgments for key in j.decisive)
            decisive = [key for key, n in counts.most_common() if n * 2 > len(judgments)]
        return {
            "margin": margin,
            "judgment_ids": [j.judgment_id for j in judgments],
            "annotator_ids": [j.annotator for j in judgments],
            "task_id": task.task_id,
            "prompt_id": task.prompt_id,
            "chosen_response_id": chosen,
            "rejected_response_id": rejected,
            "spec_version": options.spec_version,
            "principles": self._principles(judgments, chosen, rejected),
            "decisive": decisive,
            "discretion": discretion,
            "discretion_note": note,
            "agreement": agreement,
            "strength": strength,
            "both_bad": both_bad,
            "tie": tie,
            "tie_policy": options.tie_policy,
            "aggregation": options.aggregation,
            "source_ranking_id": ranking_id,
            "pair_expansion": options.expansion,
        }

    def _emit(self, row: dict) -> bool:
        minimum = self.options.min_agreement
        if minimum is not None and row["agreement"] < minimum:
            return False
        self.summary.rows += 1
        return True

    def _principle_list(
        self, verdicts: dict, decisive: Sequence[str], chosen: int, rejected: int
    ) -> tuple[list[dict], int]:
        """The ``principles`` column of one pair and which sides its verdicts take (bit 1:
        chosen, bit 2: rejected). Equal lists are one shared object (fewer objects to build,
        and the writers serialize a shared object once)."""
        favours = tuple([orient(v, chosen, rejected) for v in verdicts.values()])
        sides = (FAVOURS_CHOSEN in favours) | (FAVOURS_REJECTED in favours) << 1
        signature = (tuple(verdicts), favours, tuple(decisive))
        shared = self._principle_lists.get(signature)
        if shared is None:
            if len(self._principle_lists) >= 4096:  # bounded, whatever the export's size
                self._principle_lists.clear()
            shared = self._principle_lists[signature] = [
                {"key": key, "favours": side, "decisive": key in decisive}
                for key, side in zip(verdicts, favours, strict=True)
            ]
        return shared, sides

    def _preference_raw(
        self, task: TaskContent, judgments: Sequence[JudgmentRecord]
    ) -> Iterator[dict]:
        """One row per strict pair of each judgment (the hot path: 1M rows per run must stay
        fast, so each row is one dict literal over per-task values; ``_provenance`` is the
        reference shape)."""
        options = self.options
        prompt = self.prompt_value(task)
        completion = {rid: self.completion_value(text) for rid, text in task.responses.items()}
        implicit = self._implicit
        if implicit:  # the prompt leads each completion; no prompt column
            completion = {
                rid: ([*prompt, *value] if self._conversational else prompt + value)
                for rid, value in completion.items()
            }
        total = len(judgments)
        votes = pair_votes(j.ordering for j in judgments) if total > 1 else None
        both_orders = options.tie_policy == "both_orders"
        together = _tie_counts(judgments) if total > 1 and both_orders else None
        expansion = options.expansion
        all_pairs = expansion == "all_pairs"
        margins = self._margins
        minimum = options.min_agreement
        spec_version, tie_policy = options.spec_version, options.tie_policy
        task_id, prompt_id = task.task_id, task.prompt_id
        summary = self.summary
        principle_list = self._principle_list

        def row(judgment, chosen, rejected, margin, agreement, tie, principles, discretion):
            judgment_id = judgment.judgment_id
            shaped = {
                "prompt": prompt,
                "chosen": completion[chosen],
                "rejected": completion[rejected],
                "margin": margin,
                "judgment_ids": [judgment_id],
                "annotator_ids": [judgment.annotator],
                "task_id": task_id,
                "prompt_id": prompt_id,
                "chosen_response_id": chosen,
                "rejected_response_id": rejected,
                "spec_version": spec_version,
                "principles": principles,
                "decisive": judgment.decisive,
                "discretion": discretion,
                "discretion_note": judgment.discretion_note,
                "agreement": agreement,
                "strength": judgment.strength,
                "both_bad": judgment.both_bad,
                "tie": tie,
                "tie_policy": tie_policy,
                "aggregation": "raw",
                "source_ranking_id": f"j{judgment_id}",
                "pair_expansion": expansion,
            }
            if implicit:
                del shaped["prompt"]
            return shaped

        for judgment in judgments:
            produced = False
            arbitrary_any = conflict_any = False
            verdicts = judgment.verdicts
            decisive = judgment.decisive
            strength = judgment.strength
            margin = margins[strength] if 0 <= strength <= 3 else 0.0
            for chosen, rejected in expand_pairs(judgment.ordering, expansion):
                principles, sides = principle_list(verdicts, decisive, chosen, rejected)
                arbitrary_any |= sides == 2
                conflict_any |= sides == 3
                agreement = votes[(chosen, rejected)] / total if votes is not None else 1.0
                if minimum is not None and agreement < minimum:
                    continue
                summary.rows += 1
                produced = True
                yield row(
                    judgment, chosen, rejected, margin, agreement, False, principles,
                    judgment.discretion or sides == 2,
                )  # fmt: skip
            if both_orders:
                for a, b in tied_pairs(judgment.ordering):
                    agreement = 1.0 if together is None else together[frozenset((a, b))] / total
                    if minimum is not None and agreement < minimum:
                        continue
                    for chosen, rejected in ((a, b), (b, a)):
                        principles, sides = principle_list(verdicts, decisive, chosen, rejected)
                        summary.rows += 1
                        produced = True
                        yield row(
                            judgment, chosen, rejected, 0.0, agreement, True, principles,
                            judgment.discretion or sides == 2,
                        )  # fmt: skip
            if produced:
                summary.count_judgment(
                    judgment, (arbitrary_any, conflict_any) if all_pairs else None
                )

    def consensus(self, task: TaskContent, judgments: Sequence[JudgmentRecord]) -> list[list[int]]:
        items = list(task.responses)
        orderings = [j.ordering for j in judgments]
        if self.options.aggregation == "bradley_terry":
            return bradley_terry_ordering(items, orderings)
        return majority_ordering(items, orderings)

    def _preference_aggregated(
        self, task: TaskContent, judgments: Sequence[JudgmentRecord]
    ) -> Iterator[dict]:
        options = self.options
        prompt = self.prompt_value(task)
        total = len(judgments)
        votes = pair_votes(j.ordering for j in judgments)
        consensus = self.consensus(task, judgments)
        ranking_id = f"t{task.task_id}"
        produced = False
        pairs = [(c, r, False) for c, r in expand_pairs(consensus, options.expansion)]
        if options.tie_policy == "both_orders":
            pairs += [(c, r, True) for a, b in tied_pairs(consensus) for c, r in ((a, b), (b, a))]
        together = _tie_counts(judgments)
        for chosen, rejected, tie in pairs:
            if tie:
                agreeing = [j for j in judgments if _same_bucket(j.ordering, chosen, rejected)]
                agreement = together[frozenset((chosen, rejected))] / total
                margin = 0.0
            else:
                agreeing = [j for j in judgments if _above(j.ordering, chosen, rejected)]
                agreement = votes[(chosen, rejected)] / total
                margin = (
                    sum(self._margins[j.strength] for j in agreeing) / len(agreeing)
                    if agreeing
                    else 0.0
                )
            strength = round(sum(j.strength for j in agreeing) / len(agreeing)) if agreeing else 0
            row = self._pair_columns(prompt, task, chosen, rejected)
            row.update(
                self._provenance(
                    judgments,
                    task,
                    chosen,
                    rejected,
                    margin=margin,
                    strength=strength,
                    agreement=agreement,
                    tie=tie,
                    ranking_id=ranking_id,
                )
            )
            if self._emit(row):
                produced = True
                yield row
        if produced:
            for judgment in judgments:
                self.summary.count_judgment(judgment)

    # ------------------------------------------------------------ K-way rankings

    def _ranking(self, task: TaskContent, judgments: Sequence[JudgmentRecord]) -> Iterator[dict]:
        prompt = self.prompt_value(task)
        ids = list(task.responses)
        index = {rid: i for i, rid in enumerate(ids)}
        completions = [task.responses[rid] for rid in ids]
        total = len(judgments)
        votes = pair_votes(j.ordering for j in judgments)

        def agreement_of(ordering) -> float:
            pairs = expand_pairs(ordering)
            if not pairs:
                return 1.0
            return sum(votes[p] for p in pairs) / (len(pairs) * total)

        if self.options.aggregation == "raw":
            groups = [((j,), j.ordering, f"j{j.judgment_id}") for j in judgments]
        else:
            groups = [(judgments, self.consensus(task, judgments), f"t{task.task_id}")]
        for group, ordering, ranking_id in groups:
            single = group[0] if len(group) == 1 else None
            row = {
                "prompt": prompt,
                "completions": completions,
                "response_ids": ids,
                "ranking": [[index[rid] for rid in bucket] for bucket in ordering],
                "ranking_id": ranking_id,
                "judgment_ids": [j.judgment_id for j in group],
                "annotator_ids": [j.annotator for j in group],
                "task_id": task.task_id,
                "prompt_id": task.prompt_id,
                "spec_version": self.options.spec_version,
                "strength": single.strength if single else 0,
                "both_bad": single.both_bad if single else False,
                "principles": [
                    _verdict_column(key, v, index)
                    for key, v in (single.verdicts.items() if single else ())
                ],
                "decisive": list(single.decisive) if single else [],
                "discretion": judgment_discretion(single) if single else False,
                "agreement": agreement_of(ordering),
                "aggregation": self.options.aggregation,
            }
            if self._emit(row):
                for judgment in group:
                    self.summary.count_judgment(judgment)
                yield row

    # ------------------------------------------------------------ KTO (unpaired)

    def _kto(self, task: TaskContent, judgments: Sequence[JudgmentRecord]) -> Iterator[dict]:
        prompt = self.prompt_value(task)
        for judgment in judgments:
            buckets = [b for b in judgment.ordering if b]
            labelled: list[tuple[int, bool]] = []
            if judgment.both_bad:
                labelled = [(rid, False) for bucket in buckets for rid in bucket]
            elif len(buckets) > 1:
                labelled = [(rid, True) for rid in buckets[0]]
                labelled += [(rid, False) for rid in buckets[-1]]
            for rid, label in labelled:
                row = {
                    "prompt": prompt,
                    "completion": self.completion_value(task.responses[rid]),
                    "label": label,
                    "judgment_id": judgment.judgment_id,
                    "annotator_id": judgment.annotator,
                    "task_id": task.task_id,
                    "prompt_id": task.prompt_id,
                    "response_id": rid,
                    "strength": judgment.strength,
                    "both_bad": judgment.both_bad,
                    "discretion": judgment_discretion(judgment),
                    "spec_version": self.options.spec_version,
                    "agreement": 1.0,
                }
                self._emit(row)
                yield row
            if labelled:
                self.summary.count_judgment(judgment)

    # ------------------------------------------------------------ raw judgments

    def _raw(self, task: TaskContent, judgments: Sequence[JudgmentRecord]) -> Iterator[dict]:
        prompt = self.prompt_value(task)
        responses = [{"id": rid, "text": text} for rid, text in task.responses.items()]
        include_rationale = self.options.include_rationale
        for judgment in judgments:
            row = {
                "judgment_id": judgment.judgment_id,
                "task_id": task.task_id,
                "prompt_id": task.prompt_id,
                "task_kind": task.kind,
                "annotator_id": judgment.annotator,
                "annotator_kind": judgment.annotator_kind,
                "prompt": prompt,
                "responses": responses,
                "ordering": judgment.ordering,
                "strength": judgment.strength,
                "both_bad": judgment.both_bad,
                "verdicts": [
                    {
                        "key": key,
                        "verdict": v if isinstance(v, str) else "prefers",
                        "response_id": v if isinstance(v, int) else None,
                    }
                    for key, v in judgment.verdicts.items()
                ],
                "decisive": list(judgment.decisive),
                "discretion": judgment.discretion,
                "discretion_note": judgment.discretion_note,
                "rationale": judgment.rationale if include_rationale else "",
                "confidence": judgment.confidence,
                "time_spent_ms": judgment.time_spent_ms,
                "created_at": judgment.created_at,
                "origin": judgment.origin,
                "spec_version": self.options.spec_version,
                "agreement": 1.0,
            }
            self._emit(row)
            self.summary.count_judgment(judgment)
            yield row


# ---------------------------------------------------------------- SFT


def principle_view(
    judgments: Sequence[JudgmentRecord], key: str, responses: dict[int, str]
) -> list[JudgmentRecord]:
    """Each judgment as its verdict for principle ``key`` ranks the task: the response that
    principle prefers above all the others (one bucket), strength 0 (a verdict has none).
    Judgments whose verdict is a tie, "n/a", missing or names no response of the task are left
    out: a per-principle dataset only holds pairs that principle decides."""
    viewed = []
    for judgment in judgments:
        favoured = judgment.verdicts.get(key)
        if isinstance(favoured, int) and favoured in responses:
            others = [rid for rid in responses if rid != favoured]
            viewed.append(replace(judgment, ordering=[[favoured], others], strength=0))
    return viewed


def sft_row(demo: DemoRecord, *, style: str = "conversational", spec_version: str = "") -> dict:
    """A demonstration → TRL ``messages`` (or ``text``) with provenance columns."""
    if style == "conversational":
        head = {"messages": [*demo.messages, {"role": "assistant", "content": demo.text}]}
    else:
        head = {"text": render_text_prompt(demo.messages) + " " + demo.text}
    return {
        **head,
        "demonstration_id": demo.demonstration_id,
        "annotator_id": demo.annotator,
        "prompt_id": demo.prompt_id,
        "task_id": demo.task_id,
        "based_on_response_id": demo.based_on,
        "cited_principles": list(demo.cited),
        "spec_version": spec_version,
        "created_at": demo.created_at,
    }


# ---------------------------------------------------------------- helpers


def _valid_ordering(ordering: Sequence[Sequence[int]], responses: dict[int, str]) -> bool:
    if len(ordering) == 2 and len(ordering[0]) == 1 and len(ordering[1]) == 1:
        a, b = ordering[0][0], ordering[1][0]
        return a != b and a in responses and b in responses
    seen = [rid for bucket in ordering for rid in bucket]
    return len(seen) == len(set(seen)) and all(rid in responses for rid in seen)


def _above(ordering, a: int, b: int) -> bool:
    position = ranks(ordering)
    return a in position and b in position and position[a] < position[b]


def _same_bucket(ordering, a: int, b: int) -> bool:
    position = ranks(ordering)
    return a in position and b in position and position[a] == position[b]


def _tie_counts(judgments: Sequence[JudgmentRecord]) -> Counter:
    counts: Counter = Counter()
    for judgment in judgments:
        counts.update(frozenset(pair) for pair in tied_pairs(judgment.ordering))
    return counts


def _verdict_column(key: str, verdict: int | str, index: dict[int, int]) -> dict:
    if isinstance(verdict, int):
        return {"key": key, "verdict": "prefers", "response_index": index.get(verdict, -1)}
    return {"key": key, "verdict": verdict, "response_index": -1}
