"""Judge backends: questions (chat messages) in, the answer options' probabilities out.

* :class:`HttpJudge` — an OpenAI-compatible ``/chat/completions`` endpoint (vLLM, TGI, Ollama,
  llama.cpp's server, a hosted API). One answer token is asked (``max_tokens=1``, temperature
  0) with ``logprobs`` / ``top_logprobs``; an option's probability is the sum of
  ``exp(logprob)`` over the top tokens that spell it (``" A"``, ``"N"`` for ``NA`` …), 0 when
  absent (the paper's reading). A server that returns no log-probabilities gives the parsed
  answer probability 1. Async (httpx) with a concurrency cap; 429 / 5xx / connection errors are
  retried with exponential backoff (``Retry-After`` honoured), optionally paced to a number of
  requests per second (a hosted API's rate limit); :meth:`HttpJudge.probe` sends
  one question first and turns a wrong URL, model or key into one clear message.
* :class:`ModelJudge` — a registered causal LM on the worker (transformers): one forward pass
  per question, the next-token probabilities of the options' first tokens read directly.
* :class:`VllmJudge` — the same model through vLLM, chosen by :func:`local_judge` on a worker
  that sees a GPU and can import ``vllm`` (``JUDGE_VLLM=0`` opts out): the options' first
  tokens read from the top ``logprobs`` (20) of one greedy token, 0 when outside them.

No Django here: the runner (``training.judges.runner``) feeds and stores.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from common.errors import DomainError
from models_registry import adapters

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_MAX_BACKOFF_S = 30.0


class JudgeEndpointError(DomainError):
    """The judge could not be asked (misconfigured endpoint, retries exhausted, bad reply)."""


@dataclass(frozen=True)
class Answer:
    probs: dict[str, float]  # option → probability
    answer: str  # the text the judge returned (the most likely option for ModelJudge)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0


def option_of(token: str, options: Sequence[str]) -> str | None:
    """The option a generated token spells: equal after stripping, or the unique option it
    begins (``"N"`` → ``"NA"``); None otherwise."""
    t = token.strip()
    if not t:
        return None
    if t in options:
        return t
    begun = [o for o in options if o.startswith(t)]
    return begun[0] if len(begun) == 1 else None


def parse_completion(body: dict, options: Sequence[str]) -> Answer:
    """An ``/chat/completions`` reply → :class:`Answer` (see the module doc)."""
    try:
        choice = body["choices"][0]
        content = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise JudgeEndpointError(f"not a chat completion: {str(body)[:300]}") from None
    usage = body.get("usage") or {}
    probs = dict.fromkeys(options, 0.0)
    tokens = ((choice.get("logprobs") or {}).get("content") or [None])[0]
    top = (tokens or {}).get("top_logprobs") or []
    if top:
        for entry in top:
            option = option_of(str(entry.get("token", "")), options)
            if option is not None:
                probs[option] += math.exp(float(entry["logprob"]))
    else:
        text = content.strip()
        for option in sorted(options, key=len, reverse=True):  # "NA" before "A"
            if text.upper().startswith(option.upper()):
                probs[option] = 1.0
                break
    return Answer(
        probs={k: min(v, 1.0) for k, v in probs.items()},
        answer=content.strip()[:40],
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def parse_text(body: dict) -> Answer:
    """An ``/chat/completions`` reply asked for text (a critique, a revision) → its content."""
    try:
        content = body["choices"][0]["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise JudgeEndpointError(f"not a chat completion: {str(body)[:300]}") from None
    usage = body.get("usage") or {}
    return Answer(
        probs={},
        answer=content.strip(),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def _server_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    return str(message or response.text or response.reason_phrase)[:300]


class HttpJudge:
    """An OpenAI-compatible chat-completions endpoint (see the module doc)."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        options: Sequence[str],
        api_key_env: str = "",
        concurrency: int = 8,
        max_retries: int = 6,
        backoff_s: float = 0.5,
        top_logprobs: int = 5,
        timeout_s: float = 60.0,
        max_requests_per_s: float = 0.0,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.options = list(options)
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.top_logprobs = top_logprobs
        self.timeout_s = timeout_s
        self.interval_s = 1.0 / max_requests_per_s if max_requests_per_s > 0 else 0.0
        self._next_at = 0.0  # when the paced next request may leave (event-loop time)
        self.headers = {"Content-Type": "application/json"}
        self.ssl = httpx.create_ssl_context()  # once: loading the CA bundle costs ~40 ms
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise JudgeEndpointError(
                    f"the API key variable {api_key_env} is not set on this worker"
                )
            self.headers["Authorization"] = f"Bearer {key}"

    def _payload(self, messages: list[dict], max_tokens: int | None) -> dict:
        if max_tokens:  # text (critique, revision), greedy
            return {
                "model": self.model,
                "messages": messages,
                "max_tokens": max_tokens,
                "temperature": 0,
            }
        return {
            "model": self.model,
            "messages": messages,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }

    def _client(self) -> httpx.AsyncClient:
        """One connection per client: each of the ``concurrency`` workers owns one (httpcore's
        pool scans every connection per request, which costs more CPU than the request once
        tens are open)."""
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        return httpx.AsyncClient(
            headers=self.headers, timeout=self.timeout_s, limits=limits, verify=self.ssl
        )

    async def _ask(
        self,
        client: httpx.AsyncClient,
        messages: list[dict],
        probe: bool = False,
        max_tokens: int | None = None,
    ) -> Answer:
        retries = 0
        while True:
            await self._pace()
            try:
                response = await client.post(self.url, json=self._payload(messages, max_tokens))
            except httpx.TransportError as exc:
                if probe:
                    raise JudgeEndpointError(
                        f"probe: cannot reach {self.url} ({type(exc).__name__}: {exc}); "
                        "check the base URL"
                    ) from None
                failure, wait = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code == 200:
                    body = response.json()
                    answer = (
                        parse_text(body) if max_tokens else parse_completion(body, self.options)
                    )
                    return Answer(**{**answer.__dict__, "retries": retries})
                failure = f"HTTP {response.status_code}: {_server_message(response)}"
                if response.status_code != 429 and response.status_code < 500:
                    raise JudgeEndpointError(
                        f"{'probe: ' if probe else ''}{self.url} answered {failure} — "
                        + _hint(response.status_code, self.model)
                    )
                wait = _retry_after(response)
            if retries >= self.max_retries:
                raise JudgeEndpointError(f"{self.url}: gave up after {retries} retries: {failure}")
            delay = wait if wait is not None else self.backoff_s * 2**retries
            await asyncio.sleep(min(delay, _MAX_BACKOFF_S))
            retries += 1

    async def _pace(self) -> None:
        """At most ``max_requests_per_s`` requests leave per second (retries included)."""
        if not self.interval_s:
            return
        now = asyncio.get_running_loop().time()
        at = max(now, self._next_at)
        self._next_at = at + self.interval_s
        if at > now:
            await asyncio.sleep(at - now)

    async def _ask_all(
        self,
        questions: Sequence[list[dict]],
        answers: list[Answer | None],
        max_tokens: int | None,
    ) -> list[Answer]:
        todo = iter(range(len(questions)))

        async def worker() -> None:
            async with self._client() as client:
                for index in todo:  # shared: each index is taken by one worker
                    answers[index] = await self._ask(
                        client, questions[index], max_tokens=max_tokens
                    )

        workers = [asyncio.ensure_future(worker()) for _ in range(self.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
        return answers  # type: ignore[return-value]

    def ask(
        self,
        questions: Sequence[list[dict]],
        into: list[Answer | None] | None = None,
        max_tokens: int | None = None,
    ) -> list[Answer]:
        """Answers in the order of ``questions`` (at most ``concurrency`` in flight). ``into``
        (``[None] * len(questions)``) receives each answer as it comes, so that a caller can
        keep what was answered before a failure. ``max_tokens``: ask for text of up to that
        many tokens (the answer is the text; no probabilities)."""
        into = [None] * len(questions) if into is None else into
        self._next_at = 0.0  # a new event loop, a new clock
        return asyncio.run(self._ask_all(questions, into, max_tokens))

    def write(self, conversations: Sequence[list[dict]], max_tokens: int) -> list[Answer]:
        """Greedy text replies (critiques, revisions), in order."""
        return self.ask(conversations, max_tokens=max_tokens)

    def probe(self, messages: list[dict], max_tokens: int | None = None) -> Answer:
        """One question first: an unreachable URL, or any refusal but 429 / 5xx (retried),
        fails here at once with what the server said."""

        async def once() -> Answer:
            async with self._client() as client:
                return await self._ask(client, messages, probe=True, max_tokens=max_tokens)

        return asyncio.run(once())


def _hint(status: int, model: str) -> str:
    if status in (401, 403):
        return "check the API key variable"
    if status == 404:
        return f"check the base URL (it usually ends in /v1) and the model name {model!r}"
    return f"check the model name {model!r} and the server's options"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def option_token_ids(tokenizer, options: Sequence[str]) -> list[int]:
    """The first token of each option (they must differ): what a local judge reads."""
    if not options:
        return []
    ids = [tokenizer(o, add_special_tokens=False)["input_ids"][:1] for o in options]
    out = [i[0] if i else None for i in ids]
    if None in out or len(set(out)) != len(out):
        raise JudgeEndpointError(f"the options {list(options)} do not begin with distinct tokens")
    return out  # type: ignore[return-value]


def local_judge(model_dir: str, options: Sequence[str], *, batch_size: int = 8):
    """A registered model's judge: vLLM when it is importable and a GPU is visible (and
    ``JUDGE_VLLM`` is not ``0``), else transformers (:class:`ModelJudge`)."""
    if os.environ.get("JUDGE_VLLM", "1") != "0" and importlib.util.find_spec("vllm"):
        import torch

        if torch.cuda.is_available():
            return VllmJudge(model_dir, options)
    return ModelJudge(model_dir, options, batch_size=batch_size)


class ModelJudge:
    """A causal LM read directly: next-token probabilities of the options' first tokens."""

    def __init__(
        self,
        model_dir: str,
        options: Sequence[str],
        *,
        batch_size: int = 8,
        device: str | None = None,
    ):
        from training.trainers.common import (
            default_device,
            load_causal_lm,
            load_tokenizer,
            max_positions,
        )

        self.options = list(options)
        self.tokenizer = load_tokenizer(model_dir)
        self.device = device or default_device()
        self.model = load_causal_lm(model_dir).to(self.device).eval()
        self.limit = max_positions(self.model.config) or 4096
        self.batch_size = batch_size
        self.option_ids = option_token_ids(self.tokenizer, self.options)

    def encode(self, messages: list[dict]) -> list[int]:
        """The prompt's token ids, cut from the left to fit the model (the question is last)."""
        from training.trainers.common import render_prompt

        text = render_prompt(self.tokenizer, messages)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-self.limit :]

    def ask(
        self, questions: Sequence[list[dict]], into: list[Answer | None] | None = None
    ) -> list[Answer]:
        """Answers in the order of ``questions``, batch by batch (``into`` as for HttpJudge)."""
        import torch

        encoded = [self.encode(m) for m in questions]
        pad = self.tokenizer.pad_token_id or 0
        out: list[Answer] = []
        with torch.inference_mode():
            for start in range(0, len(encoded), self.batch_size):
                batch = encoded[start : start + self.batch_size]
                width = max(len(ids) for ids in batch)  # left padding: the last token is last
                ids = torch.tensor([[pad] * (width - len(i)) + i for i in batch])
                mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in batch])
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = (
                    self.model(
                        input_ids=ids.to(self.device),
                        attention_mask=mask.to(self.device),
                        position_ids=positions.to(self.device),
                    )
                    .logits[:, -1]
                    .float()
                )
                probs = torch.softmax(logits, dim=-1)[:, self.option_ids].cpu().tolist()
                for row, seq in zip(probs, batch, strict=True):
                    best = max(range(len(row)), key=row.__getitem__)
                    answer = Answer(
                        probs=dict(zip(self.options, row, strict=True)),
                        answer=self.options[best],
                        prompt_tokens=len(seq),
                    )
                    if into is not None:
                        into[len(out)] = answer
                    out.append(answer)
        return out

    def write(self, conversations: Sequence[list[dict]], max_tokens: int) -> list[Answer]:
        """Greedy text replies (critiques, revisions), batch by batch, in order."""
        import torch

        encoded = [self.encode(m) for m in conversations]
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        out: list[Answer] = []
        with torch.inference_mode():
            for start in range(0, len(encoded), self.batch_size):
                batch = encoded[start : start + self.batch_size]
                width = max(len(ids) for ids in batch)
                ids = torch.tensor([[pad or 0] * (width - len(i)) + i for i in batch])
                mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in batch])
                generated = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    max_new_tokens=max_tokens,
                    do_sample=False,
                    pad_token_id=pad,
                )[:, width:].cpu()
                for row, seq in zip(generated.tolist(), batch, strict=True):
                    if pad is not None and pad in row:  # stopped early: the rest is padding
                        row = row[: row.index(pad)]
                    text = self.tokenizer.decode(row, skip_special_tokens=True)
                    out.append(
                        Answer(
                            probs={},
                            answer=text.strip(),
                            prompt_tokens=len(seq),
                            completion_tokens=len(row),
                        )
                    )
        return out


