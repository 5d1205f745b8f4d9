"""Discretion control end to end (issue 20): declare a precedence, train a policy to it, measure
that the policy follows it.

    .venv/bin/python benchmarks/discretion_control.py [--seeds 0,1,2] [--tasks 48]
        [--probe 16] [--policy-steps 40]

For each seed, in a fresh SQLite database under a temporary directory:

1. Synthetic conflict pairs (principle p "keep people safe" declared above q "answer
   directly"): one careful and one blunt response, and the scripted annotator ``alice`` whose
   verdicts say p favours the careful one and q the blunt one (her overall choice alternates);
   a prober labels held-out probe pairs the same way.
2. "Reward per principle" (``training.groups``): a snapshot per principle from alice's verdicts
   and a ``builtin:tiny`` reward model each (held-out accuracy printed).
3. Two GRPO policies from the same base, one trained to p > q (the declared precedence) and
   one to q > p (explicit weights), each rewarded by both principle models.
4. Each policy's own discretion profile on the probe (log-likelihood ratio of each response to
   the untrained base): PS(p, q) and DD to its own target and to the opposite one.

Runs execute in this process (``training.executor.execute``, the worker's own code path, with
the broker left out); the wall time of the whole loop is printed, beside the CPU reference.
Target on 2 cores: the two policies' PS(p, q) on opposite sides of 0.5, each policy's DD to its
own target below its DD to the other, the loop under 15 minutes.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import cpu_reference

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CAREFUL = ["safe", "careful", "caution", "protect", "gently", "risk", "warn", "secure", "slowly"]
BLUNT = ["now", "fast", "just", "exactly", "direct", "quick", "done", "straight", "simply"]
NEUTRAL = ["the", "you", "it", "and", "to", "is", "that", "this", "your", "for"]


def response(rng: random.Random, words: list[str]) -> str:
    """A response of 5–9 words: mostly from ``words``, some neutral. Varied bags of words, so
    that reward models learn what each word is worth rather than recognise whole sentences."""
    picked = [
        rng.choice(words if rng.random() < 0.7 else NEUTRAL) for _ in range(rng.randint(5, 9))
    ]
    return " ".join(picked).capitalize() + "."


SFT_CONFIG = {"max_steps": 60, "batch_size": 8, "learning_rate": 3e-3, "max_length": 96,
              "save_steps": 0, "eval_fraction": 0.1, "max_completion_length": 16,
              "eval_prompts": 2, "num_samples": 1}  # fmt: skip
RM_CONFIG = {"max_steps": 20, "batch_size": 8, "learning_rate": 2e-3, "max_length": 96,
             "save_steps": 0, "eval_fraction": 0.25}  # fmt: skip


def policy_config(steps: int, seed: int) -> dict:
    return {"max_steps": steps, "batch_size": 8, "learning_rate": 2e-3, "max_length": 96,
            "temperature": 1.6, "save_steps": 0, "eval_fraction": 0.2, "max_completion_length": 16,
            "num_generations": 8, "eval_prompts": 4, "num_samples": 2, "seed": seed,
            "rewards": [{"type": "principles"}]}  # fmt: skip


def setup_django(data_dir: Path) -> None:
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ["ARTIFACT_ROOT"] = str(data_dir / "artifacts")
    os.environ["DATABASE_URL"] = f"sqlite:///{data_dir / 'control.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import django

    django.setup()
    logging.getLogger("axes").setLevel(logging.WARNING)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def build_project(tasks: int, probe: int, seed: int):
    """The principle set, the project, alice's verdicts on the training pairs, the prober's on
    the probe pairs (through the assignment engine)."""
    from annotation.datasets import bulk
    from annotation.models import Response, TaskResponse
    from annotation.principles import services as principle_services
    from annotation.projects import members
    from annotation.projects import services as project_services
    from annotation.specs import PrincipleSpec, PromptSpec, ResponseSpec
    from annotation.workspace import demonstrations, judging, leasing

    principle_set = principle_services.create_principle_set(
        name="control",
        principles=[
            PrincipleSpec(key="p", title="Keep people safe", authority="root"),
            PrincipleSpec(key="q", title="Answer directly", authority="user"),
        ],
        publish=True,
    )
    project = project_services.create_project(
        name="control", slug="control", principle_set=principle_set, task_kinds=["compare"]
    )
    rng = random.Random(seed)
    specs = []
    for i in range(tasks + probe):
        pair = [
            ResponseSpec(response(rng, CAREFUL), "model:careful@1"),
            ResponseSpec(response(rng, BLUNT), "model:blunt@1"),
        ]
        rng.shuffle(pair)
        prefix = "train" if i < tasks else "probe"
        specs.append(
            PromptSpec(
                messages=[{"role": "user", "content": f"{prefix} question {i}: what now?"}],
                responses=pair,
                external_id=f"{prefix}-{i}",
            )
        )
    bulk.create_tasks(project=project, specs=specs)
    users = {
        name: project_services.create_user(username=name, password=None)
        for name in ("alice", "prober")
    }
    for user in users.values():
        members.add_member(project=project, user=user)
    for name, user in users.items():
        done = 0
        while (assignment := leasing.next_task(annotator=user, project=project)) is not None:
            if not assignment.task.prompt.external_id.startswith(
                "train" if name == "alice" else "probe"
            ):
                leasing.skip_task(assignment=assignment, annotator=user, reason="not mine")
                continue
            sources = dict(
                TaskResponse.objects.filter(task_id=assignment.task_id).values_list(
                    "response__source", "response_id"
                )
            )
            careful, blunt = sources["model:careful@1"], sources["model:blunt@1"]
            best, worst = (careful, blunt) if done % 2 == 0 else (blunt, careful)
            judging.submit_judgment(
                assignment=assignment, annotator=user, ordering=[[best], [worst]], strength=2,
                verdicts={"p": careful, "q": blunt}, origin="benchmark",
            )  # fmt: skip
            if name == "alice":  # the SFT data: both kinds of answer, as often each
                texts = dict(Response.objects.filter(pk__in=[best]).values_list("pk", "text"))
                demonstrations.create_demonstration(
                    annotator=user, task=assignment.task, text=texts[best]
                )
            done += 1
    return project, users


def tiny_base(project, seed: int):
    """The policies' common base: a ``builtin:tiny`` causal LM whose tokenizer knows the
    project's words, registered so that the profile can score each response by its
    log-likelihood ratio to it (length and wording effects of the base cancel out)."""
    from django.conf import settings

    from annotation.models import Prompt, Response
    from models_registry import services as registry_services
    from training.tiny import save_tiny

    texts = [*Response.objects.filter(prompt__project=project).values_list("text", flat=True)]
    texts += [m[0]["content"] for m in Prompt.objects.filter(project=project).values_list(
        "messages", flat=True)]  # fmt: skip
    path = save_tiny(Path(settings.ARTIFACT_ROOT) / "bases" / f"tiny-{seed}", texts=texts,
                     seed=seed)  # fmt: skip
    return registry_services.register_from_source(name="tiny-base", kind="base", source=str(path))


def sft_base(project, alice, tiny, seed: int):
    """SFT of the tiny base on alice's demonstrations (careful and blunt answers alike): a
    policy that writes the project's words, from which both GRPO policies start."""
    from annotation.datasets import snapshots
    from models_registry.models import ModelVersion
    from training import services

    sft_data = snapshots.create_snapshot(project=project, kind="sft", run="inline")
    run = services.launch_run(
        kind="sft", config={**SFT_CONFIG, "seed": seed}, snapshot=sft_data,
        base_model_version=tiny, name=f"sft-{seed}",
    )  # fmt: skip
    run_inline([run.pk])
    return ModelVersion.objects.get(training_run__pk=run.pk)


