"""Turn a dataset snapshot's artifact into the plain rows the trainers take."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from annotation.models import DatasetSnapshot
from models_registry import storage
from models_registry.models import ModelVersion
from training.models import TrainingRun


def snapshot_file(snapshot: DatasetSnapshot) -> Path:
    path = Path(snapshot.artifact_path)
    return path if path.is_absolute() else Path(settings.ARTIFACT_ROOT) / path


def read_rows(snapshot: DatasetSnapshot) -> Iterator[dict]:
    """Every row of a JSONL or Parquet snapshot."""
    path = snapshot_file(snapshot)
    if snapshot.format == DatasetSnapshot.Format.PARQUET:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            yield from batch.to_pylist()
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _text(value) -> str:
    """A completion as text: conversational completions are lists of assistant messages."""
    if isinstance(value, list):
        return "\n".join(m.get("content", "") for m in value if isinstance(m, dict))
    return str(value)


def _preference_row(row: dict) -> dict:
    out = {
        "prompt": row["prompt"],
        "chosen": _text(row["chosen"]),
        "rejected": _text(row["rejected"]),
    }
    if row.get("margin") is not None:
        out["margin"] = float(row["margin"])
    verdicts = row.get("principle_verdicts") or row.get("principles")
    if isinstance(verdicts, dict):
        out["principles"] = [k for k, v in verdicts.items() if v in ("chosen", "rejected")]
    elif isinstance(verdicts, list):
        out["principles"] = [
            v.get("key") or v.get("id")
            for v in verdicts
            if isinstance(v, dict) and v.get("favours", v.get("verdict")) in ("chosen", "rejected")
        ]
    return out


def training_rows(kind: str, snapshot: DatasetSnapshot) -> list[dict]:
    """Rows shaped for ``kind``: preference pairs, SFT messages, or unique prompts."""
    rows = read_rows(snapshot)
    if kind in {"reward", "dpo"}:
        return [_preference_row(row) for row in rows]
    if kind == "sft":
        return [{"messages": row["messages"]} for row in rows]
    prompts, seen = [], set()
    for row in rows:
        prompt = row.get("prompt") or row.get("messages", [])[:-1]
        key = json.dumps(prompt, sort_keys=True)
        if prompt and key not in seen:
            seen.add(key)
            prompts.append({"prompt": prompt})
    return prompts


def training_data(run: TrainingRun) -> dict:
    """The ``data`` argument of ``training.trainers.run_training`` for this run."""
    base = storage.loadable(run.base_model_version) if run.base_model_version else run.base_model
    data = {"base_model": base, "rows": training_rows(run.kind, run.snapshot)}
    reward_models = _principle_reward_models(run)
    if run.reward_model_version:
        reward_models["reward"] = storage.loadable(run.reward_model_version)
    if reward_models:
        data["reward_models"] = reward_models
    return data


def _principle_reward_models(run: TrainingRun) -> dict[str, str]:
    """principle key → artifact of its reward model, for a run trained to a precedence."""
    by_key = run.precedence.get("reward_models") or {}
    found = ModelVersion.objects.in_bulk(list(by_key.values()))
    return {key: storage.loadable(found[pk]) for key, pk in by_key.items()}
