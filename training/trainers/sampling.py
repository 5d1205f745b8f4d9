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
