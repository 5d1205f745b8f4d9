"""Platform overhead of training runs: the same job through Celery + Django versus bare TRL.

    .venv/bin/python benchmarks/training_overhead.py [--steps N] [--quick] [--paired]
                                                     [--repeats R] [--jobs reward dpo] [--lora]

For each job (a reward model with TRL ``RewardTrainer`` and DPO with TRL ``DPOTrainer``) it runs

(a) **platform**: a fresh temporary ``DATA_DIR`` with a SQLite database (``manage.py migrate``),
    a principle set, project and preference snapshot created through the services, one real
    ``celery -A config worker -Q cpu --concurrency 1 --max-tasks-per-child 1`` process on the
    embedded SQLite broker, then ``training.services.launch_run(...)``; timed from the launch
    call to the moment the run is seen ``succeeded`` (polled every 0.1 s);
(b) **bare**: a standalone TRL script in a fresh ``python`` process with the same base model
    directory, the same training rows in the same order, the same steps, batch size, learning
    rate, seed, max_length, fp32, logging_steps and no checkpoints; timed from process start to
    the saved model.

Both train the same thing: the final ``train_loss`` is printed for both and must be identical.
The base model is a GPT-2 (n_embd 256, 4 layers, 4 heads, 3.4 M parameters) with the
in-process BPE tokenizer of ``training/tiny.py``, built once and passed to both as a local path.
Both sides run with the same ``OMP_NUM_THREADS`` (``--threads``, default 1: the machine has 2
shared cores). The platform keeps its defaults for what the bare script does not do: 10 % of
the rows are held out and the run is evaluated after training (reported on its own line).

Printed per job: wall times and the platform/bare ratio (target <= 1.05x for runs of >= 60 s),
CPU seconds of each side (the bare process; the worker's pool child, which the worker reaps
after its one task), the train loop (TRL's ``train_runtime``) and the rest, a phase breakdown
(dispatch, start-up, loop, save/evaluate/register) and the cost of the per-step progress hooks
measured against the same database. Runs alternate which side goes first; ``--paired`` starts
both at the same moment so that both see the same load from other users of the machine.
``--quick`` runs a few steps only, to check that the script works; its ratios mean nothing.
``--lora`` trains a LoRA adapter on both sides (the same rank, alpha, dropout and target
modules: the platform's ``peft: lora`` config, ``peft_config=LoraConfig(...)`` in the bare
script; DPO's reference is then the adapter disabled on both sides, no second model).
Everything it starts (worker, subprocesses, temporary directory) is cleaned up on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
JOBS = ("reward", "dpo")
CHILDREN: list[subprocess.Popen] = []  # bare processes, stopped on exit whatever happens
DEFAULT_STEPS = 300
QUICK_STEPS = 4
TARGET = 1.05

# Same settings on both sides (the platform gets them as its run config).
BATCH_SIZE = 8
SEED = 0
MAX_LENGTH = 256
LOGGING_STEPS = 1
LEARNING_RATE = {"reward": 1e-4, "dpo": 1e-5}
EVAL_FRACTION = 0.1  # platform default: held out from training and evaluated after it

MODEL = {"n_embd": 256, "n_layer": 4, "n_head": 4, "n_positions": 512}
# --lora: the platform's defaults, with GPT-2's default targets spelled out for the bare script
LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["c_attn", "c_proj", "c_fc"]}

BUILD_BASE = r"""
import json, sys
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from training.tiny import build_tiny_tokenizer

out, texts_file, shape = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
tokenizer = build_tiny_tokenizer(json.load(open(texts_file)), seed=0)
config = GPT2Config(
    vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **shape,
)
torch.manual_seed(0)
model = GPT2LMHeadModel(config)
tokenizer.save_pretrained(out)
model.save_pretrained(out)
print(sum(p.numel() for p in model.parameters()))
"""

# The bare TRL job: what a user would write by hand with the same settings. It records wall
# clock marks (time.time(), comparable with the parent's) into the result file.
BARE = r"""
import json, sys, time
marks = {}
spec = json.load(open(sys.argv[1]))
import transformers
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer
marks["imported"] = time.time()

