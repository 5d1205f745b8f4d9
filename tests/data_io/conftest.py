"""Fixtures for import/export tests: artifact and media roots in a temporary folder."""

import json
from pathlib import Path

import pytest

HH_DEMO = (
    Path(__file__).resolve().parents[2]
    / "annotation"
    / "demo_data"
    / ("hh-rlhf-harmless-base-test.jsonl.gz")
)


@pytest.fixture(autouse=True)
def _roots(settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.MEDIA_ROOT = tmp_path / "media"
    # PBKDF2 at production strength costs 0.5 s per test user; tests need no such strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def write_jsonl(path: Path, records) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n",
        encoding="utf-8",
    )
    return path


def arena_battle(i: int, winner: str) -> dict:
    question = [{"role": "user", "content": f"Question {i}?"}]
    return {
        "question_id": f"q{i}",
        "model_a": "alpha-7b",
        "model_b": "beta-13b",
        "winner": winner,
        "judge": f"arena_user_{i}",
        "conversation_a": [*question, {"role": "assistant", "content": f"A says {i}"}],
        "conversation_b": [*question, {"role": "assistant", "content": f"B says {i}"}],
        "turn": 1,
        "anony": True,
        "language": "English",
        "tstamp": 1700000000.0 + i,
    }


def label_studio_task(i: int, result: list, *, completed_by=1, cancelled=False) -> dict:
    return {
        "id": 100 + i,
        "data": {"prompt": f"Prompt {i}", "answer1": f"left {i}", "answer2": f"right {i}"},
        "annotations": [
            {
                "id": 1000 + i,
                "completed_by": completed_by,
                "was_cancelled": cancelled,
                "result": result,
                "lead_time": 3.2,
            }
        ],
    }


def pairwise(side: str) -> dict:
    return {
        "from_name": "comparison",
        "to_name": "answer1",
        "type": "pairwise",
        "value": {"selected": side},
    }


def choices(*values: str) -> dict:
    return {
        "from_name": "verdict",
        "to_name": "prompt",
        "type": "choices",
        "value": {"choices": list(values)},
    }


def judge(task, annotator, ordering, *, verdicts=None, decisive=(), **fields):
    """A judgment written directly (with principle verdicts and decisive principles)."""
    from annotation.models import Judgment, Principle, PrincipleVerdict

    judgment = Judgment.objects.create(task=task, annotator=annotator, ordering=ordering, **fields)
    principles = {
        p.key: p for p in Principle.objects.filter(principle_set=task.project.principle_set)
    }
    for key, verdict in (verdicts or {}).items():
        PrincipleVerdict.objects.create(
            judgment=judgment,
            principle=principles[key],
            verdict="prefers" if isinstance(verdict, int) else verdict,
            preferred_response_id=verdict if isinstance(verdict, int) else None,
        )
    judgment.decisive_principles.set([principles[key] for key in decisive])
    return judgment


def response_ids(task):
    return list(task.task_responses.order_by("position").values_list("response_id", flat=True))


def ranker_task(i: int, item_ids: list[str], results: list[list], *, completed_by=1) -> dict:
    """A Label Studio List + Ranker task: ``data.items`` and one annotation per result list."""
    return {
        "id": 200 + i,
        "data": {
            "prompt": f"Rank these {i}",
            "items": [
                {"id": item, "title": item, "body": f"{item} answers {i}"} for item in item_ids
            ],
        },
        "annotations": [
            {"id": 2000 + i * 10 + n, "completed_by": completed_by + n, "result": result}
            for n, result in enumerate(results)
        ],
    }


def ranker(value) -> dict:
    return {"from_name": "rank", "to_name": "results", "type": "ranker", "value": {"ranker": value}}
