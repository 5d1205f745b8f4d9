"""Judge throughput: verdict requests per second and the platform's CPU per request.

    .venv/bin/python benchmarks/judge_throughput.py [--pairs N] [--questions Q] [--quick]

(a) **HTTP backend**, the whole platform path: a fresh temporary ``DATA_DIR`` with a SQLite
    database (``manage.py migrate``), a project of N two-response compare tasks over a
    3-principle set, and one judge job per concurrency (1, 8, 32) run in this process by
    ``training.judges.runner.execute`` (plan, probe, render, ask, store every chunk, record the
    verdicts) against the loopback OpenAI-compatible server of the tests
    (``tests/judges/server.py``) in its own process, so that this process's CPU time is the
    platform's alone. Printed: requests/s (wall) and CPU ms per request (target < 2 ms), and
    the same for the bare client (``HttpJudge.ask`` on pre-rendered questions) beside it.
(b) **registered-model backend** on CPU: ``ModelJudge.ask`` versus a bare ``transformers`` loop
    over the same GPT-2 (n_embd 256, 4 layers, the in-process BPE tokenizer of
    ``training/tiny.py``), the same questions, batch size, left padding and position ids;
    prompt tokens per second, median of alternating repeats (target ratio ≥ 0.9×).

``benchmarks/cpu_reference.py``'s figure is printed beside (a shared machine's speed drifts).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONCURRENCY = (1, 8, 32)


def _setup_django(data_dir: Path) -> None:
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'db.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"migrate failed:\n{done.stderr[-4000:]}")
    os.environ.update({k: env[k] for k in ("DATA_DIR", "DATABASE_URL", "DJANGO_SETTINGS_MODULE")})
    import django

    django.setup()


def _project(pairs: int):
    from annotation.datasets import bulk
    from annotation.principles import services as principle_services
    from annotation.projects import services as project_services
    from annotation.specs import PrincipleSpec, PromptSpec, ResponseSpec

    principle_set = principle_services.create_principle_set(
        name="bench-principles",
        principles=[
            PrincipleSpec(key="harmless", title="The AI should not cause harm.", authority="root"),
            PrincipleSpec(key="honest", title="The AI should be honest.", authority="user"),
            PrincipleSpec(key="helpful", title="The AI should help.", authority="guideline"),
        ],
        publish=True,
    )
    project = project_services.create_project(
        name="bench", slug="bench", principle_set=principle_set, task_kinds=["compare"]
    )
    filler = "and then the assistant explains the answer in some detail " * 6
    bulk.create_tasks(
        project=project,
        specs=[
            PromptSpec(
                messages=[{"role": "user", "content": f"Question {i}: how do I do this? {filler}"}],
                responses=[
                    ResponseSpec(f"A careful answer {i} {filler}", "model:a@1"),
                    ResponseSpec(f"A blunt answer {i} {filler}", "model:b@1"),
                ],
                external_id=str(i),
                kind="compare",
            )
            for i in range(pairs)
        ],
    )
    return project


def http_backend(pairs: int) -> None:
    from training.judges import runner, services
    from training.judges.backends import HttpJudge
    from training.models import JudgeJob

    project = _project(pairs)
    server = subprocess.Popen(
        [sys.executable, "tests/judges/server.py"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        base_url = server.stdout.readline().strip()
        print(f"(a) HTTP backend: {pairs} pairs × 3 principles × 2 orders per job, {base_url}")
        for c in CONCURRENCY:
            job = services.launch_job(
                project=project,
                backend="http",
                config={"base_url": base_url, "model": "judge-model", "concurrency": c},
                annotator=f"bench-judge-{c}",
                enqueue=False,
            )
            wall, cpu = time.perf_counter(), time.process_time()
            runner.execute(job.pk)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            job = JudgeJob.objects.get(pk=job.pk)
            assert job.status == "succeeded", job.error
            n = job.requests
            messages = runner.Renderer(job, services.compare_pairs(job))(
                runner.plan(job, services.compare_pairs(job))
            )
            judge = HttpJudge(
                base_url=base_url, model="judge-model", options=["A", "B", "NA"], concurrency=c
            )
            bare_wall, bare_cpu = time.perf_counter(), time.process_time()
            judge.ask(messages)
            bare_wall = time.perf_counter() - bare_wall
            bare_cpu = time.process_time() - bare_cpu
            print(
                f"  concurrency {c:>2}: job {n / wall:7.0f} req/s, platform CPU "
                f"{1000 * cpu / n:.2f} ms/request (target < 2) | bare client "
                f"{len(messages) / bare_wall:7.0f} req/s, {1000 * bare_cpu / len(messages):.2f} "
                f"ms/request"
            )
    finally:
        server.kill()
        server.wait()


def _bench_model(directory: Path) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from training.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=512,
        n_embd=256,
        n_layer=4,
        n_head=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _bare_loop(directory: Path, questions: list, batch_size: int) -> tuple[float, int]:
    """Seconds and prompt tokens of the plain transformers reading of the same questions."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    options = [tokenizer("A", add_special_tokens=False)["input_ids"][0],
               tokenizer("B", add_special_tokens=False)["input_ids"][0],
               tokenizer("NA", add_special_tokens=False)["input_ids"][0]]  # fmt: skip
    started = time.perf_counter()
    texts = [tokenizer.apply_chat_template(q, tokenize=False, add_generation_prompt=True)
             for q in questions]  # fmt: skip
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"][-512:] for t in texts]
    tokens = 0
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            batch = encoded[start : start + batch_size]
            width = max(map(len, batch))
            ids = torch.tensor([[0] * (width - len(i)) + i for i in batch])
            mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in batch])
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
            torch.softmax(logits[:, -1].float(), dim=-1)[:, options].tolist()
            tokens += sum(map(len, batch))
    return time.perf_counter() - started, tokens