kind, base, rows, seed = spec["kind"], spec["base_model"], spec["rows"], spec["seed"]
transformers.set_seed(seed)
tokenizer = AutoTokenizer.from_pretrained(base)
common = dict(
    output_dir=spec["scratch_dir"], max_steps=spec["steps"],
    per_device_train_batch_size=spec["batch_size"], learning_rate=spec["learning_rate"],
    lr_scheduler_type="linear", seed=seed, logging_steps=spec["logging_steps"],
    bf16=False, fp16=False, use_cpu=True, activation_checkpointing=False, save_strategy="no",
    report_to="none", disable_tqdm=True, dataloader_num_workers=0,
)
peft_config = None
if spec["lora"]:
    from peft import LoraConfig

    lora = spec["lora"]
    peft_config = LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
        target_modules=lora["target_modules"],
        task_type="SEQ_CLS" if kind == "reward" else "CAUSAL_LM",
    )
if kind == "reward":
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype="float32")
    model.config.pad_token_id = tokenizer.pad_token_id

    def encode(prompt, completion):
        ids = tokenizer(prompt + completion)["input_ids"]
        return ids if ids and ids[-1] == tokenizer.eos_token_id else ids + [tokenizer.eos_token_id]

    train = Dataset.from_list([
        {"chosen_ids": encode(r["prompt"], r["chosen"]),
         "rejected_ids": encode(r["prompt"], r["rejected"]), "margin": float(r["margin"])}
        for r in rows
    ])
    trainer = RewardTrainer(
        model=model, args=RewardConfig(**common, max_length=spec["max_length"]),
        train_dataset=train, processing_class=tokenizer, peft_config=peft_config,
    )
