"""Adapter artifacts (LoRA, saved by ``peft``): recognising one, finding its base, loading it
merged into its base, and writing the merged model for a download.

Pure Python (no Django); torch, transformers and peft load inside the functions. An adapter
directory holds ``adapter_config.json``, the adapter weights, the tokenizer and
``training_run.json``. Its base is the directory ``base/`` inside it when present (a run on
``builtin:tiny`` bundles the base it built, which lives nowhere else), else the config's
``base_model_name_or_path``: a registered version's artifact, a path or a hub id. A base may
itself be an adapter (a LoRA run started from an adapter version): loading recurses, merging
each adapter into the model below it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

ADAPTER_CONFIG = "adapter_config.json"
BUNDLED_BASE = "base"
MAX_DEPTH = 16  # adapters stacked on adapters; deeper is a loop in the configs
Head = Literal["causal_lm", "reward"]


def is_adapter(path: str | Path) -> bool:
    """Whether ``path`` is a directory holding a peft adapter."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_config(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / ADAPTER_CONFIG).read_text())


def adapter_base(path: str | Path) -> str:
    """The model an adapter was trained on: its bundled ``base/``, else the recorded base."""
    bundled = Path(path) / BUNDLED_BASE
    if bundled.is_dir():
        return str(bundled)
    base = adapter_config(path).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"the adapter at {path} names no base model (base_model_name_or_path)")
    return str(base)


def adapter_head(path: str | Path) -> Head:
    """``reward`` for a sequence-classification adapter (a reward model), else ``causal_lm``."""
    return "reward" if adapter_config(path).get("task_type") == "SEQ_CLS" else "causal_lm"


def load_model(path: str | Path, load_plain: Callable[[str], Any], _depth: int = 0) -> Any:
    """The model at ``path``: ``load_plain(path)`` for full weights; for an adapter, its base
    (loaded the same way, recursively) with the adapter merged in. The merged model's
    ``name_or_path`` is ``path``, so an adapter trained on top of it names ``path`` as its base."""
    if not is_adapter(path):
        return load_plain(str(path))
    if _depth >= MAX_DEPTH:
        raise ValueError(f"adapter {path}: more than {MAX_DEPTH} stacked adapters (a loop?)")
    from peft import PeftModel

    base = load_model(adapter_base(path), load_plain, _depth + 1)
    model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    model.name_or_path = str(path)
    model.config._name_or_path = str(path)
    return model


def plain_loader(head: Head) -> Callable[[str], Any]:
    """transformers' loader for full weights of ``head`` (a reward model: one score)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if head == "reward":
        return lambda path: AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, dtype="auto"
        )
    return lambda path: AutoModelForCausalLM.from_pretrained(path, dtype="auto")


def write_merged(path: str | Path, dest: str | Path) -> Path:
    """Save the adapter at ``path`` merged into its base, with its tokenizer and run info, as
    a plain transformers model in ``dest`` (loadable with ``AutoModel*.from_pretrained``)."""
    from transformers import AutoTokenizer

    path, dest = Path(path), Path(dest)
    model = load_model(path, plain_loader(adapter_head(path)))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    info = path / "training_run.json"
    if info.is_file():
        (dest / info.name).write_bytes(info.read_bytes())
    return dest


@contextmanager
def full_weights(path: str | Path) -> Iterator[str]:
    """``path`` itself for full weights; for an adapter, a temporary directory holding it merged
    (for engines that load a directory themselves, e.g. vLLM), removed afterwards."""
    if not is_adapter(path):
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="merged-") as directory:
        yield str(write_merged(path, directory))
