"""Preference data with existing labels → tasks plus judgments by a named external annotator.

Formats (``FORMATS``):

* ``trl``: TRL preference rows, ``{"prompt"?, "chosen", "rejected"}``, as text or
  conversational (lists of ``{role, content}``), with an explicit or implicit prompt (implicit:
  the shared prefix of ``chosen`` and ``rejected``; HH-style ``Human:/Assistant:`` text is split
  into turns). JSONL, JSON, CSV or Parquet.
* ``hh-rlhf``: HH-RLHF transcripts (``{"chosen", "rejected"}``), chosen ranked first.
* ``arena``: Chatbot Arena battles (``model_a``, ``model_b``, ``winner`` ∈ ``model_a`` /
  ``model_b`` / ``tie`` / ``tie (bothbad)``, ``conversation_a`` / ``_b``). Ties become one
  bucket; ``tie (bothbad)`` also sets ``both_bad``.
* ``label-studio``: a Label Studio JSON export of a pairwise project: ``data`` holds the prompt
  and two responses (``answer1``/``answer2``, ``text1``/``text2``, ``response_a``/``_b`` …);
  each non-cancelled annotation gives a judgment from ``pairwise`` (``selected: left|right``)
  and/or ``choices`` (left/right/A/B, ``tie``, ``both bad``) and ``textarea`` (rationale).
  Or a ``List`` + ``Ranker`` project: ``data.items`` holds 2..8 responses ``{id, body|text}``
  (a compare or rank task) and a ``ranker`` result orders all their ids (``choices`` may add
  ``tie`` — all in one bucket — or ``both bad``). Ranker *buckets* say nothing about which
  bucket is better, so they are refused, as is a ranking that leaves out or repeats an item.
  Annotator ``<name>:<completed_by>``.

Like every importer: the whole file is parsed and validated first (``ImportFileError`` naming
``path:line``), then tasks and judgments are written in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from django.db import transaction
from django.db.models import F

from annotation.datasets import bulk, pg
from annotation.datasets.importers.checks import check_external_ids
from annotation.datasets.importers.hh_rlhf import TURN, split_transcript
from annotation.datasets.importers.hh_rlhf import parse_pair as parse_hh_pair
from annotation.datasets.importers.prompts import validate_messages
from annotation.datasets.importers.tabular import (
    csv_records,
    detect_format,
    iter_records,
    json_array_records,
)
from annotation.errors import ImportFileError
from annotation.models import AnnotatorProfile, Judgment, Project, TaskResponse
from annotation.projects import services as project_services
from annotation.specs import PromptSpec, ResponseSpec
from common import events
from common.gc_pause import cyclic_gc_paused

FORMATS = ("trl", "hh-rlhf", "arena", "label-studio")
CHOSEN, REJECTED = TaskResponse.SourceLabel.CHOSEN, TaskResponse.SourceLabel.REJECTED
ARENA_WINNERS = {"model_a", "model_b", "tie", "tie (bothbad)"}


@dataclass(frozen=True)
class JudgmentSpec:
    """A labelled verdict on the responses of one ``PromptSpec`` (indexes, best first)."""

    ordering: list[list[int]]
    strength: int = 0
    both_bad: bool = False
    annotator: str = ""  # "" = the import's named annotator; else a suffix ("<name>:<suffix>")
    rationale: str = ""


@dataclass(frozen=True)
class PreferenceSpec:
    prompt: PromptSpec
    judgments: list[JudgmentSpec] = field(default_factory=list)


@dataclass(frozen=True)
class ImportResult:
    tasks: int
    judgments: int
    annotators: list[str]


# ---------------------------------------------------------------- TRL


def _is_messages(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) for m in value)


def _text(path: Path, line: int, name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ImportFileError(path, line, f"'{name}' must be a non-empty string or message list")
    return value


def _single_assistant(path: Path, line: int, name: str, messages: list[dict]) -> str:
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise ImportFileError(path, line, f"'{name}' must be exactly one assistant message")
    return messages[0]["content"]


def _text_prompt(prompt: str) -> list[dict]:
    """A text prompt: HH-style turns when it has them, else one user message."""
    if TURN.search("\n\n" + prompt.lstrip("\n")) and prompt.lstrip("\n").startswith(
        ("Human:", "Assistant:", "System:")
    ):
        stripped = prompt.rstrip()
        if stripped.endswith("Assistant:"):
            stripped = stripped[: -len("Assistant:")].rstrip()
        try:
            turns = split_transcript("\n\n" + stripped.lstrip("\n"))
        except ValueError:
            turns = []
        if turns:
            return turns
    return [{"role": "user", "content": prompt.strip()}]


def _common_prefix(chosen: str, rejected: str) -> str:
    """TRL's ``extract_prompt`` rule for text: the shared prefix, leaving a space that precedes
    the first difference to the completions."""
    limit = min(len(chosen), len(rejected))
    index = 0
    while index < limit and chosen[index] == rejected[index]:
        index += 1
    if 0 < index < limit and chosen[index - 1] == " ":
        index -= 1
    return chosen[:index]


def parse_trl(path: Path, line: int, record: object) -> PreferenceSpec:
    if not isinstance(record, dict):
        raise ImportFileError(path, line, "each record must be a JSON object")
    chosen, rejected = record.get("chosen"), record.get("rejected")
    prompt = record.get("prompt")
    if chosen is None or rejected is None:
        raise ImportFileError(path, line, "needs 'chosen' and 'rejected'")
    conversational = _is_messages(chosen)
    if conversational != _is_messages(rejected):
        raise ImportFileError(path, line, "'chosen' and 'rejected' must both be text or messages")
    if conversational:
        chosen = validate_messages(path, line, chosen)
        rejected = validate_messages(path, line, rejected)
        if prompt is None:  # implicit prompt: the shared leading messages
            shared = 0
            while (
                shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]
            ):
                shared += 1
            messages, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
            if not messages:
                raise ImportFileError(path, line, "implicit prompt: no shared leading messages")
        else:
            if not _is_messages(prompt):
                raise ImportFileError(path, line, "'prompt' must be a message list here")
            messages = validate_messages(path, line, prompt)
        texts = [
            _single_assistant(path, line, "chosen", chosen),
            _single_assistant(path, line, "rejected", rejected),
        ]
    else:
        chosen = _text(path, line, "chosen", chosen)
        rejected = _text(path, line, "rejected", rejected)
        if prompt is None:
            hh_like = chosen.lstrip("\n").startswith("Human:") and TURN.search(chosen)
            if hh_like:
                hh = parse_hh_pair(path, line, {"chosen": chosen, "rejected": rejected})
                messages = hh.messages
                texts = [r.text for r in hh.responses]
            else:
                shared = _common_prefix(chosen, rejected)
                if not shared.strip():
                    raise ImportFileError(
                        path, line, "implicit prompt: 'chosen' and 'rejected' share no prefix"
                    )
                messages = [{"role": "user", "content": shared.strip()}]
                texts = [chosen[len(shared) :].strip(), rejected[len(shared) :].strip()]
        else:
            messages = _text_prompt(_text(path, line, "prompt", prompt))
            texts = [chosen.strip(), rejected.strip()]
    metadata = {"format": "trl"}
    for key in ("margin", "score_chosen", "score_rejected", "source"):
        if key in record and record[key] is not None:
            metadata[key] = record[key]
    return PreferenceSpec(
        prompt=PromptSpec(
            messages=messages,
            responses=[
                ResponseSpec(texts[0], "external:trl", CHOSEN),
                ResponseSpec(texts[1], "external:trl", REJECTED),
            ],
            external_id=str(record.get("id") or "")[:200],
            metadata=metadata,
            kind="compare",
        ),
        judgments=[JudgmentSpec(ordering=[[0], [1]])],
    )


# ---------------------------------------------------------------- HH-RLHF


def parse_hh(path: Path, line: int, record: object) -> PreferenceSpec:
    return PreferenceSpec(
        prompt=parse_hh_pair(path, line, record), judgments=[JudgmentSpec(ordering=[[0], [1]])]
    )


# ---------------------------------------------------------------- Chatbot Arena


def _arena_conversation(path: Path, line: int, name: str, value: object) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise ImportFileError(path, line, f"'{name}' must be a non-empty message list")
    return validate_messages(path, line, value)


def parse_arena(path: Path, line: int, record: object) -> PreferenceSpec:
    if not isinstance(record, dict):
        raise ImportFileError(path, line, "each battle must be a JSON object")
    for key in ("model_a", "model_b"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise ImportFileError(path, line, f"'{key}' must be a non-empty string")
    winner = record.get("winner")
    if winner not in ARENA_WINNERS:
        raise ImportFileError(
            path, line, f"'winner' must be one of {sorted(ARENA_WINNERS)}; got {winner!r}"
        )
    conv_a = _arena_conversation(path, line, "conversation_a", record.get("conversation_a"))
    conv_b = _arena_conversation(path, line, "conversation_b", record.get("conversation_b"))
    shared = 0
    while shared < min(len(conv_a), len(conv_b)) - 1 and conv_a[shared] == conv_b[shared]:
        shared += 1
    messages = conv_a[:shared]
    if not messages or messages[-1]["role"] != "user":
        raise ImportFileError(path, line, "conversations must share a prompt ending in a user turn")
    if conv_a[-1]["role"] != "assistant" or conv_b[-1]["role"] != "assistant":
        raise ImportFileError(path, line, "conversations must end with an assistant turn")
    metadata = {
        "format": "arena",
        **{
            key: record[key]
            for key in ("question_id", "judge", "turn", "anony", "language", "tstamp")
            if key in record
        },
    }
    if len(conv_a) - shared > 1 or len(conv_b) - shared > 1:
        metadata["conversation_a"], metadata["conversation_b"] = conv_a, conv_b
    labels = {
        "model_a": (CHOSEN, REJECTED),
        "model_b": (REJECTED, CHOSEN),
    }.get(winner, ("", ""))
    ordering = {"model_a": [[0], [1]], "model_b": [[1], [0]]}.get(winner, [[0, 1]])
    return PreferenceSpec(
        prompt=PromptSpec(
            messages=messages,
            responses=[
                ResponseSpec(conv_a[-1]["content"], f"model:{record['model_a']}"[:300], labels[0]),
                ResponseSpec(conv_b[-1]["content"], f"model:{record['model_b']}"[:300], labels[1]),
            ],
            external_id=str(record.get("question_id") or "")[:200],
            metadata=metadata,
            kind="compare",
        ),
        judgments=[JudgmentSpec(ordering=ordering, both_bad=winner == "tie (bothbad)")],
    )


# ---------------------------------------------------------------- Label Studio

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
        texts.append(_text(path, line, f"items[{index}].{key}", item.get(key)))
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
    if _is_messages(prompt):
        messages = validate_messages(path, line, prompt)
    else:
        messages = [{"role": "user", "content": _text(path, line, prompt_key, prompt)}]
    if response_keys == ["items"]:
        item_ids, texts = _ls_items(path, line, data["items"])
        sources = [f"external:label-studio:{i}"[:300] for i in item_ids]
    else:
        item_ids = None
        texts = [_text(path, line, key, data[key]) for key in response_keys]
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


# ---------------------------------------------------------------- parse + write


def parse_preferences(
    path: str | Path, fmt: str, *, file_format: str | None = None, ls_keys=None
) -> Iterator[tuple[int, PreferenceSpec]]:
    """``(line, spec)`` for every record; ``file_format`` overrides the suffix (jsonl/json/…)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ImportFileError(path, None, f"unknown format {fmt!r}; choose one of {FORMATS}")
    if fmt == "label-studio":
        records = iter_records(path, file_format) if file_format else json_array_records(path)
        for line, record in records:
            yield line, parse_label_studio(path, line, record, ls_keys)
        return
    parser = {"trl": parse_trl, "hh-rlhf": parse_hh, "arena": parse_arena}[fmt]
    source_format = file_format or detect_format(path)
    records = csv_records(path) if source_format == "csv" else iter_records(path, source_format)
    for line, record in records:
        yield line, parser(path, line, record)