def run_metrics(run_id: int) -> dict:
    from models_registry.selectors import _flatten
    from training.models import TrainingRun

    return _flatten(TrainingRun.objects.get(pk=run_id).eval_metrics or {})


def run_inline(run_ids: list[int]) -> None:
    from training.executor import execute
    from training.models import TrainingRun

    for run_id in run_ids:
        execute(run_id)
        run = TrainingRun.objects.get(pk=run_id)
        if run.status != "succeeded":
            raise SystemExit(f"run {run_id} {run.status}: {run.error[:2000]}")


def one_seed(seed: int, args) -> dict:
    from models_registry import profiles
    from models_registry.models import ModelVersion
    from training import generation, groups, services
    from training.models import RunGroup, TrainingRun

    services.enqueue = lambda run: None  # runs execute in this process (run_inline)
    started = time.perf_counter()
    project, users = build_project(args.tasks, args.probe, seed)
    group = RunGroup.objects.create(
        name=f"control-{seed}", project=project, min_pairs=10,
        request={"filters": {"annotators": [users["alice"].pk]}, "aggregation": "raw",
                 "keys": ["p", "q"], "config": {**RM_CONFIG, "seed": seed},
                 "base_model": "builtin:tiny", "base_model_version": None, "queue": "cpu",
                 "num_processes": 1},
    )  # fmt: skip
    group = groups.prepare_group(group.pk)
    assert group.status == "launched", group.error
    rm_runs = list(group.runs.order_by("pk"))
    run_inline([run.pk for run in rm_runs])
    accuracy = {
        run.snapshot.filters["principle"]: TrainingRun.objects.get(pk=run.pk).eval_metrics[
            "accuracy"
        ]
        for run in rm_runs
    }
    snapshot = rm_runs[0].snapshot
    base = sft_base(project, users["alice"], tiny_base(project, seed), seed)
    targets = {
        "p>q": {"reward_group": group.pk, "weights_from": "declared"},
        "q>p": {"reward_group": group.pk, "weights_from": "explicit",
                "weights": {"p": 1, "q": 2}},
    }  # fmt: skip
    result = {"seed": seed, "rm_accuracy": accuracy, "policies": {}}
    for name, precedence in targets.items():
        run = services.launch_run(
            kind="grpo", config=policy_config(args.policy_steps, seed), snapshot=snapshot,
            base_model_version=base, precedence=precedence, name=f"policy-{name}-{seed}",
        )  # fmt: skip
        run_inline([run.pk])
        version = ModelVersion.objects.get(training_run__pk=run.pk)
        profile = generation.profile_version(version.pk, method="policy-logprob-ratio")
        ps, n = profiles.supremacy_of(profile, "p", "q")
        metrics = run_metrics(run.pk)
        result["policies"][name] = {
            "ps_pq": ps, "n": n, "dd_target": profile.get("dd_target"),
            "weights": profile.get("weights"),
            "rewards": {k: round(v, 3) for k, v in metrics.items() if k.startswith("reward")},
        }  # fmt: skip
    # DD of each policy to the other's target: the opposite ranking
    from annotation.quality.metrics import discretion as disc

    for name, other in (("p>q", {"p": 0.0, "q": 1.0}), ("q>p", {"p": 1.0, "q": 0.0})):
        policy = result["policies"][name]
        policy["dd_opposite"] = disc.discrepancy(policy["weights"], other)
    result["seconds"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tasks", type=int, default=48)
    parser.add_argument("--probe", type=int, default=16)
    parser.add_argument("--policy-steps", type=int, default=40)
    parser.add_argument("--keep", help="Keep each seed's database and artifacts under this folder.")
    args = parser.parse_args()
    print(cpu_reference.describe(), flush=True)
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        with tempfile.TemporaryDirectory(prefix=f"control-{seed}-") as tmp:
            if args.keep:
                tmp = str(Path(args.keep) / f"seed-{seed}")
                Path(tmp).mkdir(parents=True, exist_ok=True)
            code = (
                "import sys, json; sys.path[:0] = [{bench!r}, {repo!r}];"
                "import discretion_control as d; from pathlib import Path;"
                "d.setup_django(Path({tmp!r}));"
                "print('RESULT ' + json.dumps(d.one_seed({seed}, d.parse({argv!r}))))"
            ).format(
                bench=str(REPO / "benchmarks"), repo=str(REPO), tmp=tmp, seed=seed,
                argv=sys.argv[1:],
            )  # fmt: skip
            import json
            import subprocess

            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=False
            )
            lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if out.returncode or not lines:
                print(out.stdout[-3000:], out.stderr[-6000:])
                raise SystemExit(f"seed {seed} failed")
            results.append(json.loads(lines[-1][len("RESULT ") :]))
        r = results[-1]
        print(f"\nseed {seed}: loop {r['seconds']:.0f} s · reward models held-out accuracy "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["rm_accuracy"].items()))  # fmt: skip
        for name, p in r["policies"].items():
            print(f"  policy {name}: PS(p,q) {fmt(p['ps_pq'])} over {p['n']} conflicts · "
                  f"DD to own target {fmt(p['dd_target'])} · to the opposite "
                  f"{fmt(p['dd_opposite'])} · eval rewards {p['rewards']}")  # fmt: skip
        print("  " + cpu_reference.describe(), flush=True)


def fmt(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tasks", type=int, default=48)
    parser.add_argument("--probe", type=int, default=16)
    parser.add_argument("--policy-steps", type=int, default=40)
    parser.add_argument("--keep")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
