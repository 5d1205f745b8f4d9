"""Turn a dataset snapshot's artifact into the plain rows the trainers take."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.conf import settings

from annotation.datasets.exports.pairs import expand_pairs
from annotation.models import DatasetSnapshot
from models_registry import storage
from models_registry.models import ModelVersion
from training.models import TrainingRun
from training.trainers.config import RANKING_PAIRS

#: kinds trained on preference pairs
PAIRWISE_KINDS = frozenset({"reward", "dpo", "orpo"})


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


def ranking_pairs(row: dict, mode: str = "all") -> list[dict]:
    """The preference pairs of one ranking row (``completions``, ``ranking``: buckets of indices,
    best first; a bucket is a tie). ``mode``: ``all`` -- every response against every response
    ranked below it (K(K-1)/2 pairs without ties); ``adjacent`` -- each rank against the next;
    ``best_vs_rest`` -- the best against every other. Ties give no pair."""
    if mode not in RANKING_PAIRS:
        raise ValueError(f"ranking_pairs must be one of {RANKING_PAIRS}, got {mode!r}.")
    completions = row["completions"]
    pairs = expand_pairs(row["ranking"], "all_pairs" if mode == "all" else mode)
    return [
        {
            "prompt": row["prompt"],
            "chosen": _text(completions[better]),
            "rejected": _text(completions[worse]),
        }
        for better, worse in pairs
    ]


def _ranking_kto_rows(row: dict) -> list[dict]:
    """A ranking unpaired as the KTO export does: the top bucket desirable, the bottom one not."""
    buckets = [bucket for bucket in row["ranking"] if bucket]
    if len(buckets) < 2:
        return []
    labelled = [(i, True) for i in buckets[0]] + [(i, False) for i in buckets[-1]]
    return [
        {"prompt": row["prompt"], "completion": _text(row["completions"][i]), "label": label}
        for i, label in labelled
    ]


def _kto_rows(snapshot_kind: str, rows: Iterable[dict]) -> Iterator[dict]:
    """Unpaired ``{prompt, completion, label}`` rows from a KTO, preference or ranking snapshot
    (a pair gives its chosen response as desirable and its rejected one as undesirable)."""
    for row in rows:
        if snapshot_kind == DatasetSnapshot.Kind.RANKING:
            yield from _ranking_kto_rows(row)
        elif snapshot_kind == DatasetSnapshot.Kind.KTO:
            yield {"prompt": row["prompt"], "completion": _text(row["completion"]),
                   "label": bool(row["label"])}  # fmt: skip
        else:
            pair = _preference_row(row)
            yield {"prompt": pair["prompt"], "completion": pair["chosen"], "label": True}
            yield {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False}


def training_rows(kind: str, snapshot: DatasetSnapshot, config: dict | None = None) -> list[dict]:
    """Rows shaped for ``kind``: preference pairs (a ranking snapshot expanded into pairs by
    ``config["ranking_pairs"]``), unpaired KTO rows, SFT messages, or unique prompts."""
    rows = read_rows(snapshot)
    config = config or {}
    if kind in PAIRWISE_KINDS:
        if snapshot.kind == DatasetSnapshot.Kind.RANKING:
            mode = config.get("ranking_pairs", "all")
            return [pair for row in rows for pair in ranking_pairs(row, mode)]
        return [_preference_row(row) for row in rows]
    if kind == "kto":
        return list(_kto_rows(snapshot.kind, rows))
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
    data = {"base_model": base, "rows": training_rows(run.kind, run.snapshot, run.config)}
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
