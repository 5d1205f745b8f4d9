"""Registered models at inference, inside a worker: the closed loop's "generate candidates" job
and the measurement of a model's own discretion.

* :func:`execute_generation` — registered policies sample K responses per prompt of a project
  (transformers ``generate``; vLLM when it is installed and a GPU is visible) and every prompt
  gets one compare (2 responses) or rank (K > 2) task whose responses carry the source
  ``model:<name>@<version>``. Iterated RLHF: annotate → snapshot → reward model → policy →
  generate → annotate.
* :func:`profile_version` — scores a probe set of comparisons with principle verdicts (see
  ``models_registry.profiles``): a reward model by its reward, a policy by the log-likelihood
  it gives each response (the ``policy-logprob`` annotator kind), by its log-likelihood ratio to
  its reference, or through a chosen reward model; then records the model's judgments and
  discretion profile on the version. Called after every successful run.

Torch and transformers are imported inside functions only (the Celery parent never loads them).
"""

from __future__ import annotations

import importlib.util
import logging
import random
import traceback
from collections.abc import Sequence
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from annotation.models import Project, Prompt, Response, Task, TaskResponse
from models_registry import adapters, profiles, storage
from models_registry.models import GenerationJob, ModelVersion, RegisteredModel
from training.services import failure_text

log = logging.getLogger(__name__)
BATCH = 8


# ---------------------------------------------------------------- scoring


