"""``builtin:tiny``: a tiny GPT-2 and byte-level BPE tokenizer built in-process, no downloads.

Used for demos and tests. Everything is deterministic given the seed and the texts, and is
saved to a directory so later steps load it by path like any other model (a model built from
a config has ``_name_or_path=''``, which TRL cannot reload as a reference).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

TINY_SPEC = "builtin:tiny"
SPECIAL_TOKENS = ["<pad>", "<eos>", "<unk>", "<bos>"]

# Assistant turns are wrapped in {% generation %} so SFT can train on assistant tokens only.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

_WORDS = [
    "the", "a", "model", "answer", "question", "help", "safe", "honest", "kind", "clear",
    "short", "long", "please", "thank", "you", "because", "never", "always", "explain", "why",
    "how", "what", "when", "user", "assistant", "system", "principle", "rule", "good", "bad",
    "better", "worse", "yes", "no", "maybe", "json", "list", "item", "value", "true", "false",
    "number", "one", "two", "three",
]  # fmt: skip


def synthetic_corpus(seed: int = 0, lines: int = 200) -> list[str]:
    """Random sentences over a small vocabulary plus chat markers, so the BPE has enough merges."""
    rng = random.Random(seed)
    corpus = []
    for _ in range(lines):
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14)))
        corpus.append(f"<|user|>\n{sentence}?\n<|assistant|>\n{sentence.capitalize()}.")
    corpus.append('{"key": "value", "items": [1, 2, 3], "ok": true}')
    return corpus


def build_tiny_tokenizer(texts: Iterable[str] = (), *, seed: int = 0, vocab_size: int = 512):
    """Train a byte-level BPE on ``texts`` plus the synthetic corpus; return a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([*texts, *synthetic_corpus(seed)], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        bos_token="<bos>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _gpt2_config(tokenizer, **extra):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def build_tiny_causal_lm(tokenizer, *, seed: int = 0):
    """A ~0.15 M-parameter GPT-2 causal LM sized to ``tokenizer``."""
    import torch
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(_gpt2_config(tokenizer))


def build_tiny_reward_model(tokenizer, *, seed: int = 0):
    """The same GPT-2 with a scalar head (``num_labels=1``), for reward and value models."""
    import torch
    from transformers import GPT2ForSequenceClassification

    torch.manual_seed(seed)
    return GPT2ForSequenceClassification(_gpt2_config(tokenizer, num_labels=1))


def save_tiny(
    directory: str | Path,
    *,
    texts: Iterable[str] = (),
    seed: int = 0,
    head: Literal["causal_lm", "reward"] = "causal_lm",
) -> Path:
    """Build the tiny tokenizer and model and save both to ``directory``; return the path."""
    directory = Path(directory)
    tokenizer = build_tiny_tokenizer(texts, seed=seed)
    build = build_tiny_causal_lm if head == "causal_lm" else build_tiny_reward_model
    model = build(tokenizer, seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    model.save_pretrained(directory)
    return directory