class VllmJudge:
    """A registered causal LM served in-process by vLLM on a GPU worker (see the module doc).
    Same prompts as :class:`ModelJudge` (its chat rendering, cut from the left); not exercised
    by the test suite, which has no GPU."""

    TOP_LOGPROBS = 20  # vLLM's default ceiling on returned log-probabilities

    def __init__(self, model_dir: str, options: Sequence[str]):
        from vllm import LLM

        from training.trainers.common import load_tokenizer

        self.options = list(options)
        self.tokenizer = load_tokenizer(model_dir)
        with adapters.full_weights(model_dir) as weights:  # an adapter is loaded merged
            self.llm = LLM(model=weights, max_logprobs=self.TOP_LOGPROBS)
        self.limit = self.llm.llm_engine.model_config.max_model_len
        self.option_ids = option_token_ids(self.tokenizer, self.options)

    def encode(self, messages: list[dict], room: int = 1) -> list[int]:
        from training.trainers.common import render_prompt

        text = render_prompt(self.tokenizer, messages)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-(self.limit - room) :]

    def _run(self, conversations: Sequence[list[dict]], params, room: int):
        prompts = [{"prompt_token_ids": self.encode(m, room)} for m in conversations]
        return self.llm.generate(prompts, params, use_tqdm=False)

    def ask(
        self, questions: Sequence[list[dict]], into: list[Answer | None] | None = None
    ) -> list[Answer]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0, logprobs=self.TOP_LOGPROBS)
        out = []
        for index, result in enumerate(self._run(questions, params, 1)):
            top = result.outputs[0].logprobs[0]  # token id → Logprob
            probs = {
                o: math.exp(top[i].logprob) if i in top else 0.0
                for o, i in zip(self.options, self.option_ids, strict=True)
            }
            answer = Answer(
                probs=probs,
                answer=max(probs, key=probs.__getitem__),
                prompt_tokens=len(result.prompt_token_ids),
            )
            if into is not None:
                into[index] = answer
            out.append(answer)
        return out

    def write(self, conversations: Sequence[list[dict]], max_tokens: int) -> list[Answer]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=max_tokens, temperature=0)
        return [
            Answer(
                probs={},
                answer=r.outputs[0].text.strip(),
                prompt_tokens=len(r.prompt_token_ids),
                completion_tokens=len(r.outputs[0].token_ids),
            )
            for r in self._run(conversations, params, max_tokens)
        ]