def _annotator(name: str, kind: str, model_ref: str = ""):
    if kind == AnnotatorProfile.Kind.MODEL:
        return project_services.get_or_create_model_annotator(name=name, model_ref=model_ref)
    user = project_services.User.objects.filter(username=name).first()
    if user is not None:
        return user
    return project_services.create_user(
        username=name,
        password=None,
        role=AnnotatorProfile.Role.VIEWER,
        kind=AnnotatorProfile.Kind.HUMAN,
        model_ref=model_ref or f"external:{name}",
    )


@transaction.atomic
def write_preferences(
    *,
    project: Project,
    path: str | Path,
    parsed: Sequence[tuple[int, PreferenceSpec]],
    fmt: str,
    annotator: str,
    annotator_kind: str = AnnotatorProfile.Kind.HUMAN,
    model_ref: str = "",
) -> ImportResult:
    """Write validated specs: tasks through ``bulk.create_tasks``, then judgments."""
    if not annotator or len(annotator) > 140:
        raise ImportFileError(path, None, "a named annotator (≤ 140 characters) is required")
    if annotator_kind not in AnnotatorProfile.Kind.values:
        raise ImportFileError(path, None, f"unknown annotator kind {annotator_kind!r}")
    check_external_ids(project, path, [(line, spec.prompt) for line, spec in parsed])
    names = sorted(
        {
            f"{annotator}:{j.annotator}" if j.annotator else annotator
            for _, spec in parsed
            for j in spec.judgments
        }
    )
    users = {name: _annotator(name, annotator_kind, model_ref) for name in names}
    origin = f"import:{fmt}"
    remaining = iter(spec for _, spec in parsed)
    judged = 0

    def attach(specs: list[PromptSpec], task_ids: list[int], response_ids: list[list[int]]):
        nonlocal judged
        rows = []
        for task_id, ids in zip(task_ids, response_ids, strict=True):
            spec = next(remaining)
            for judgment in spec.judgments:
                name = f"{annotator}:{judgment.annotator}" if judgment.annotator else annotator
                rows.append((
                    task_id, users[name].pk,
                    [[ids[i] for i in bucket] for bucket in judgment.ordering],
                    judgment.strength, judgment.both_bad, judgment.rationale, origin,
                ))  # fmt: skip
        columns = ("task_id", "annotator_id", "ordering", "strength", "both_bad", "rationale",
                   "origin")  # fmt: skip
        if pg.enabled():
            pg.copy_rows(Judgment, columns, rows)
        else:
            Judgment.objects.bulk_create(
                (Judgment(**dict(zip(columns, row, strict=True))) for row in rows),
                batch_size=2000,
            )
        judged += len(rows)

    tasks = bulk.create_tasks(
        project=project,
        specs=[replace(spec.prompt, submitted=len(spec.judgments)) for _, spec in parsed],
        on_batch=attach,
    )
    Project.objects.filter(pk=project.pk).update(judgment_count=F("judgment_count") + judged)
    if judged:
        events.publish("judgments.imported", project_id=project.pk, judgments=judged)
    return ImportResult(tasks=tasks, judgments=judged, annotators=names)


def import_preferences(
    *,
    project: Project,
    path: str | Path,
    fmt: str,
    annotator: str,
    annotator_kind: str = AnnotatorProfile.Kind.HUMAN,
    model_ref: str = "",
    file_format: str | None = None,
    ls_keys: Sequence[str] | None = None,
    limit: int | None = None,
) -> ImportResult:
    """Validate every record of ``path`` (nothing written on any error), then write it all."""
    with cyclic_gc_paused():
        parsed = []
        for line, spec in parse_preferences(path, fmt, file_format=file_format, ls_keys=ls_keys):
            if limit is not None and len(parsed) >= limit:
                break
            parsed.append((line, spec))
        if not parsed:
            raise ImportFileError(path, None, "no records found")
        return write_preferences(
            project=project,
            path=path,
            parsed=parsed,
            fmt=fmt,
            annotator=annotator,
            annotator_kind=annotator_kind,
            model_ref=model_ref,
        )
