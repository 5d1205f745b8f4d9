"""Preference records in TRL, HH-RLHF and Chatbot Arena form → validated specs (one record at a
time, errors with their line); the specs every preference importer yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from annotation.datasets.importers.hh_rlhf import TURN, split_transcript
from annotation.datasets.importers.hh_rlhf import parse_pair as parse_hh_pair
from annotation.datasets.importers.prompts import validate_messages
from annotation.errors import ImportFileError
from annotation.models import TaskResponse
from annotation.specs import PromptSpec, ResponseSpec

ARENA_WINNERS = {"model_a", "model_b", "tie", "tie (bothbad)"}
CHOSEN, REJECTED = TaskResponse.SourceLabel.CHOSEN, TaskResponse.SourceLabel.REJECTED


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


def is_messages(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) for m in value)


def text_field(path: Path, line: int, name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ImportFileError(path, line, f"'{name}' must be a non-empty string or message list")
    return value


def single_assistant(path: Path, line: int, name: str, messages: list[dict]) -> str:
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise ImportFileError(path, line, f"'{name}' must be exactly one assistant message")
    return messages[0]["content"]


def text_prompt(prompt: str) -> list[dict]:
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


def common_prefix(chosen: str, rejected: str) -> str:
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
    conversational = is_messages(chosen)
    if conversational != is_messages(rejected):
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
            if not is_messages(prompt):
                raise ImportFileError(path, line, "'prompt' must be a message list here")
            messages = validate_messages(path, line, prompt)
        texts = [
            single_assistant(path, line, "chosen", chosen),
            single_assistant(path, line, "rejected", rejected),
        ]
    else:
        chosen = text_field(path, line, "chosen", chosen)
        rejected = text_field(path, line, "rejected", rejected)
        if prompt is None:
            hh_like = chosen.lstrip("\n").startswith("Human:") and TURN.search(chosen)
            if hh_like:
                hh = parse_hh_pair(path, line, {"chosen": chosen, "rejected": rejected})
                messages = hh.messages
                texts = [r.text for r in hh.responses]
            else:
                shared = common_prefix(chosen, rejected)
                if not shared.strip():
                    raise ImportFileError(
                        path, line, "implicit prompt: 'chosen' and 'rejected' share no prefix"
                    )
                messages = [{"role": "user", "content": shared.strip()}]
                texts = [chosen[len(shared) :].strip(), rejected[len(shared) :].strip()]
        else:
            messages = text_prompt(text_field(path, line, "prompt", prompt))
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


def parse_hh(path: Path, line: int, record: object) -> PreferenceSpec:
    return PreferenceSpec(
        prompt=parse_hh_pair(path, line, record), judgments=[JudgmentSpec(ordering=[[0], [1]])]
    )


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
    if not isinstance(winner, str) or winner not in ARENA_WINNERS:
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
