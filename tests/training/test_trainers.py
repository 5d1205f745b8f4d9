"""End-to-end tests of the training layer with ``builtin:tiny`` (CPU, no network, no Django)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch

from training.tiny import save_tiny
from training.trainers import Hooks, describe_fields, from_dict, run_training
from training.trainers.common import directory_digest, write_artifact
from training.trainers.rewards import (
    LengthScorer,
    PrincipleWeightedScorer,
    RegexScorer,
    RunningScale,
    StringsScorer,
    build_rewards,
    json_scorer,
    weights_from_priority,
)

torch.set_num_threads(1)  # tiny models: one thread is as fast and robust on a shared machine

pytestmark = [
    pytest.mark.training,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

REPO = Path(__file__).resolve().parents[2]
FAST = {"learning_rate": 1e-3, "max_length": 64, "save_steps": 0, "batch_size": 8}
POLICY_FAST = {**FAST, "max_completion_length": 8, "eval_prompts": 4, "num_samples": 2}


def preference_rows(n: int = 40) -> list[dict]:
    """Chosen answers are polite and safe, rejected ones rude; half carry principle verdicts."""
    rows = []
    for i in range(n):
        row = {
            "prompt": f"Question {i}: is it safe?",
            "chosen": " yes, it is safe. thank you",
            "rejected": " no. bad worse",
            "margin": 0.5,
        }
        if i % 2:
            row["principles"] = {"harmless": "a", "honest": "not_applicable"}
        else:
            row["principles"] = ["honest"]
        rows.append(row)
    return rows


def prompt_rows(n: int = 24) -> list[dict]:
    return [{"prompt": f"Question {i}: is it safe?"} for i in range(n)]


def chat_rows(n: int = 16) -> list[dict]:
    words = ["yes", "safe", "kind", "clear"]
    return [
        {
            "messages": [
                {"role": "user", "content": f"Say {words[i % 4]}"},
                {"role": "assistant", "content": f"{words[i % 4]}!"},
            ]
        }
        for i in range(n)
    ]


class Recorder:
    """Hooks that record metrics, request cancellation once ``cancel_after`` steps were reported
    (the trainer sees it at the end of the next step), or fail at step ``fail_at``."""

    def __init__(self, cancel_after: int | None = None, fail_at: int | None = None) -> None:
        self.steps: list[int] = []
        self.cancel_after, self.fail_at = cancel_after, fail_at

    def on_metrics(self, step: int, max_steps: int, logs: dict) -> None:
        if step == self.fail_at:
            raise RuntimeError("hook failure")
        if "train_runtime" not in logs:
            self.steps.append(step)

    def should_cancel(self) -> bool:
        return self.cancel_after is not None and len(self.steps) >= self.cancel_after

    @property
    def hooks(self) -> Hooks:
        return Hooks(on_metrics=self.on_metrics, should_cancel=self.should_cancel)


def assert_artifact(result, output_dir: Path) -> None:
    assert not result.cancelled
    assert result.artifact_path == output_dir and output_dir.is_dir()
    assert (output_dir / "config.json").exists() and (output_dir / "training_run.json").exists()
    assert (result.sha256, result.size_bytes) == directory_digest(output_dir)
    assert not output_dir.with_name(f"{output_dir.name}.work").exists()  # removed on success
    assert not list(output_dir.parent.glob(".*.partial"))


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "reward-model"
    recorder = Recorder()
    result = run_training(
        "reward",
        {**FAST, "max_steps": 8, "center_rewards_coefficient": 0.01},
        {"base_model": "builtin:tiny", "rows": preference_rows()},
        out,
        recorder.hooks,
    )
    return result, recorder, out


# --- configs -----------------------------------------------------------------------------------


def test_config_defaults_validation_and_listing():
    assert from_dict("dpo", {}).loss_type == ["sigmoid"]
    assert from_dict("reward", {"max_steps": 8.0}).max_steps == 8
    for kind, values, message in [
        ("dpo", {"loss_type": ["robust"], "label_smoothing": 0.5}, "label_smoothing"),
        ("dpo", {"loss_type": ["nope"]}, "Unknown DPO loss_type"),
        ("grpo", {"batch_size": 6, "num_generations": 4}, "divisible by num_generations"),
        ("grpo", {"rewards": [{"type": "length"}]}, "target"),
        ("ppo", {"batch_size": 6, "num_mini_batches": 4}, "num_mini_batches"),
        ("ppo", {"precision": "fp16"}, "loss scaling"),
        ("sft", {"max_stepz": 3}, "Unknown sft config fields"),
        ("reward", {"max_steps": "ten"}, "must be a number"),
        ("reward", {"precision": "int8"}, "precision"),
        ("reward", {"lr_scheduler_type": "greedy"}, "lr_scheduler_type"),
        ("nope", {}, "Unknown training kind"),
    ]:
        with pytest.raises(ValueError, match=message):
            from_dict(kind, values)
    with pytest.raises(ValueError, match="divisible"):
        from_dict("grpo", {"batch_size": 2, "num_generations": 4})
    assert from_dict("grpo", {"batch_size": 2, "num_generations": 4}, world_size=2)
    fields = {f["name"]: f for f in describe_fields("dpo")}
    assert fields["beta"]["default"] == 0.1 and "flip rate" in fields["label_smoothing"]["help"]
    assert all(f["help"] for f in fields.values())


def test_config_layer_does_not_import_torch():
    code = (
        "import sys, training.trainers as t; t.describe_fields('ppo'); "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_rewards_and_weights():
    prompts = ["p"] * 3
    completions = ["abcd", '{"a": 1}', "safe but bad"]
    assert LengthScorer(4)(prompts, completions)[0] == 1.0
    assert json_scorer(prompts, completions) == [0.0, 1.0, 0.0]
    assert RegexScorer(r"^\{")(prompts, completions) == [0.0, 1.0, 0.0]
    assert StringsScorer(["safe"], ["bad"])(prompts, completions) == [0.5, 0.5, 0.5]
    assert weights_from_priority({"safe": 1, "helpful": 2}) == pytest.approx(
        {"safe": 2 / 3, "helpful": 1 / 3}
    )
    mixture = PrincipleWeightedScorer(
        {"a": (lambda p, c: [1.0] * len(c), 0.25), "b": (lambda p, c: [2.0] * len(c), 0.5)}
    )
    assert mixture(prompts, completions) == [1.25] * 3
    # a principle mixture weighs standardized scores: a (priority 1) outweighs b, however
    # much wider b's scale is
    built = build_rewards(
        [{"type": "principles", "priorities": {"a": 1, "b": 2}}, {"type": "json", "weight": 2}],
        {"a": lambda p, c: [1.0, 2.0, 3.0], "b": lambda p, c: [300.0, 200.0, 100.0]},
    )
    assert [(b.name, b.weight) for b in built] == [("principles", 1.0), ("json", 2.0)]
    z = 1.5**0.5  # the standardized 1, 2, 3 are -z, 0, z
    assert built[0].scorer(prompts, completions) == pytest.approx([-z / 3, 0.0, z / 3])
    scale = RunningScale()
    assert scale.standardize([5.0, 5.0]) == [0.0, 0.0]
    assert scale.standardize([7.0, 7.0]) == pytest.approx([1.0, 1.0])  # mean 6, deviation 1


def test_builtin_tiny_is_deterministic(tmp_path):
    first = save_tiny(tmp_path / "a", texts=["hello world"], seed=3)
    second = save_tiny(tmp_path / "b", texts=["hello world"], seed=3)
    assert directory_digest(first) == directory_digest(second)


# --- artifacts --------------------------------------------------------------------------------


def test_failed_save_leaves_no_artifact_and_keeps_previous(tmp_path):
    dest = tmp_path / "model"

    def good(directory: Path) -> None:
        directory.mkdir()
        (directory / "weights.bin").write_bytes(b"v1")

    def bad(directory: Path) -> None:
        directory.mkdir()
        (directory / "weights.bin").write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_artifact(dest, bad)
    assert not dest.exists() and not list(tmp_path.iterdir())
    artifact = write_artifact(dest, good)
    assert artifact.size_bytes == 2 and (artifact.sha256, 2) == directory_digest(dest)
    with pytest.raises(OSError):
        write_artifact(dest, bad)
    assert (dest / "weights.bin").read_bytes() == b"v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_failing_run_leaves_no_artifact(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError, match="hook failure"):
        run_training(
            "reward",
            {**FAST, "max_steps": 3},
            {"base_model": "builtin:tiny", "rows": preference_rows(16)},
            out,
            Recorder(fail_at=2).hooks,
        )
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


# --- kinds ------------------------------------------------------------------------------------


def test_reward_model_trains_scores_and_evaluates(reward_run):
    from training.trainers.reward import RewardScorer, encode_for_reward

    result, recorder, out = reward_run
    assert_artifact(result, out)
    assert recorder.steps == list(range(1, 9)) and result.global_step == 8
    assert result.metrics["accuracy"] == 1.0
    report = result.eval
    assert report["accuracy"] == 1.0 and report["n"] == 4
    assert set(report["per_principle"]) <= {"harmless", "honest"}
    assert sum(p["n"] for p in report["per_principle"].values()) == 4  # honest n/a on odd rows

    scorer = RewardScorer(out)
    assert encode_for_reward(scorer.tokenizer, "q", " a")[-1] == scorer.tokenizer.eos_token_id
    chosen, rejected = scorer(["Question 99: is it safe?"] * 2, [" yes, it is safe.", " no. bad"])
    assert chosen > rejected


def test_sft_assistant_only(tmp_path):
    out = tmp_path / "sft"
    result = run_training(
        "sft",
        {**POLICY_FAST, "max_steps": 3, "batch_size": 4},
        {"base_model": "builtin:tiny", "rows": chat_rows()},
        out,
    )
    assert_artifact(result, out)
    assert result.metrics["assistant_only_loss"] is True  # the builtin template marks replies
    assert json.loads((out / "training_run.json").read_text())["config"]["max_steps"] == 3
    assert result.eval["samples"] and "kl_to_reference" in result.eval


@pytest.mark.parametrize(
    "extra", [{"loss_type": ["sigmoid"]}, {"loss_type": ["robust"], "label_smoothing": 0.1}]
)
def test_dpo(tmp_path, reward_run, extra):
    out = tmp_path / "dpo"
    result = run_training(
        "dpo",
        {**POLICY_FAST, "max_steps": 3, **extra},
        {
            "base_model": "builtin:tiny",
            "rows": preference_rows(),
            "reward_models": {"helpful": str(reward_run[2])},
        },
        out,
    )
    assert_artifact(result, out)
    assert result.metrics["rewards/margins"] > 0
    assert set(result.eval["reward"]["helpful"]) == {"policy", "reference"}


def test_grpo_with_reward_model_and_verifier(tmp_path, reward_run):
    out = tmp_path / "grpo"
    recorder = Recorder()
    result = run_training(
        "grpo",
        {
            **POLICY_FAST,
            "max_steps": 2,
            "num_generations": 4,
            "rewards": [
                {"type": "reward_model", "weight": 1.0},
                {"type": "strings", "required": ["safe"], "forbidden": ["bad"], "weight": 0.5},
            ],
        },
        {
            "base_model": "builtin:tiny",
            "rows": prompt_rows(),
            "reward_models": {"helpful": str(reward_run[2])},
        },
        out,
        recorder.hooks,
    )
    assert_artifact(result, out)
    assert recorder.steps == [1, 2]
    assert {"rewards/rm_helpful/mean", "rewards/strings/mean"} <= set(result.metrics)
    assert set(result.eval["reward"]) == {"objective", "helpful"}


def test_cancellation_stops_within_one_step(tmp_path):
    out = tmp_path / "dpo"
    recorder = Recorder(cancel_after=0)  # requested before the first step ends
    result = run_training(
        "dpo",
        {**POLICY_FAST, "max_steps": 10},
        {"base_model": "builtin:tiny", "rows": preference_rows(24)},
        out,
        recorder.hooks,
    )
    assert result.cancelled and result.global_step == 1 and recorder.steps == [1]
    assert result.artifact_path is None and not out.exists()


def test_checkpoint_resume_continues_from_checkpoint(tmp_path):
    out, config = tmp_path / "rm", {**FAST, "max_steps": 4, "save_steps": 2}
    data = {"base_model": "builtin:tiny", "rows": preference_rows(24)}
    first = Recorder(cancel_after=2)  # seen at the end of step 3, which also saves checkpoint-3
    result = run_training("reward", config, data, out, first.hooks)
    assert result.cancelled and first.steps == [1, 2, 3] and not out.exists()
    checkpoints = tmp_path / "rm.work" / "checkpoints"
    assert {"checkpoint-2", "checkpoint-3"} <= {p.name for p in checkpoints.iterdir()}

    second = Recorder()
    result = run_training("reward", config, data, out, second.hooks)
    assert second.steps == [4] and result.global_step == 4
    assert_artifact(result, out)


# --- distributed ------------------------------------------------------------------------------


def torchrun(
    tmp_path: Path, name: str, config: dict, cancel: bool = False, expect_failure: bool = False
) -> tuple[dict, list]:
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps({"base_model": "builtin:tiny", "rows": preference_rows(32)}))
    spec = {
        "kind": "dpo",
        "config": config,
        "data_file": str(data_file),
        "output_dir": str(tmp_path / name),
        "progress_file": str(tmp_path / f"{name}.jsonl"),
        "cancel_file": str(tmp_path / f"{name}.cancel"),
        "result_file": str(tmp_path / f"{name}.json"),
    }
    if cancel:
        Path(spec["cancel_file"]).touch()
    spec_file = tmp_path / f"{name}.spec.json"
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "-m", "training.trainers.launch", "--spec", str(spec_file)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert (done.returncode != 0) == expect_failure, done.stderr[-3000:]
    reports = Path(spec["progress_file"])
    progress = (
        [json.loads(line) for line in reports.read_text().splitlines()] if reports.exists() else []
    )
    return json.loads(Path(spec["result_file"]).read_text()), progress


def test_torchrun_two_processes_dpo(tmp_path):
    config = {**POLICY_FAST, "max_steps": 3, "batch_size": 4}
    result, progress = torchrun(tmp_path, "dpo", config)
    assert result["status"] == "succeeded" and result["metrics"]["world_size"] == 2
    assert [p["step"] for p in progress if "train_runtime" not in p["logs"]] == [1, 2, 3]
    assert (result["sha256"], result["size_bytes"]) == directory_digest(tmp_path / "dpo")

    cancelled, progress = torchrun(tmp_path, "dpo-cancel", {**config, "max_steps": 20}, cancel=True)
    assert cancelled["status"] == "cancelled" and cancelled["global_step"] == 1
    assert not (tmp_path / "dpo-cancel").exists()