def model_backend(questions: int, repeats: int) -> None:
    import torch

    from training.judges.backends import ModelJudge

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    directory = Path(tempfile.mkdtemp(prefix="judge-model-"))
    try:
        _bench_model(directory)
        filler = "the assistant explains the answer in some detail and "
        messages = [
            [
                {"role": "system", "content": "Answer A, B or NA."},
                {"role": "user", "content": f"Question {i}: {filler * (3 + i % 12)} A or B?"},
            ]
            for i in range(questions)
        ]
        batch = 8
        judge = ModelJudge(str(directory), ["A", "B", "NA"], batch_size=batch, device="cpu")
        ours, bare = [], []
        for r in range(repeats):
            for side in ("platform", "bare") if r % 2 == 0 else ("bare", "platform"):
                if side == "platform":
                    started = time.perf_counter()
                    answers = judge.ask(messages)
                    tokens = sum(a.prompt_tokens for a in answers)
                    ours.append(tokens / (time.perf_counter() - started))
                else:
                    seconds, tokens = _bare_loop(directory, messages, batch)
                    bare.append(tokens / seconds)
        mine, theirs = statistics.median(ours), statistics.median(bare)
        print(
            f"(b) registered-model backend on CPU ({questions} questions, batch {batch}, "
            f"{torch.get_num_threads()} thread(s)): {mine:,.0f} tokens/s vs bare transformers "
            f"{theirs:,.0f} tokens/s → {mine / theirs:.2f}× (target ≥ 0.90×)"
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200, help="pairs per HTTP job")
    parser.add_argument("--questions", type=int, default=96, help="model-backend questions")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.questions, args.repeats = 10, 16, 2
    from benchmarks.cpu_reference import describe

    print(describe())
    data_dir = Path(tempfile.mkdtemp(prefix="judge-bench-"))
    try:
        _setup_django(data_dir)
        http_backend(args.pairs)
        model_backend(args.questions, args.repeats)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(describe())


if __name__ == "__main__":
    main()
