"""GPU check: every training path this platform offers, on the machine at hand, in one command.

    .venv/bin/python benchmarks/gpu_check.py [--dry-run] [--steps N] [--only PATH ...] [--json F]

On a CUDA machine it builds a ~0.46 B-parameter Llama-architecture model from a config (no
download; the tokenizer is trained in-process, as ``builtin:tiny``'s is) and runs, a few steps
each, through ``training.trainers.run_training`` (what a worker runs):

* every kind (reward, SFT, DPO, KTO, ORPO, GRPO, PPO) in bf16,
  in full and with LoRA, and QLoRA when ``bitsandbytes`` imports;
* DPO under ``torchrun`` on all visible GPUs with each strategy: ddp, fsdp, and DeepSpeed
  ZeRO-2/3 when ``deepspeed`` imports;
* GRPO and PPO with vLLM rollouts (colocated) when ``vllm`` imports;
* the same SFT and DPO jobs as a bare TRL script (same model, rows, steps, batch, precision).

It prints, per path: pass / FAIL / n/a (with the reason), seconds, training tokens per second
(tokens in the rows trained on over TRL's ``train_runtime``; PPO: over its loop time), the peak
GPU memory, and the platform / bare TRL tokens-per-second ratio for SFT and DPO. Exit status 1
when a path failed. ``--dry-run``: the same paths on a tiny Llama on the CPU in fp32 (no QLoRA,
vLLM or DeepSpeed; DDP on 2 gloo processes: accelerate shards only on GPUs), which the test
suite runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cpu_reference import reference_ms  # noqa: E402
from training.trainers import CONFIGS, KINDS, run_training  # noqa: E402

#: the shapes built from a config: ~0.46 B parameters on a GPU, a toy on the CPU
LLAMA_GPU = {
    "hidden_size": 1024,
    "intermediate_size": 3584,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "vocab_size": 32_000,
    "max_position_embeddings": 2048,
}
LLAMA_CPU = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}
WORDS = (
    "the",
    "model",
    "should",
    "answer",
    "question",
    "with",
    "care",
    "and",
    "explain",
    "why",
    "a",
    "rule",
    "applies",
    "here",
    "because",
    "users",
    "deserve",
    "honest",
    "helpful",
    "harmless",
    "replies",
    "every",
    "time",
)


@dataclasses.dataclass
class Outcome:
    path: str
    status: str  # pass | FAIL | n/a
    seconds: float = 0.0
    tokens_per_s: float | None = None
    peak_gib: float | None = None
    note: str = ""


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def make_rows(count: int, words: int, seed: int = 0) -> dict[str, list[dict]]:
    """Preference, SFT and prompt rows of a fixed shape (prompt and replies of ``words`` words)."""
    rng = random.Random(seed)
    preference, sft = [], []
    for i in range(count):
        prompt = f"Question {i}: {sentence(rng, words)}?"
        chosen, rejected = sentence(rng, words) + ".", sentence(rng, words // 2) + "!"
        preference.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        sft.append(
            {
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": chosen},
                ]
            }
        )
    kto = [
        {"prompt": r["prompt"], "completion": r[key], "label": key == "chosen"}
        for r in preference
        for key in ("chosen", "rejected")
    ]
    return {
        "kto": kto,
        "preference": preference,
        "sft": sft,
        "prompt": [{"prompt": r["prompt"]} for r in preference],
    }


def build_base(directory: Path, shape: dict[str, Any], texts: list[str]) -> Path:
    """A Llama-architecture causal LM from ``shape`` and an in-process BPE tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from training.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(texts, seed=0, vocab_size=2000)
    shape = {"vocab_size": len(tokenizer), **shape}
    config = LlamaConfig(
        **shape,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    model.save_pretrained(directory)
    return directory


def token_count(base: Path, rows: list[dict]) -> int:
    """Tokens in ``rows`` (every text field), with the base's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    texts = []
    for row in rows:
        for key in ("prompt", "chosen", "rejected", "completion"):
            if key in row:
                texts.append(row[key])
        texts.extend(m["content"] for m in row.get("messages", []))
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def has_field(kind: str, name: str) -> bool:
    return kind in CONFIGS and any(f.name == name for f in dataclasses.fields(CONFIGS[kind]))


def importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def kind_config(kind: str, steps: int, cuda: bool) -> dict[str, Any]:
    """A few steps of ``kind`` at a realistic shape (GPU) or a toy one (CPU)."""
    config: dict[str, Any] = {
        "max_steps": steps,
        "batch_size": 4,
        "learning_rate": 1e-5,
        "save_steps": 0,
        "max_length": 512 if cuda else 64,
        "precision": "bf16" if cuda else "fp32",
        "eval_fraction": 0,
    }
    if kind != "reward":
        config |= {"max_completion_length": 64 if cuda else 8, "eval_prompts": 2, "num_samples": 0}
    if kind in ("grpo", "ppo"):
        config["rewards"] = [{"type": "length", "target": 200}]
    if kind == "grpo":
        config["num_generations"] = 4
    if kind == "ppo":
        config["num_mini_batches"] = 2
    return config


def data_for(kind: str, base: Path, rows: dict[str, list[dict]]) -> dict[str, Any]:
    source = {"sft": "sft", "grpo": "prompt", "ppo": "prompt", "kto": "kto"}.get(kind, "preference")
    return {"base_model": str(base), "rows": rows[source], "eval_rows": rows[source][:2]}


def train_tokens(kind: str, config: dict[str, Any], base: Path, data: dict, world: int = 1) -> int:
    """Tokens in the rows one run trains on (steps × batch × processes rows, cycling)."""
    rows = data["rows"]
    consumed = config["max_steps"] * config["batch_size"] * world
    if kind in ("grpo", "ppo"):  # rollouts: prompt plus sampled tokens
        return consumed * config["max_completion_length"]
    per_row = token_count(base, rows) / len(rows)
    return int(consumed * per_row)


def run_path(
    name: str, kind: str, config: dict, data: dict, base: Path, work: Path, cuda: bool
) -> Outcome:
    """Train one path in this process; its peak GPU memory is measured from a reset."""
    import torch

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        result = run_training(kind, config, data, work / name)
    except Exception as exc:
        traceback.print_exc()
        return Outcome(
            name, "FAIL", time.perf_counter() - started, note=f"{type(exc).__name__}: {exc}"[:300]
        )
    finally:
        gc.collect()
    seconds = time.perf_counter() - started
    runtime = result.metrics.get("train_runtime") or seconds
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    tokens = train_tokens(kind, config, base, data)
    ok = result.artifact_path is not None and Path(result.artifact_path).exists()
    note = "" if ok else "no artifact"
    return Outcome(name, "pass" if ok else "FAIL", seconds, tokens / runtime, peak, note)


BARE_TRL = r"""
import json, sys, time
spec = json.load(open(sys.argv[1]))
import torch, transformers
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
transformers.set_seed(0)
base, kind, cuda = spec["base"], spec["kind"], spec["cuda"]
tokenizer = AutoTokenizer.from_pretrained(base)
model = AutoModelForCausalLM.from_pretrained(base, dtype="float32")
peft_config = None
if spec["lora"]:
    from peft import LoraConfig
    peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                             "gate_proj", "up_proj", "down_proj"])
