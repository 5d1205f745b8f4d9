"""Sampling completions from a causal LM and reading back per-token log-probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Rollout:
    """Left-padded prompts followed by right-padded completions, as one tensor batch.

    ``response_mask`` marks completion tokens up to and including the first EOS.
    """

    input_ids: torch.Tensor  # (B, P + R)
    attention_mask: torch.Tensor  # (B, P + R)
    prompt_length: int  # P
    response_mask: torch.Tensor  # (B, R), float
    completions: list[str]

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_length :]


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompt_texts: list[str],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    max_prompt_length: int | None = None,
) -> Rollout:
    """Sample one completion per prompt; tokens after the first EOS are masked and padded."""
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    enc = tokenizer(
        prompt_texts,
        return_tensors="pt",
        padding=True,
        truncation=max_prompt_length is not None,
        max_length=max_prompt_length,
        add_special_tokens=False,
    ).to(device)
    was_training = model.training
    model.eval()
    output = model.generate(
        **enc,
        do_sample=True,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model.train(was_training)
    prompt_length = enc["input_ids"].shape[1]
    response = output[:, prompt_length:]
    is_eos = response == tokenizer.eos_token_id
    # Keep tokens up to and including the first EOS.
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    response_mask = (~after_eos).float()
    response = response.masked_fill(after_eos, tokenizer.pad_token_id)
    input_ids = torch.cat([enc["input_ids"], response], dim=1)
    attention_mask = torch.cat([enc["attention_mask"], response_mask.long()], dim=1)
    completions = tokenizer.batch_decode(response, skip_special_tokens=True)
    return Rollout(input_ids, attention_mask, prompt_length, response_mask, completions)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that ignore left padding, matching what ``generate`` used."""
    return (attention_mask.cumsum(dim=1) - 1).clamp(min=0)


def response_logits(model, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
    """Logits predicting each completion token: (B, R, V), scaled by the sampling temperature."""
    logits = model(
        input_ids=rollout.input_ids,
        attention_mask=rollout.attention_mask,
        position_ids=position_ids(rollout.attention_mask),
    ).logits
    return logits[:, rollout.prompt_length - 1 : -1].float() / temperature


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) for every position: (B, R)."""
    return torch.gather(F.log_softmax(logits, dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each next-token distribution: (B, R)."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def rollout_from_ids(
    tokenizer, prompt_ids: list[list[int]], completion_ids: list[list[int]], device
) -> Rollout:
    """A :class:`Rollout` from token ids sampled elsewhere (vLLM): prompts left-padded,
    completions cut after their first EOS and right-padded, as :func:`sample` lays them out."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    cut = [ids[: ids.index(eos) + 1] if eos in ids else list(ids) for ids in completion_ids]
    width_p = max(len(ids) for ids in prompt_ids)
    width_r = max(1, max(len(ids) for ids in cut))
    prompts = torch.tensor([[pad] * (width_p - len(ids)) + list(ids) for ids in prompt_ids])
    prompt_mask = torch.tensor([[0] * (width_p - len(ids)) + [1] * len(ids) for ids in prompt_ids])
    response = torch.tensor([ids + [pad] * (width_r - len(ids)) for ids in cut])
    response_mask = torch.tensor([[1.0] * len(ids) + [0.0] * (width_r - len(ids)) for ids in cut])
    return Rollout(
        input_ids=torch.cat([prompts, response], dim=1).to(device),
        attention_mask=torch.cat([prompt_mask, response_mask.long()], dim=1).to(device),
        prompt_length=width_p,
        response_mask=response_mask.to(device),
        completions=tokenizer.batch_decode(cut, skip_special_tokens=True),
    )


class VLLMSampler:
    """Samples PPO rollouts with a vLLM engine colocated on the training GPU (GPU only).

    Follows TRL's GRPO colocate mode: the engine sleeps (level 2: weights and KV cache
    released) between rollouts; before each rollout it wakes, loads the policy's current
    weights (``load_weights``, so every policy update reaches it), resets its prefix cache
    and generates. The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``).
    """

    def __init__(
        self, model_path: str, *, gpu_memory_utilization: float, max_model_len: int, seed: int
    ) -> None:
        import os

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.llm = LLM(
            model=model_path,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_sleep_mode=True,
            seed=seed,
        )
        self.llm.sleep(level=2)

    def sync(self, model) -> None:
        """Load ``model``'s current weights into the engine."""
        self.llm.wake_up(tags=["weights"])
        weights = [(name, param.data) for name, param in model.named_parameters()]
        self.llm.apply_model(lambda engine_model: engine_model.load_weights(weights))
        self.llm.reset_prefix_cache()

    @torch.no_grad()
    def sample(
        self,
        model,
        tokenizer,
        prompt_texts: list[str],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        max_prompt_length: int | None = None,
    ) -> Rollout:
        """As :func:`sample`, generated by vLLM with ``model``'s current weights."""
        from vllm import SamplingParams

        self.sync(model)
        self.llm.wake_up(tags=["kv_cache"])
        prompt_ids = [
            ids[-max_prompt_length:] if max_prompt_length else ids
            for ids in tokenizer(prompt_texts, add_special_tokens=False)["input_ids"]
        ]
        params = SamplingParams(
            n=1, temperature=temperature, top_p=top_p, top_k=top_k or -1, max_tokens=max_new_tokens
        )
        outputs = self.llm.generate(
            [{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False
        )
        self.llm.sleep(level=2)
        completions = [list(output.outputs[0].token_ids) for output in outputs]
        return rollout_from_ids(tokenizer, prompt_ids, completions, next(model.parameters()).device)
