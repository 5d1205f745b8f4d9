"""Label Studio exports → preference specs: prompts and responses found by their keys, pairwise
choices and rankings, one judgment per annotator."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from annotation.datasets.importers.preference_formats import (
    JudgmentSpec,
    PreferenceSpec,
    is_messages,
    text_field,
)
from annotation.datasets.importers.prompts import validate_messages
from annotation.errors import ImportFileError
from annotation.specs import PromptSpec, ResponseSpec

LS_PROMPT_KEYS = ("prompt", "question", "instruction", "input", "context", "chat", "dialogue")


LS_RESPONSE_KEYS = (
    ("answer1", "answer2"),
    ("text1", "text2"),
    ("response_a", "response_b"),
    ("response1", "response2"),
    ("completion_a", "completion_b"),
    ("left", "right"),
    ("a", "b"),
)


_LEFT = {
    "left",
    "a",
    "1",
    "first",
    "answer1",
    "answer 1",
    "response a",
    "response 1",
    "text1",
    "model a",
    "left better",
    "a better",
}


_RIGHT = {
    "right",
    "b",
    "2",
    "second",
    "answer2",
    "answer 2",
    "response b",
    "response 2",
    "text2",
    "model b",
    "right better",
    "b better",
}


_TIE = {"tie", "equal", "same", "both good", "equally good", "no preference", "draw"}


_BOTH_BAD = {
    "both bad",
    "bothbad",
    "tie bothbad",
    "tie both bad",
    "both are bad",
    "neither",
    "neither good",
    "none",
}


def _normalise_choice(value: str) -> str:
    value = re.sub(r"[_\-()]+", " ", value.strip().lower())
    value = re.sub(r"\bis\b|\bare\b(?! bad)", "", value)
    return re.sub(r"\s+", " ", value).strip()


def _ls_annotator(path: Path, line: int, annotation: dict) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("id") or who.get("email")
    return "" if who in (None, "") else str(who)


def _ls_ranking(path: Path, line: int, where: str, value: dict, item_ids: list[str] | None):
    """A ``ranker`` result → strict buckets of response indexes, best first."""
    if item_ids is None:
        raise ImportFileError(
            path, line, f"{where}: a ranker result needs the responses as 'data.items'"
        )
    ranked = value.get("ranker")
    if isinstance(ranked, dict):
        if len(ranked) != 1:
            names = ", ".join(map(str, ranked))
            raise ImportFileError(
                path, line, f"{where}: ranker buckets ({names}) do not say which is better; "
                "export a plain ranking (List + Ranker without Bucket tags)",
            )  # fmt: skip
        ranked = next(iter(ranked.values()))
    if not isinstance(ranked, list) or not all(isinstance(i, str | int) for i in ranked):
        raise ImportFileError(path, line, f"{where}: 'ranker' must list the item ids in order")
    ranked = [str(i) for i in ranked]
    if sorted(ranked) != sorted(item_ids):
        raise ImportFileError(
            path, line, f"{where}: the ranking must name each item once ({', '.join(item_ids)})"
        )
    return [[item_ids.index(i)] for i in ranked]


def _ls_judgment(
    path: Path, line: int, number: int, annotation: dict, item_ids: list[str] | None = None
) -> JudgmentSpec:
    """One annotation; ``item_ids``: the ids of ``data.items`` (None: a pairwise task)."""
    where = f"annotation {number}"
    results = annotation.get("result")
    if not isinstance(results, list):
        raise ImportFileError(path, line, f"{where}: 'result' must be a list")
    side: str | None = None
    ranking: list[list[int]] | None = None
    both_bad = False
    tie = False
    rationale: list[str] = []

    def set_side(value: str) -> None:
        nonlocal side
        if side is not None and side != value:
            raise ImportFileError(path, line, f"{where}: contradictory selections")
        side = value

    for item in results:
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise ImportFileError(path, line, f"{where}: each result needs a 'value' object")
        kind, value = item.get("type"), item["value"]
        if kind == "pairwise":
            selected = value.get("selected")
            if selected not in {"left", "right"}:
                raise ImportFileError(
                    path, line, f"{where}: pairwise 'selected' must be left or right"
                )
            set_side(selected)
        elif kind == "choices":
            choices = value.get("choices")
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise ImportFileError(path, line, f"{where}: 'choices' must be a list of strings")
            for choice in choices:
                norm = _normalise_choice(choice)
                if norm in _LEFT:
                    set_side("left")
                elif norm in _RIGHT:
                    set_side("right")
                elif norm in _TIE:
                    tie = True
                elif norm in _BOTH_BAD:
                    both_bad = True
                else:
                    raise ImportFileError(path, line, f"{where}: unknown choice {choice!r}")
        elif kind == "ranker":
            if ranking is not None:
                raise ImportFileError(path, line, f"{where}: more than one ranker result")
            ranking = _ls_ranking(path, line, where, value, item_ids)
        elif kind == "textarea":
            texts = value.get("text", [])
            rationale.extend(t for t in (texts if isinstance(texts, list) else [texts]) if t)
    count = 2 if item_ids is None else len(item_ids)
    if side is not None and count != 2:
        raise ImportFileError(path, line, f"{where}: left / right needs exactly two responses")
    if sum((side is not None, tie, ranking is not None)) > 1:
        raise ImportFileError(
            path, line, f"{where}: more than one of a side, a ranking and a tie was given"
        )
    if side is None and ranking is None and not (tie or both_bad):
        raise ImportFileError(
            path, line, f"{where}: no pairwise selection, ranking or preference choice"
        )
    if ranking is not None:
        ordering = ranking
    else:
        ordering = {"left": [[0], [1]], "right": [[1], [0]]}.get(side or "", [list(range(count))])
    return JudgmentSpec(
        ordering=ordering,
        both_bad=both_bad,
        annotator=_ls_annotator(path, line, annotation),
        rationale="\n".join(str(t) for t in rationale),
    )


def _ls_items(path: Path, line: int, items: object) -> tuple[list[str], list[str]]:
    """``data.items`` of a List + Ranker task → (item ids, response texts)."""
    if not isinstance(items, list) or not 2 <= len(items) <= 8:
        raise ImportFileError(path, line, "'data.items' must list 2 to 8 responses")
    ids, texts = [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or item.get("id") in (None, ""):
            raise ImportFileError(path, line, f"item {index} needs an 'id'")
        key = next((k for k in ("body", "text", "content") if k in item), "body")
        texts.append(text_field(path, line, f"items[{index}].{key}", item.get(key)))
        ids.append(str(item["id"]))
    if len(set(ids)) != len(ids):
        raise ImportFileError(path, line, "'data.items' repeats an id")
    return ids, texts


def _ls_keys(path: Path, line: int, data: dict, keys: Sequence[str] | None) -> tuple:
    if keys:
        prompt_key, left_key, right_key = keys
        missing = [k for k in keys if k not in data]
        if missing:
            raise ImportFileError(path, line, f"'data' lacks {', '.join(missing)}")
        return prompt_key, left_key, right_key
    pair = next((p for p in LS_RESPONSE_KEYS if p[0] in data and p[1] in data), None)
    if pair is None and "items" in data:
        pair = ("items",)
    if pair is None:
        raise ImportFileError(
            path, line, "'data' needs two responses (answer1/answer2, text1/text2, …) or items"
        )
    prompt_key = next((k for k in LS_PROMPT_KEYS if k in data), None)
    if prompt_key is None:
        raise ImportFileError(path, line, f"'data' needs a prompt ({', '.join(LS_PROMPT_KEYS)})")
    return prompt_key, *pair


def parse_label_studio(
    path: Path, line: int, record: object, keys: Sequence[str] | None = None
) -> PreferenceSpec:
    if not isinstance(record, dict) or not isinstance(record.get("data"), dict):
        raise ImportFileError(path, line, "each task must be an object with a 'data' object")
    data = record["data"]
    prompt_key, *response_keys = _ls_keys(path, line, data, keys)
    prompt = data[prompt_key]
    if is_messages(prompt):
        messages = validate_messages(path, line, prompt)
    else:
        messages = [{"role": "user", "content": text_field(path, line, prompt_key, prompt)}]
    if response_keys == ["items"]:
        item_ids, texts = _ls_items(path, line, data["items"])
        sources = [f"external:label-studio:{i}"[:300] for i in item_ids]
    else:
        item_ids = None
        texts = [text_field(path, line, key, data[key]) for key in response_keys]
        sources = ["external:label-studio"] * 2
    annotations = record.get("annotations", record.get("completions", []))
    if not isinstance(annotations, list):
        raise ImportFileError(path, line, "'annotations' must be a list")
    judgments = []
    for number, annotation in enumerate(annotations, start=1):
        if not isinstance(annotation, dict):
            raise ImportFileError(path, line, f"annotation {number} must be an object")
        if annotation.get("was_cancelled"):
            continue
        judgments.append(_ls_judgment(path, line, number, annotation, item_ids))
    who = [j.annotator for j in judgments]
    if len(set(who)) != len(who):
        raise ImportFileError(path, line, "two annotations by the same annotator on one task")
    return PreferenceSpec(
        prompt=PromptSpec(
            messages=messages,
            responses=[ResponseSpec(t, src) for t, src in zip(texts, sources, strict=True)],
            external_id=str(record.get("id") or "")[:200],
            metadata={"format": "label-studio", "data_keys": [prompt_key, *response_keys]},
            kind="compare" if len(texts) == 2 else "rank",
        ),
        judgments=judgments,
    )