common = dict(output_dir=spec["scratch"], max_steps=spec["steps"], per_device_train_batch_size=4,
              learning_rate=1e-5, seed=0, logging_steps=1, bf16=cuda, use_cpu=not cuda,
              save_strategy="no", report_to="none", disable_tqdm=True,
              max_length=spec["max_length"], activation_checkpointing=cuda)
if kind == "sft":
    from trl import SFTConfig, SFTTrainer
    trainer = SFTTrainer(model=model, args=SFTConfig(**common), processing_class=tokenizer,
                         train_dataset=Dataset.from_list(spec["rows"]), peft_config=peft_config)
else:
    from trl import DPOConfig, DPOTrainer
    ref = None if spec["lora"] else AutoModelForCausalLM.from_pretrained(base)
    trainer = DPOTrainer(model=model, ref_model=ref, args=DPOConfig(**common),
                         processing_class=tokenizer, train_dataset=Dataset.from_list(spec["rows"]),
                         peft_config=peft_config)
output = trainer.train()
json.dump({"train_runtime": output.metrics["train_runtime"],
           "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None},
          open(spec["result"], "w"))
"""


def bare_trl(
    name: str,
    kind: str,
    base: Path,
    rows: list[dict],
    steps: int,
    lora: bool,
    work: Path,
    cuda: bool,
    tokens: int,
) -> Outcome:
    """The same job as a bare TRL script in its own process (TRL's defaults, the same shape)."""
    spec = work / f"{name}.json"
    result = work / f"{name}.result.json"
    spec.write_text(
        json.dumps(
            {
                "base": str(base),
                "kind": kind,
                "cuda": cuda,
                "lora": lora,
                "rows": rows,
                "steps": steps,
                "max_length": 512 if cuda else 64,
                "scratch": str(work / name),
                "result": str(result),
            }
        )
    )
    script = work / "bare_trl.py"
    script.write_text(BARE_TRL)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), str(spec)], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        return Outcome(name, "FAIL", seconds, note=done.stderr[-300:])
    out = json.loads(result.read_text())
    return Outcome(name, "pass", seconds, tokens / out["train_runtime"], out["peak_gib"])


