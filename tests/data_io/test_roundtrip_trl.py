"""Round trip HH-RLHF → tasks + judgments → TRL export → ``datasets.load_dataset`` (same 2,312
pairs), and TRL's reward and DPO trainers take an export as it is (one tiny step each)."""

import copy
import gzip
import json

import datasets
import pytest

from annotation.datasets import snapshots
from annotation.datasets.importers.hh_rlhf import split_transcript
from annotation.datasets.importers.preferences import import_preferences
from tests.data_io.conftest import HH_DEMO, arena_battle, write_jsonl


def hh_source_pairs():
    pairs = []
    with gzip.open(HH_DEMO, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            chosen, rejected = (
                split_transcript(record["chosen"]),
                split_transcript(record["rejected"]),
            )
            pairs.append((json.dumps(chosen[:-1]), chosen[-1]["content"], rejected[-1]["content"]))
    return pairs


@pytest.mark.django_db
def test_hh_rlhf_round_trip_gives_the_same_2312_pairs(project):
    result = import_preferences(project=project, path=HH_DEMO, fmt="hh-rlhf", annotator="hh")
    assert (result.tasks, result.judgments) == (2312, 2312)
    snapshot = snapshots.create_snapshot(project=project, kind="preference", fmt="jsonl")
    assert snapshot.status == "ready" and snapshot.row_count == 2312, snapshot.error
    loaded = datasets.load_dataset(
        "json", data_files=str(snapshots.artifact_file(snapshot)), split="train"
    )
    assert loaded.num_rows == 2312
    exported = [
        (json.dumps(row["prompt"]), row["chosen"][0]["content"], row["rejected"][0]["content"])
        for row in loaded
    ]
    assert exported == hh_source_pairs()
    assert set(loaded["spec_version"]) == {"test-principles@1"}
    assert len(set(loaded["annotator_ids"][0])) == 1 and loaded["annotator_ids"][0] != ["hh"]
    parquet = snapshots.create_snapshot(
        project=project, kind="preference", fmt="parquet", filters={"style": "text"}
    )
    text = datasets.load_dataset(
        "parquet", data_files=str(snapshots.artifact_file(parquet)), split="train"
    )
    assert text.num_rows == 2312 and text[0]["prompt"].startswith("\n\nHuman: ")


@pytest.mark.training
@pytest.mark.django_db
def test_trl_reward_and_dpo_trainers_accept_an_export_as_is(project, tmp_path):
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    from training.tiny import build_tiny_causal_lm, build_tiny_reward_model, build_tiny_tokenizer

    battles = [arena_battle(i, "model_a" if i % 3 else "model_b") for i in range(16)]
    import_preferences(
        project=project,
        path=write_jsonl(tmp_path / "a.jsonl", battles),
        fmt="arena",
        annotator="arena",
    )
    common = dict(
        max_steps=1,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
        max_length=64,
    )
    for style in ("conversational", "text"):
        snapshot = snapshots.create_snapshot(
            project=project, kind="preference", filters={"style": style}
        )
        train = datasets.load_dataset(
            "json", data_files=str(snapshots.artifact_file(snapshot)), split="train"
        )
        assert train.num_rows == 16 and "margin" in train.column_names
        tokenizer = build_tiny_tokenizer([b["conversation_a"][1]["content"] for b in battles])
        reward = RewardTrainer(
            model=build_tiny_reward_model(tokenizer),
            args=RewardConfig(output_dir=str(tmp_path / f"rm-{style}"), **common),
            train_dataset=train,
            processing_class=tokenizer,
        )
        assert reward.train().global_step == 1
        policy = build_tiny_causal_lm(tokenizer)
        dpo = DPOTrainer(
            model=policy,
            ref_model=copy.deepcopy(policy),
            args=DPOConfig(output_dir=str(tmp_path / f"dpo-{style}"), **common),
            train_dataset=train,
            processing_class=tokenizer,
        )
        assert dpo.train().global_step == 1