else:
    model = AutoModelForCausalLM.from_pretrained(base, dtype="float32")
    train = Dataset.from_list(
        [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=None if peft_config else AutoModelForCausalLM.from_pretrained(base),
        args=DPOConfig(**common, max_length=spec["max_length"]),
        train_dataset=train, processing_class=tokenizer, peft_config=peft_config,
    )
marks["ready"] = time.time()
output = trainer.train()
marks["trained"] = time.time()
trainer.save_model(spec["output_dir"])
marks["saved"] = time.time()
summary = {}
for entry in trainer.state.log_history:
    summary.update(entry)
json.dump({"marks": marks, "metrics": summary, "global_step": output.global_step},
          open(spec["result_file"], "w"))
"""

# --- data ----------------------------------------------------------------------------------------

TOPICS = ["a budget", "a garden", "an essay", "a bike", "a recipe", "a trip", "a letter", "code"]
POLITE = (
    "sure here is a clear and honest answer that explains why it helps and how to do it safely "
    "step by step with one two three items and a short list"
)
RUDE = (
    "no figure it out yourself it is not my problem go away the question is bad and you never "
    "listen maybe always worse whatever"
)


def preference_rows(count: int, seed: int = SEED) -> list[dict]:
    """Synthetic preference pairs, ~52 tokens per prompt + completion with the tiny tokenizer."""
    rng = random.Random(seed)
    polite, rude = POLITE.split(), RUDE.split()

    def words(pool: list[str], n: int) -> str:
        return " ".join(rng.choice(pool) for _ in range(n))

    return [
        {
            "prompt": f"User question {i}: how do I plan {rng.choice(TOPICS)}? "
            + words(polite + rude, rng.randint(6, 12))
            + "\nAssistant:",  # completions start with a space: no token spans the boundary
            "chosen": " " + words(polite, rng.randint(20, 30)).capitalize() + ".",
            "rejected": " " + words(rude, rng.randint(20, 30)).capitalize() + ".",
            "margin": float(rng.choice([0, 1, 2])),
        }
        for i in range(count)
    ]


# --- processes -----------------------------------------------------------------------------------


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM the process group we started (its own session), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass


def build_base_model(directory: Path, rows: list[dict], env: dict) -> int:
    texts = directory.with_suffix(".texts.json")
    texts.write_text(json.dumps([r[k] for r in rows for k in ("prompt", "chosen", "rejected")]))
    done = subprocess.run(
        [PYTHON, "-c", BUILD_BASE, str(directory), str(texts), json.dumps(MODEL)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    texts.unlink()
    if done.returncode:
        raise RuntimeError(f"building the base model failed:\n{done.stderr[-4000:]}")
    return int(done.stdout.split()[-1])


class BareJob:
    """One bare TRL job in a fresh process; its marks are seconds after the process started."""

    def __init__(
        self, kind: str, rows: list[dict], steps: int, base: Path, tmp: Path, env: dict, lora: bool
    ):
        self.kind = kind
        self.work = tmp / f"bare-{kind}-{time.time_ns()}"
        self.work.mkdir()
        spec = {
            "kind": kind, "base_model": str(base), "rows": rows, "seed": SEED, "steps": steps,
            "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE[kind],
            "max_length": MAX_LENGTH, "logging_steps": LOGGING_STEPS,
            "scratch_dir": str(self.work / "scratch"), "output_dir": str(self.work / "model"),
            "result_file": str(self.work / "result.json"), "lora": LORA if lora else None,
        }  # fmt: skip
        (self.work / "spec.json").write_text(json.dumps(spec))
        (self.work / "bare.py").write_text(BARE)
        self.rusage = resource.getrusage(resource.RUSAGE_CHILDREN)
        with (self.work / "log.txt").open("w") as log:
            self.start = time.time()
            self.process = subprocess.Popen(
                [PYTHON, str(self.work / "bare.py"), str(self.work / "spec.json")],
                cwd=self.work, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        CHILDREN.append(self.process)
        self.exited: float | None = None

    def done(self) -> bool:
        if self.exited is None and self.process.poll() is not None:
            self.exited, self.load = time.time(), load_line(short=True)
        return self.exited is not None

    def result(self) -> dict:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - self.rusage.ru_utime - self.rusage.ru_stime
        if self.process.returncode:
            tail = (self.work / "log.txt").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"bare {self.kind} exited with {self.process.returncode}:\n{tail}")
        result = json.loads((self.work / "result.json").read_text())
        marks = {name: t - self.start for name, t in result["marks"].items()}
        train_runtime = float(result["metrics"]["train_runtime"])
        shutil.rmtree(self.work, ignore_errors=True)
        return {
            "wall": marks["saved"],
            "cpu": cpu,
            "load": self.load,
            "train_runtime": train_runtime,
            "train_loss": result["metrics"].get("train_loss"),
            "global_step": result["global_step"],
            "phases": {
                "process start + imports": marks["imported"],
                "load model + build trainer": marks["ready"] - marks["imported"],
                "train loop (train_runtime)": train_runtime,
                "train() outside the loop": marks["trained"] - marks["ready"] - train_runtime,
                "save model": marks["saved"] - marks["trained"],
                "saved -> process exit": self.exited - self.start - marks["saved"],
            },
        }


# --- platform ------------------------------------------------------------------------------------


def setup_platform(data_dir: Path, env: dict) -> None:
    """Migrate a fresh SQLite database under ``data_dir`` and set Django up in this process."""
    done = subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"migrate failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    os.environ.update({k: env[k] for k in ("DATA_DIR", "DATABASE_URL", "CELERY_BROKER_URL")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def create_snapshot(rows: list[dict]):
    """Principle set + project through the services; the preference snapshot as the training
    tests write it (a JSONL artifact and a ready DatasetSnapshot row)."""
    from django.conf import settings

    from annotation.models import DatasetSnapshot
    from annotation.principles import services as principle_services
    from annotation.projects import services as project_services
    from annotation.specs import PrincipleSpec

    principle_set = principle_services.create_principle_set(
        name="bench-principles",
        principles=[
            PrincipleSpec(key="harmless", title="Be harmless", authority="root"),
            PrincipleSpec(key="helpful", title="Be helpful", authority="guideline"),
        ],
        publish=True,
    )
    project = project_services.create_project(
        name="Training overhead", slug="training-overhead", principle_set=principle_set,
        task_kinds=["compare"],
    )  # fmt: skip
    folder = Path(settings.ARTIFACT_ROOT) / "bench-snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    snapshot = DatasetSnapshot.objects.create(
        project=project, principle_set=principle_set, kind="preference", status="ready",
        row_count=len(rows),
    )  # fmt: skip
    path = folder / f"{snapshot.pk}-preference.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    snapshot.artifact_path = str(path)
    snapshot.save(update_fields=["artifact_path"])
    return snapshot


def start_worker(env: dict, log_path: Path) -> subprocess.Popen:
    command = [PYTHON, "-m", "celery", "-A", "config", "worker", "-Q", "cpu",
               "--concurrency", "1", "--max-tasks-per-child", "1", "--loglevel", "INFO",
               "--without-heartbeat", "--without-gossip", "--without-mingle"]  # fmt: skip
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 180
    while " ready." not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.2)
    return process


def platform_config(kind: str, steps: int, lora: bool) -> dict:
    peft = {
        "peft": "lora", "lora_r": LORA["r"], "lora_alpha": LORA["alpha"],
        "lora_dropout": LORA["dropout"], "lora_target_modules": LORA["target_modules"],
    } if lora else {}  # fmt: skip
    return {
        "max_steps": steps, "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE[kind],
        "seed": SEED, "max_length": MAX_LENGTH, "logging_steps": LOGGING_STEPS,
        "precision": "fp32", "save_steps": 0, "eval_fraction": EVAL_FRACTION, **peft,
    }  # fmt: skip


def train_rows_of(kind: str, snapshot) -> list[dict]:
    """The rows the platform's worker will train on, in its order (same reader, same split)."""
    from training.datasets import training_rows
    from training.trainers.common import split_rows

    train, _ = split_rows(training_rows(kind, snapshot), None, EVAL_FRACTION, SEED)
    return train


def proc_cpu(pid: int) -> tuple[float, float]:
    """(own, reaped children's) user+sys CPU seconds of a live process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / ticks, (cutime + cstime) / ticks


class PlatformJob:
    """One run through ``launch_run`` and the worker, timed from the launch call to the moment
    it is seen ``succeeded``. CPU is what the worker's pool child used: the worker's main process
    reaps it (and forks a fresh one) after the task, as ``--max-tasks-per-child 1`` asks."""

    FINISHED = ("succeeded", "failed", "cancelled")

    def __init__(
        self, kind: str, steps: int, snapshot, base: Path, worker: subprocess.Popen, lora: bool
    ):
        from training import services

        self.kind, self.worker = kind, worker
        self.cpu_before = proc_cpu(worker.pid)
        self.start = time.time()
        self.run = services.launch_run(
            kind=kind, config=platform_config(kind, steps, lora), snapshot=snapshot,
            base_model=str(base), name=f"bench-{kind}",
        )  # fmt: skip
        self.launched = time.time()
        self.deadline = time.monotonic() + 120 + steps * 5
        self.seen: float | None = None

    def done(self) -> bool:
        from training.models import TrainingRun

        if self.seen is None:
            status = TrainingRun.objects.values_list("status", flat=True).get(pk=self.run.pk)
            if status in self.FINISHED:
                self.seen, self.load = time.time(), load_line(short=True)
                self.worker_own_cpu = proc_cpu(self.worker.pid)[0]
            elif self.worker.poll() is not None or time.monotonic() > self.deadline:
                raise RuntimeError(f"platform {self.kind} run {self.run.pk} is stuck: {status}")
        return self.seen is not None

    def result(self) -> dict:
        from training.models import RunMetric

        run, (own_before, children_before) = self.run, self.cpu_before
        while (cpu := proc_cpu(self.worker.pid))[1] == children_before:
            if time.time() > self.seen + 30:
                break
            time.sleep(0.1)  # the finished pool child is reaped shortly after its task
        run.refresh_from_db()
        if run.status != "succeeded":
            raise RuntimeError(f"platform {self.kind} run {run.status}:\n{run.error[-4000:]}")
        metrics = RunMetric.objects.filter(run=run)
        last = {m.name: m.value for m in metrics.order_by("step", "id")}
        last_log = max(m.logged_at.timestamp() for m in metrics)
        train_runtime = float(last["train_runtime"])
        claimed, finished = run.started_at.timestamp(), run.finished_at.timestamp()
        return {
            "run": run,
            "wall": self.seen - self.start,
            "cpu": cpu[1] - children_before if cpu[1] != children_before else None,
            "worker_main_cpu": self.worker_own_cpu - own_before,
            "load": self.load,
            "train_runtime": train_runtime,
            "train_loss": last.get("train_loss"),
            "global_step": run.current_step,
            "reports": metrics.filter(name="loss").count() + 1,  # per logging step + summary
            "eval": run.eval_metrics,
            "phases": {
                "launch_run() call": self.launched - self.start,
                "broker dispatch -> claimed": claimed - self.launched,
                # the summary metrics are logged right after the loop: start = end - runtime
                "claimed -> train loop (imports, load)": last_log - train_runtime - claimed,
                "train loop (train_runtime)": train_runtime,
                "save + hash + evaluate + register": finished - last_log,
                "finished -> seen succeeded": self.seen - finished,
            },
        }


def hook_cost(run, samples: int = 40) -> dict:
    """Per-report cost of the worker's hooks (record_progress + cancel check) on this database,
    with one report's real metric names and a full-size log tail."""
    from training import services
    from training.models import RunMetric

    names = list(RunMetric.objects.filter(run=run, step=1).values_list("name", flat=True))
    logs = {name: 0.5 for name in names}
    tail = ("step 1/400 loss=0.6931 grad_norm=1.234 learning_rate=0.0001 " * 300)[:20_000]
    record, cancel = [], []
    for i in range(samples):
        t = time.perf_counter()
        services.record_progress(
            run_id=run.pk, step=100_000 + i, max_steps=200_000, logs=logs, log_tail=tail
        )
        record.append(time.perf_counter() - t)
        t = time.perf_counter()
        services.cancel_requested(run_id=run.pk)
        cancel.append(time.perf_counter() - t)
    RunMetric.objects.filter(run=run, step__gte=100_000).delete()
    return {
        "metrics_per_report": len(names),
        "record_progress_ms": statistics.median(record) * 1000,
        "cancel_check_ms": statistics.median(cancel) * 1000,
    }


def run_pair(
    kind: str,
    steps: int,
    snapshot,
    base: Path,
    worker,
    tmp: Path,
    env: dict,
    paired: bool,
    bare_first: bool,
    lora: bool = False,
) -> tuple[dict, dict]:
    """The bare and the platform job, one after the other or (``paired``) both at once."""
    rows = train_rows_of(kind, snapshot)
    starters = {
        "bare": lambda: BareJob(kind, rows, steps, base, tmp, env, lora),
        "platform": lambda: PlatformJob(kind, steps, snapshot, base, worker, lora),
    }
    order = ["bare", "platform"] if bare_first else ["platform", "bare"]
    jobs = {}
    for group in [order] if paired else [[side] for side in order]:
        started = {side: starters[side]() for side in group}
        while not all([job.done() for job in started.values()]):  # poll every job each time
            time.sleep(0.1)
        jobs.update(started)
    return jobs["bare"].result(), jobs["platform"].result()  # fmt: skip


# --- report --------------------------------------------------------------------------------------


def load_line(short: bool = False) -> str:
    try:
        loads = os.getloadavg()
    except OSError:
        return "load n/a"
    if short:
        return f"load {loads[0]:.2f}"
    return "load average " + " ".join(f"{x:.2f}" for x in loads)


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_job(kind: str, steps: int, pairs: list[tuple[dict, dict]], hooks: dict) -> float:
    """The figures of one job over its repeats; returns the median wall-time ratio."""
    print(
        f"\n== {kind}: {steps} steps x batch {BATCH_SIZE} pairs, lr {LEARNING_RATE[kind]}, "
        f"max_length {MAX_LENGTH}, fp32, logging_steps {LOGGING_STEPS}, no checkpoints =="
    )
    print(f"  {'':<28}{'bare TRL':>10}{'platform':>10}{'ratio':>9}")
    ratios = []
    for i, (bare, plat) in enumerate(pairs, 1):
        ratios.append(plat["wall"] / bare["wall"])
        rows = [
            (f"run {i}: wall", bare["wall"], plat["wall"]),
            ("      CPU (user+sys)", bare["cpu"], plat["cpu"]),
            ("      train loop", bare["train_runtime"], plat["train_runtime"]),
            ("      wall - train loop", bare["wall"] - bare["train_runtime"],
             plat["wall"] - plat["train_runtime"]),
        ]  # fmt: skip
        for label, b, p in rows:
            shown = f"{p / b:8.3f}x" if b and p else "        -"
            print(f"  {label:<28}{b or 0:10.1f}{p or 0:10.1f} {shown}")
        per_step = (plat["train_runtime"] - bare["train_runtime"]) / steps * 1000
        print(
            f"      ms/step bare {bare['train_runtime'] / steps * 1000:.0f}, platform "
            f"{plat['train_runtime'] / steps * 1000:.0f} ({per_step:+.1f}); final train_loss "
            f"bare {bare['train_loss']:.6g}, platform {plat['train_loss']:.6g}"
        )
        print(f"      {plat['order']}; 1-min load at the end: bare {bare['load']}, "
              f"platform {plat['load']}")  # fmt: skip
    verdict = "meets" if median(ratios) <= TARGET else "misses"
    print(
        f"  RATIO platform/bare wall: {median(ratios):.3f}x (median of {len(ratios)}; "
        f"target <= {TARGET:.2f}x: {verdict})"
    )
    bare, plat = pairs[-1]
    print("  breakdown of the last run, seconds (bare | platform):")
    for name, seconds in bare["phases"].items():
        print(f"    bare      {name:<42}{seconds:8.2f}")
    for name, seconds in plat["phases"].items():
        print(f"    platform  {name:<42}{seconds:8.2f}")
    hook_ms = hooks["record_progress_ms"] + hooks["cancel_check_ms"]
    print(f"  per-step hooks on this DB: record_progress {hooks['record_progress_ms']:.2f} ms "
          f"({hooks['metrics_per_report']} metrics, 20 kB log tail) + cancel check "
          f"{hooks['cancel_check_ms']:.2f} ms, x {plat['reports']} reports = "
          f"{hook_ms * plat['reports'] / 1000:.2f} s")  # fmt: skip
    post = plat["phases"]["save + hash + evaluate + register"] - bare["phases"]["save model"]
    print(
        f"  post-train work the bare script does not do (hash, evaluate, register): {post:.2f} s; "
        f"worker main process CPU during the run: {plat['worker_main_cpu']:.2f} s"
    )
    print(f"  eval stored on the run: {json.dumps(_short(plat['eval']))[:160]}")
    return median(ratios)


def _short(value):
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items() if k != "samples"}
    return round(value, 4) if isinstance(value, float) else value


