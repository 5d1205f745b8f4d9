"""Discretion control end to end through a real Celery worker (issue 20): declare a precedence,
train a policy to it, measure that the policy follows it.

Conflict pairs: a careful answer and a blunt one, each a varied bag of words (so that tiny
reward models learn what words are worth). ``pat`` sides with p (keep people safe) in every
conflict, ``quinn`` with q (answer directly); both say p favours the careful answer and q the
blunt one. From the same judgments: an SFT base (``quinn``'s demonstrations: both kinds of
answer alike), a reward model per principle, then two GRPO policies from the same base, one
trained to the declared precedence (p > q) and one to ``quinn``'s revealed priorities (q > p).
Each policy's own discretion profile is measured on held-out probe pairs.
"""

from __future__ import annotations

import random

import pytest

from annotation.datasets import bulk, snapshots
from annotation.models import TaskResponse
from annotation.principles import services as principle_services
from annotation.projects import services as project_services
from annotation.quality.metrics import discretion as disc
from annotation.specs import PrincipleSpec, PromptSpec, ResponseSpec
from annotation.workspace import demonstrations, judging, leasing
from models_registry import profiles
from models_registry.models import ModelVersion
from tests.registry.conftest import wait_done
from training import generation, groups, services
from training.models import RunGroup, TrainingRun

pytestmark = [pytest.mark.worker, pytest.mark.training, pytest.mark.django_db(transaction=True)]

CAREFUL = ["safe", "careful", "caution", "protect", "gently", "risk", "warn", "secure", "slowly"]
BLUNT = ["now", "fast", "just", "exactly", "direct", "quick", "done", "straight", "simply"]
NEUTRAL = ["the", "you", "it", "and", "to", "is", "that", "this", "your", "for"]
TINY = {"batch_size": 8, "max_length": 96, "save_steps": 0, "eval_fraction": 0.2}
SFT = {**TINY, "max_steps": 60, "learning_rate": 3e-3, "max_completion_length": 16,
       "eval_prompts": 2, "num_samples": 1}  # fmt: skip
RM = {**TINY, "max_steps": 20, "learning_rate": 2e-3, "eval_fraction": 0.25}
# temperature 1.6: the SFT base already writes like quinn, so at 1.0 a policy trained to p > q
# rarely samples a careful answer to reward (with transformers 5.25 / TRL 1.16 it stayed at
# PS(p, q) 0.33-0.42); hotter rollouts explore both styles
POLICY = {**TINY, "max_steps": 40, "learning_rate": 2e-3, "temperature": 1.6,
          "max_completion_length": 16,
          "num_generations": 8, "eval_prompts": 2, "num_samples": 1,
          "rewards": [{"type": "principles"}]}  # fmt: skip
FINISHED = ("succeeded", "failed", "cancelled")


def bag(rng: random.Random, words: list[str]) -> str:
    picked = [
        rng.choice(words if rng.random() < 0.7 else NEUTRAL) for _ in range(rng.randint(5, 9))
    ]
    return " ".join(picked).capitalize() + "."


def conflict_project(train: int, probe: int):
    principle_set = principle_services.create_principle_set(
        name="control",
        principles=[
            PrincipleSpec(key="p", title="Keep people safe", authority="root"),
            PrincipleSpec(key="q", title="Answer directly", authority="user"),
        ],
        publish=True,
    )
    project = project_services.create_project(
        name="control", slug="control", principle_set=principle_set, task_kinds=["compare"],
        annotations_per_task=2,
    )  # fmt: skip
    rng = random.Random(0)
    specs = []
    for i in range(train + probe):
        pair = [ResponseSpec(bag(rng, CAREFUL), "model:careful@1"),
                ResponseSpec(bag(rng, BLUNT), "model:blunt@1")]  # fmt: skip
        prefix = "train" if i < train else "probe"
        specs.append(
            PromptSpec(
                messages=[{"role": "user", "content": f"{prefix} question {i}: what now?"}],
                responses=pair,
                external_id=f"{prefix}-{i}",
            )
        )
    bulk.create_tasks(project=project, specs=specs)
    return project