class LogProbScorer:
    """Sum of log p(completion tokens | prompt) under a causal LM (EOS included) — the
    sequence log-likelihood Buyl et al. read RLHF-tuned policies' preferences from."""

    def __init__(self, model_dir: str | Path, *, batch_size: int = 16, device: str | None = None):
        from training.trainers.common import (
            default_device,
            load_causal_lm,
            load_tokenizer,
            max_positions,
        )

        self.tokenizer = load_tokenizer(str(model_dir))
        self.device = device or default_device()
        self.model = load_causal_lm(str(model_dir)).to(self.device).eval()
        self.limit = max_positions(self.model.config) or 4096
        self.batch_size = batch_size

    def encode(self, prompt, completion) -> tuple[list[int], int]:
        """Token ids of prompt + completion (+ EOS) and the index of the first completion token."""
        from training.trainers.common import completion_text, render_prompt

        tok = self.tokenizer
        p_ids = list(tok(render_prompt(tok, prompt), add_special_tokens=False)["input_ids"])
        c_ids = list(tok(completion_text(completion), add_special_tokens=False)["input_ids"])
        if tok.eos_token_id is not None:
            c_ids.append(tok.eos_token_id)
        if not p_ids:
            p_ids = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
        c_ids = c_ids[: self.limit - 1]
        p_ids = p_ids[-(self.limit - len(c_ids)) :]
        return p_ids + c_ids, len(p_ids)

    def __call__(self, prompts: Sequence, completions: Sequence) -> list[float]:
        import torch

        encoded = [self.encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        pad = self.tokenizer.pad_token_id or 0
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(encoded), self.batch_size):
                batch = encoded[start : start + self.batch_size]
                width = max(len(ids) for ids, _ in batch)
                ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch])
                mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
                logits = self.model(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits.float()
                logp = torch.log_softmax(logits[:, :-1], dim=-1)
                token_logp = torch.gather(logp, 2, ids[:, 1:].to(self.device).unsqueeze(-1))
                token_logp = token_logp.squeeze(-1).cpu()
                for row, (seq, first) in enumerate(batch):
                    scores.append(float(token_logp[row, first - 1 : len(seq) - 1].sum()))
        return scores


def _ratio_scorer(policy_dir: str, reference_dir: str):
    policy, reference = LogProbScorer(policy_dir), LogProbScorer(reference_dir)

    def score(prompts, completions) -> list[float]:
        ours, theirs = policy(prompts, completions), reference(prompts, completions)
        return [a - b for a, b in zip(ours, theirs, strict=True)]

    return score


def _reward_scorer(model_dir: str):
    from training.trainers.reward import RewardScorer

    return RewardScorer(model_dir)


def _reference_of(version: ModelVersion) -> ModelVersion | None:
    links = {link.role: link.parent for link in version.parent_links.select_related("parent")}
    return links.get("reference") or links.get("base")


def resolve_method(
    version: ModelVersion, method: str = "auto", reward_version: ModelVersion | None = None
) -> tuple[str, object]:
    """(method label, scorer) for profiling ``version``."""
    kind = version.registered_model.kind
    if kind == RegisteredModel.Kind.REWARD:
        return "reward-model", _reward_scorer(storage.loadable(version))
    if reward_version is not None:
        label = f"reward-model:{reward_version.registered_model.name}@{reward_version.version}"
        return label, _reward_scorer(storage.loadable(reward_version))
    if method == "policy-logprob-ratio":
        reference = _reference_of(version)
        if reference is not None and reference.artifact_uri:
            return "policy-logprob-ratio", _ratio_scorer(
                storage.loadable(version), storage.loadable(reference)
            )
    return "policy-logprob", LogProbScorer(storage.loadable(version))


def profile_version(
    version_id: int,
    probe_project_id: int | None = None,
    method: str = "auto",
    reward_version_id: int | None = None,
) -> dict:
    """Measure and store the version's own discretion profile (see module doc)."""
    version = ModelVersion.objects.select_related(
        "registered_model", "dataset_snapshot__project"
    ).get(pk=version_id)
    project = Project.objects.get(pk=probe_project_id) if probe_project_id else None
    reward_version = (
        ModelVersion.objects.select_related("registered_model").get(pk=reward_version_id)
        if reward_version_id
        else None
    )
    probe = profiles.probe_for(version, project=project)
    if not probe.items:
        profile = {
            "status": "unavailable",
            "reason": "no two-response comparison with principle verdicts to probe "
            f"({probe.description or 'empty project'})",
        }
        profiles.save_model_profile(version, profile)
        return profile
    label, scorer = resolve_method(version, method, reward_version)
    prompts = [item.prompt for item in probe.items]
    first = scorer(prompts, [item.first_text for item in probe.items])
    second = scorer(prompts, [item.second_text for item in probe.items])
    return profiles.record_model_profile(
        version=version, probe=probe, method=label, first_scores=first, second_scores=second
    )


def profile_version_safely(version_id: int, **options) -> dict:
    """:func:`profile_version`, with any failure recorded on the version instead of raised (a
    finished run must stay succeeded)."""
    try:
        return profile_version(version_id, **options)
    except Exception as exc:
        log.exception("profiling model version %s failed", version_id)
        profile = {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc()[-4000:],
        }
        try:
            version = ModelVersion.objects.filter(pk=version_id).first()
            if version is not None:
                profiles.save_model_profile(version, profile)
        except Exception:
            log.exception("recording the failed profile of model version %s failed", version_id)
        return profile


# ---------------------------------------------------------------- generation


def _vllm_usable() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _texts(tokenizer, prompts: list[list[dict]]) -> list[str]:
    from training.trainers.common import render_prompt

    return [render_prompt(tokenizer, messages) for messages in prompts]


def sample_transformers(
    model_dir: str, prompts: list[list[dict]], n: int, params: dict, on_batch=None
) -> list[list[str]]:
    """``n`` sampled completions per prompt with ``transformers`` ``generate``."""
    import torch

    from training.trainers.common import (
        default_device,
        load_causal_lm,
        load_tokenizer,
        max_positions,
    )

    tokenizer = load_tokenizer(model_dir)
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    device = default_device()
    model = load_causal_lm(model_dir).to(device).eval()
    new_tokens = params["max_new_tokens"]
    limit = max_positions(model.config)
    budget = max(1, limit - new_tokens) if limit else None
    torch.manual_seed(params["seed"])
    out: list[list[str]] = []
    texts = _texts(tokenizer, prompts)
    for start in range(0, len(texts), BATCH):
        enc = tokenizer(
            texts[start : start + BATCH],
            return_tensors="pt",
            padding=True,
            truncation=budget is not None,
            max_length=budget,
            add_special_tokens=False,
        ).to(device)
        with torch.inference_mode():
            generated = model.generate(
                **enc,
                do_sample=True,
                temperature=params["temperature"],
                top_p=params["top_p"],
                top_k=0,
                max_new_tokens=new_tokens,
                min_new_tokens=min(4, new_tokens),
                num_return_sequences=n,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        completions = tokenizer.batch_decode(
            generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
        )
        for i in range(len(completions) // n):
            out.append([c.strip() for c in completions[i * n : (i + 1) * n]])
        if on_batch:
            on_batch(len(out))
    return out


def sample_vllm(model_dir: str, prompts: list[list[dict]], n: int, params: dict) -> list[list[str]]:
    """``n`` sampled completions per prompt with vLLM (GPU workers that have it installed)."""
    from vllm import LLM, SamplingParams

    from training.trainers.common import load_tokenizer

    sampling = SamplingParams(
        n=n,
        temperature=params["temperature"],
        top_p=params["top_p"],
        max_tokens=params["max_new_tokens"],
        seed=params["seed"],
    )
    with adapters.full_weights(model_dir) as weights:  # vLLM loads an adapter merged
        llm = LLM(model=weights, seed=params["seed"])
        outputs = llm.generate(_texts(load_tokenizer(model_dir), prompts), sampling)
    return [[o.text.strip() for o in output.outputs] for output in outputs]


def _claim(job_id: int) -> GenerationJob | None:
    claimed = GenerationJob.objects.filter(pk=job_id, status=GenerationJob.Status.QUEUED).update(
        status=GenerationJob.Status.RUNNING, started_at=timezone.now(), error=""
    )
    return GenerationJob.objects.select_related("project").get(pk=job_id) if claimed else None


def execute_generation(job_id: int) -> None:
    """Claim the job, sample, and create the tasks (one transaction); failures are recorded."""
    job = _claim(job_id)
    if job is None:
        log.info("generation job %s is not queued (missing or already handled)", job_id)
        return
    try:
        _generate(job)
    except Exception as exc:
        GenerationJob.objects.filter(pk=job.pk).update(
            status=GenerationJob.Status.FAILED,
            error=failure_text(exc, traceback.format_exc()),
            finished_at=timezone.now(),
        )


def _generate(job: GenerationJob) -> None:
    params = job.params
    n = int(params["samples_per_model"])
    versions = list(job.model_versions.select_related("registered_model").order_by("id"))
    prompts = list(
        Prompt.objects.filter(project=job.project).order_by("id")[: int(params["max_prompts"])]
    )
    if not prompts or not versions:
        raise RuntimeError("nothing to generate: no prompts or no model versions")
    engine = params.get("engine", "auto")
    if engine == "auto":
        engine = "vllm" if _vllm_usable() else "transformers"
    messages = [p.messages for p in prompts]
    samples: dict[int, list[list[str]]] = {}
    steps = len(versions) * len(prompts)
    for index, version in enumerate(versions):

        def on_batch(done: int, index=index) -> None:
            GenerationJob.objects.filter(pk=job.pk).update(
                progress=min(0.99, (index * len(prompts) + done) / steps)
            )

        if engine == "vllm":
            samples[version.pk] = sample_vllm(storage.loadable(version), messages, n, params)
        else:
            samples[version.pk] = sample_transformers(
                storage.loadable(version), messages, n, params, on_batch
            )
    task_ids = _create_tasks(job, prompts, versions, samples, engine)
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.SUCCEEDED,
        progress=1.0,
        engine=engine,
        prompt_count=len(prompts),
        task_count=len(task_ids),
        response_count=len(task_ids) * n * len(versions),
        task_ids=task_ids,
        finished_at=timezone.now(),
    )


@transaction.atomic
def _create_tasks(
    job: GenerationJob,
    prompts: list[Prompt],
    versions: list[ModelVersion],
    samples: dict[int, list[list[str]]],
    engine: str,
) -> list[int]:
    params = job.params
    generation = {k: params[k] for k in ("temperature", "top_p", "max_new_tokens", "seed")}
    generation.update(engine=engine, job=job.pk)
    per_prompt: list[list[Response]] = []
    for i, prompt in enumerate(prompts):
        responses = []
        for version in versions:
            for j, text in enumerate(samples[version.pk][i]):
                responses.append(
                    Response(
                        prompt=prompt,
                        text=text,
                        source=profiles.origin_of(version),
                        generation_params={**generation, "sample": j},
                    )
                )
        per_prompt.append(responses)
    Response.objects.bulk_create([r for rs in per_prompt for r in rs])
    kind = Task.Kind.COMPARE if len(per_prompt[0]) == 2 else Task.Kind.RANK
    tasks = Task.objects.bulk_create(
        Task(project=job.project, prompt=prompt, kind=kind) for prompt in prompts
    )
    rng = random.Random(params.get("seed", 0))
    links = []
    for task, responses in zip(tasks, per_prompt, strict=True):
        order = list(responses)
        rng.shuffle(order)  # canonical positions must not reveal the source
        links += [TaskResponse(task=task, response=r, position=p) for p, r in enumerate(order)]
    TaskResponse.objects.bulk_create(links)
    Project.objects.filter(pk=job.project_id).update(task_count=job.project.tasks.count())
    return [t.pk for t in tasks]