# --- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, help=f"optimizer steps (default {DEFAULT_STEPS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps: a smoke test")
    parser.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS))
    parser.add_argument("--repeats", type=int, default=1, help="bare/platform pairs per job")
    parser.add_argument(
        "--paired",
        action="store_true",
        help="start bare and platform at the same moment (both see the same outside load)",
    )
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for both sides")
    parser.add_argument("--rows", type=int, default=512, help="preference pairs in the snapshot")
    parser.add_argument("--keep", action="store_true", help="keep the temporary DATA_DIR")
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter on both sides")
    args = parser.parse_args()
    steps = args.steps or (QUICK_STEPS if args.quick else DEFAULT_STEPS)

    tmp = Path(tempfile.mkdtemp(prefix="training-overhead-"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'db.sqlite3'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{data_dir / 'celery-broker.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "development",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "OMP_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONWARNINGS": "ignore",
    }
    worker = None
    try:
        print(f"training overhead: steps={steps} jobs={','.join(args.jobs)} repeats={args.repeats} "
              f"{'paired ' if args.paired else ''}{'lora ' if args.lora else ''}"
              f"threads={args.threads} rows={args.rows} cpus={os.cpu_count()}")  # fmt: skip
        print(f"start: {load_line()}")
        rows = preference_rows(args.rows)
        base = data_dir / "models" / "base-model"  # under the default model root (MODEL_ROOTS)
        base.parent.mkdir()
        params = build_base_model(base, rows, env)
        print(f"base model: GPT-2 {MODEL}, tiny BPE tokenizer, {params / 1e6:.2f} M parameters")
        setup_platform(data_dir, env)
        snapshot = create_snapshot(rows)
        worker = start_worker(env, data_dir / "worker.log")
        results: dict[str, list[tuple[dict, dict]]] = {kind: [] for kind in args.jobs}
        hooks: dict[str, dict] = {}
        for repeat in range(args.repeats):
            for index, kind in enumerate(args.jobs):
                bare_first = (repeat + index) % 2 == 0  # alternate the order against drift
                bare, plat = run_pair(
                    kind,
                    steps,
                    snapshot,
                    base,
                    worker,
                    tmp,
                    env,
                    args.paired,
                    bare_first,
                    args.lora,
                )
                order = "bare first" if bare_first else "platform first"
                plat["order"] = ("both at once, " if args.paired else "") + order
                print(f"[{kind} {repeat + 1}] bare {bare['wall']:.1f} s, platform "
                      f"{plat['wall']:.1f} s ({plat['order']}); {load_line()}",
                      flush=True)  # fmt: skip
                results[kind].append((bare, plat))
                hooks.setdefault(kind, hook_cost(plat.pop("run")))
        summary = {
            kind: print_job(kind, steps, pairs, hooks[kind]) for kind, pairs in results.items()
        }
        print("\nsummary (median platform/bare wall-time ratio): " + ", ".join(
            f"{kind} {ratio:.3f}x" for kind, ratio in summary.items()
        ) + f"  (target <= {TARGET:.2f}x)")  # fmt: skip
        if args.quick:
            print("(--quick: a smoke test; ratios over a few steps mean nothing)")
        print(f"end: {load_line()}")
    finally:
        for process in [*CHILDREN, *([worker] if worker else [])]:
            stop_process(process)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # Django was never set up
            pass
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