def distributed(
    name: str,
    strategy: str,
    processes: int,
    config: dict,
    data: dict,
    base: Path,
    work: Path,
    tokens: int,
) -> Outcome:
    """DPO under ``torchrun`` with ``strategy`` on ``processes`` processes (GPUs, or CPU gloo)."""
    spec_dir = work / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "data.json").write_text(json.dumps(data))
    spec = {
        "kind": "dpo",
        "config": {**config, "strategy": strategy},
        "data_file": str(spec_dir / "data.json"),
        "output_dir": str(spec_dir / "out"),
        "result_file": str(spec_dir / "result.json"),
    }
    (spec_dir / "spec.json").write_text(json.dumps(spec))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "training.trainers.launch",
        "--spec",
        str(spec_dir / "spec.json"),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    result_file = spec_dir / "result.json"
    outcome = json.loads(result_file.read_text()) if result_file.exists() else {}
    if outcome.get("status") != "succeeded":
        return Outcome(name, "FAIL", seconds, note=(outcome.get("error") or done.stdout[-300:]))
    runtime = outcome["metrics"].get("train_runtime") or seconds
    return Outcome(name, "pass", seconds, tokens * processes / runtime)


def plan(cuda: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(path name, kind, config overrides) for every single-process path, in order."""
    paths: list[tuple[str, str, dict[str, Any]]] = []
    for kind in KINDS:
        paths.append((kind, kind, {}))
        paths.append((f"{kind}+lora", kind, {"peft": "lora"}))
        if cuda:
            paths.append((f"{kind}+qlora", kind, {"peft": "qlora"}))
    if cuda:
        paths.append(("grpo+vllm", "grpo", {"use_vllm": True, "vllm_mode": "colocate"}))
        paths.append(("ppo+vllm", "ppo", {"use_vllm": True}))
    return paths


def strategies_to_check(cuda: bool, gpus: int) -> list[tuple[str, int]]:
    """(strategy, processes) for the DPO runs under torchrun: every strategy on all visible
    GPUs; on the CPU two gloo processes of DDP (accelerate shards only on GPUs, so the platform
    refuses fsdp and DeepSpeed on a CPU worker)."""
    if not cuda:
        return [("ddp", 2)]
    return [(s, gpus) for s in ("ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3")]


def unavailable(kind: str, overrides: dict[str, Any]) -> str:
    """Why a path cannot run here ('' when it can)."""
    for name in overrides:
        if not has_field(kind, name):
            return f"the platform has no {name!r} option for {kind}"
    if overrides.get("peft") == "qlora" and not importable("bitsandbytes"):
        return "bitsandbytes is not installed"
    if overrides.get("use_vllm") and not importable("vllm"):
        return "vllm is not installed"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny model, CPU, fp32")
    parser.add_argument("--steps", type=int, default=None, help="steps per path (GPU 10, CPU 2)")
    parser.add_argument("--only", nargs="*", help="run only these paths (names as printed)")
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        print("No CUDA device here: run with --dry-run for the CPU paths.", file=sys.stderr)
        return 2
    gpus = torch.cuda.device_count() if cuda else 0
    steps = args.steps or (10 if cuda else 2)
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    low, median, high = reference_ms()
    print(
        f"device: {device} x{max(gpus, 1)}; torch {torch.__version__}; "
        f"cpu reference {median:.0f} ms (min {low:.0f}, max {high:.0f})"
    )
    rows = make_rows(64 if cuda else 16, 60 if cuda else 6)
    outcomes: list[Outcome] = []
    wanted = (lambda name: name in args.only) if args.only else (lambda name: True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        texts = [r["prompt"] + " " + r["chosen"] for r in rows["preference"]]
        base = build_base(work / "base", LLAMA_GPU if cuda else LLAMA_CPU, texts)
        for name, kind, overrides in plan(cuda):
            if not wanted(name):
                continue
            reason = unavailable(kind, overrides)
            if reason:
                outcomes.append(Outcome(name, "n/a", note=reason))
            else:
                config = {**kind_config(kind, steps, cuda), **overrides}
                outcomes.append(
                    run_path(name, kind, config, data_for(kind, base, rows), base, work, cuda)
                )
            print(format_outcome(outcomes[-1]), flush=True)
        for kind in ("sft", "dpo"):
            for lora in (False, True):
                name = f"{kind}{'+lora' if lora else ''} bare TRL"
                if not wanted(name):
                    continue
                data = data_for(kind, base, rows)
                tokens = train_tokens(kind, kind_config(kind, steps, cuda), base, data)
                outcomes.append(
                    bare_trl(
                        name.replace(" ", "-"),
                        kind,
                        base,
                        data["rows"],
                        steps,
                        lora,
                        work,
                        cuda,
                        tokens,
                    )
                )
                outcomes[-1].path = name
                print(format_outcome(outcomes[-1]), flush=True)
        for strategy, processes in strategies_to_check(cuda, gpus):
            name = f"dpo {strategy} x{processes}"
            if not wanted(name):
                continue
            config = kind_config("dpo", steps, cuda)
            data = data_for("dpo", base, rows)
            tokens = train_tokens("dpo", config, base, data)
            if strategy.startswith("deepspeed") and not importable("deepspeed"):
                outcomes.append(Outcome(name, "n/a", note="deepspeed is not installed"))
            elif strategy == "ddp" and processes < 2:
                outcomes.append(Outcome(name, "n/a", note="one GPU visible: nothing to replicate"))
            else:
                outcomes.append(
                    distributed(
                        name.replace(" ", "-"),
                        strategy,
                        processes,
                        config,
                        data,
                        base,
                        work,
                        tokens,
                    )
                )
                outcomes[-1].path = name
            print(format_outcome(outcomes[-1]), flush=True)
    print_ratios(outcomes)
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(o) for o in outcomes], indent=2))
    failed = [o.path for o in outcomes if o.status == "FAIL"]
    print(
        f"{len(outcomes) - len(failed)} of {len(outcomes)} paths passed or n/a; "
        f"failed: {failed or 'none'}"
    )
    return 1 if failed else 0


def format_outcome(o: Outcome) -> str:
    speed = f"{o.tokens_per_s:10.0f} tok/s" if o.tokens_per_s else " " * 16
    peak = f"{o.peak_gib:6.2f} GiB" if o.peak_gib is not None else " " * 10
    return f"{o.status:4}  {o.path:28} {o.seconds:7.1f} s {speed} {peak}  {o.note}"


def print_ratios(outcomes: list[Outcome]) -> None:
    """Platform tokens/s over bare TRL's, for the jobs both ran."""
    by_name = {o.path: o for o in outcomes if o.status == "pass" and o.tokens_per_s}
    for job in ("sft", "sft+lora", "dpo", "dpo+lora"):
        ours, bare = by_name.get(job), by_name.get(f"{job} bare TRL")
        if ours and bare:
            print(
                f"ratio {job}: platform {ours.tokens_per_s:.0f} / bare TRL "
                f"{bare.tokens_per_s:.0f} tok/s = {ours.tokens_per_s / bare.tokens_per_s:.2f}"
            )


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