def judge_all(project, user, *, side: str, only: str, demonstrate: bool = False) -> None:
    """Every ``only`` task: ``side``'s response first, both verdicts, ``side`` decisive."""
    done = 0
    while (assignment := leasing.next_task(annotator=user, project=project)) is not None:
        if not assignment.task.prompt.external_id.startswith(only):
            leasing.skip_task(assignment=assignment, annotator=user, reason="not mine")
            continue
        rows = TaskResponse.objects.filter(task_id=assignment.task_id)
        ids = dict(rows.values_list("response__source", "response_id"))
        careful, blunt = ids["model:careful@1"], ids["model:blunt@1"]
        best, worst = (careful, blunt) if side == "p" else (blunt, careful)
        judging.submit_judgment(
            assignment=assignment, annotator=user, ordering=[[best], [worst]], strength=2,
            verdicts={"p": careful, "q": blunt}, decisive=[side], origin="test",
        )  # fmt: skip
        if demonstrate:  # both kinds of answer, as often each
            shown = careful if done % 2 == 0 else blunt
            text = rows.get(response_id=shown).response.text
            demonstrations.create_demonstration(annotator=user, task=assignment.task, text=text)
        done += 1


def trained(run: TrainingRun, worker) -> ModelVersion:
    run = wait_done(
        lambda: TrainingRun.objects.filter(pk=run.pk, status__in=FINISHED).first(), worker, 400
    )
    assert run.status == "succeeded", f"{run.kind}: {run.error}\n{run.log_tail[-3000:]}"
    return ModelVersion.objects.get(pk=run.output_model_version_id)


@pytest.mark.e2e
def test_policies_follow_the_precedence_they_were_trained_to(registry_worker, make_user):
    project = conflict_project(train=40, probe=12)
    pat, quinn = make_user("pat"), make_user("quinn")
    judge_all(project, pat, side="p", only="train")
    judge_all(project, quinn, side="q", only="train", demonstrate=True)
    judge_all(project, make_user("prober"), side="p", only="probe")
    judge_all(project, make_user("prober-2"), side="q", only="probe")

    sft = services.launch_run(
        kind="sft", config=SFT, name="control-sft",
        snapshot=snapshots.create_snapshot(project=project, kind="sft", run="inline"),
    )  # fmt: skip
    group = groups.launch_principle_rewards(
        project=project, filters={"annotators": [pat.pk, quinn.pk]}, config=RM, min_pairs=10,
        name="control-rm",
    )  # fmt: skip
    base = trained(sft, registry_worker)
    group = wait_done(
        lambda: RunGroup.objects.filter(pk=group.pk).exclude(status="preparing").first(),
        registry_worker,
    )
    assert group.status == "launched", group.error
    for run in group.runs.all():
        version = trained(run, registry_worker)
        assert version.eval_metrics["accuracy"] >= 0.8, (run.name, version.eval_metrics)

    targets = {
        "declared": {"weights_from": "declared"},
        "quinn": {"weights_from": "revealed", "annotators": ["quinn"]},
    }
    policies = {
        name: services.launch_run(
            kind="grpo",
            config=POLICY,
            snapshot=group.runs.first().snapshot,
            base_model_version=base,
            precedence={"reward_group": group.pk, **target},
            name=f"control-{name}",
        )
        for name, target in targets.items()
    }
    assert policies["declared"].precedence["ranking"] == [["p"], ["q"]]
    assert policies["quinn"].precedence["ranking"] == [["q"], ["p"]]
    measured = {}
    for name, run in policies.items():
        version = trained(run, registry_worker)
        version = wait_done(
            lambda v=version: ModelVersion.objects.filter(
                pk=v.pk, model_discretion_profile__status__in=["ready", "unavailable", "failed"]
            ).first(),
            registry_worker,
        )
        assert version.model_discretion_profile["status"] == "ready"
        # measured as what training changed: each response's log-likelihood ratio to the base
        # (the automatic profile reads raw log-likelihoods, which the base's own bias dominates)
        profile = generation.profile_version(version.pk, method="policy-logprob-ratio")
        assert profile["method"] == "policy-logprob-ratio", profile
        measured[name] = profile

    declared, revealed = measured["declared"], measured["quinn"]
    ps_declared, n = profiles.supremacy_of(declared, "p", "q")
    ps_revealed, _ = profiles.supremacy_of(revealed, "p", "q")
    assert n >= 8
    assert ps_declared > 0.5 > ps_revealed, (ps_declared, ps_revealed)
    opposite = {"p": {"p": 0.0, "q": 1.0}, "q": {"p": 1.0, "q": 0.0}}
    assert declared["dd_target"] < disc.discrepancy(declared["weights"], opposite["p"])
    assert revealed["dd_target"] < disc.discrepancy(revealed["weights"], opposite["q"])
    # closer to the annotator whose order it was trained to than to the opposite annotator
    quinn_weights = profiles.revealed_priorities(project, ["quinn"])["weights"]
    pat_weights = profiles.revealed_priorities(project, ["pat"])["weights"]
    dd_quinn = disc.discrepancy(revealed["weights"], quinn_weights)
    dd_pat = disc.discrepancy(revealed["weights"], pat_weights)
    assert dd_quinn < dd_pat, (dd_quinn, dd_pat)
