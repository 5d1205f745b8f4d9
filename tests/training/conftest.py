"""Snapshots for training tests: small synthetic preference / SFT data written as artifacts."""

import json
import random

import pytest
from django.conf import settings

from annotation.models import DatasetSnapshot

GOOD = ["Sure, here is a safe and kind answer.", "I can help with that, politely and safely."]
BAD = ["No. Figure it out yourself, idiot.", "Whatever, go away."]


def write_snapshot(project, kind: str, rows: list[dict]) -> DatasetSnapshot:
    folder = settings.ARTIFACT_ROOT / "test-snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    snapshot = DatasetSnapshot.objects.create(
        project=project,
        principle_set=project.principle_set,
        kind=kind,
        status="ready",
        row_count=len(rows),
    )
    path = folder / f"{snapshot.pk}-{kind}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    snapshot.artifact_path = str(path)
    snapshot.save(update_fields=["artifact_path"])
    return snapshot


def preference_rows(count: int = 48, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "prompt": f"User question number {i}: can you help me?",
            "chosen": rng.choice(GOOD),
            "rejected": rng.choice(BAD),
            "margin": float(rng.choice([0, 1, 2])),
            "principle_verdicts": {"harmless": "chosen", "helpful": rng.choice(["chosen", "n/a"])},
        }
        for i in range(count)
    ]


@pytest.fixture
def preference_snapshot(project):
    return write_snapshot(project, "preference", preference_rows())


@pytest.fixture
def sft_snapshot(project):
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": GOOD[i % 2]},
            ]
        }
        for i in range(32)
    ]
    return write_snapshot(project, "sft", rows)
