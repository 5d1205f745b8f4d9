"""Reward functions for online RL (GRPO, PPO): reward models, principle mixtures, verifiers.

Everything here is a :data:`~training.trainers.common.Scorer`: ``(prompts, completions) ->
list[float]``, with prompts/completions as text or chat messages. :func:`build_rewards` turns
the ``rewards`` spec of a GRPO/PPO config into named, weighted scorers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training.trainers.common import Scorer, Text, completion_text

Texts = Sequence[Text]


@dataclass
class WeightedScorer:
    name: str
    scorer: Scorer
    weight: float


def weights_from_priority(priorities: Mapping[str, int]) -> dict[str, float]:
    """Weights from declared priorities (1 = highest): proportional to 1/priority, summing to 1."""
    raw = {key: 1.0 / priority for key, priority in priorities.items()}
    total = sum(raw.values())
    return {key: value / total for key, value in raw.items()}


def ranking_from_weights(
    weights: Mapping[str, float | str | None],
) -> tuple[list[list[str]], list[str]]:
    """Tiers of principles, highest precedence first, from priority weights (larger = higher;
    ``"inf"`` / ``"-inf"`` as the discretion metrics write them; equal weights tie), and the
    principles whose weight is undefined (None or NaN)."""
    decoded: dict[str, float] = {}
    undefined = []
    for key, value in weights.items():
        number = float(value) if value is not None else math.nan
        if math.isnan(number):
            undefined.append(key)
        else:
            decoded[key] = number
    levels = sorted(set(decoded.values()), reverse=True)
    return [[k for k, w in decoded.items() if w == level] for level in levels], undefined


def weights_from_ranking(ranking: Sequence[Sequence[str]], undefined: Sequence[str] = ()) -> dict:
    """Mixture weights for tiers of principles (highest first): tier i gets priority i + 1
    (:func:`weights_from_priority`), undefined principles the tier below the last."""
    priorities = {key: tier + 1 for tier, keys in enumerate(ranking) for key in keys}
    priorities.update({key: len(ranking) + 1 for key in undefined})
    return weights_from_priority(priorities)


class PrincipleWeightedScorer:
    """Weighted sum of per-principle scorers, from ``{principle key: (scorer, weight)}``.

    ``standardize``: each scorer's scores are first brought to mean 0 and standard deviation 1
    by the running mean and deviation of every score it gave so far (``RunningScale``), so that
    the weights alone say how much each principle counts: reward models trained apart score on
    unrelated scales, and without this the widest scale decides whatever the weights declare.
    Running, not per batch: once a policy's samples agree, a batch's own spread is noise."""

    def __init__(
        self, scorers: Mapping[str, tuple[Scorer, float]], *, standardize: bool = False
    ) -> None:
        if not scorers:
            raise ValueError("A principle-weighted reward needs at least one principle.")
        self.scorers = dict(scorers)
        self.scales = {key: RunningScale() for key in self.scorers} if standardize else None

    def __call__(self, prompts: Texts, completions: Texts) -> list[float]:
        total = [0.0] * len(completions)
        for key, (scorer, weight) in self.scorers.items():
            scores = list(scorer(prompts, completions))
            if self.scales is not None:
                scores = self.scales[key].standardize(scores)
            for i, value in enumerate(scores):
                total[i] += weight * value
        return total


class RunningScale:
    """Mean and standard deviation of every value seen so far (Welford's update)."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def standardize(self, values: Sequence[float]) -> list[float]:
        """``values`` at the running mean 0 and deviation 1, after counting them in (all 0
        while the values seen do not vary)."""
        for value in values:
            self.count += 1
            delta = value - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (value - self.mean)
        spread = math.sqrt(self.m2 / self.count) if self.count else 0.0
        return [(v - self.mean) / spread if spread > 1e-12 else 0.0 for v in values]


class LengthScorer:
    """1 at ``target`` characters, falling linearly to 0 at 0 or 2 x target characters."""

    def __init__(self, target: int) -> None:
        self.target = target

    def __call__(self, prompts: Texts, completions: Texts) -> list[float]:
        return [
            max(0.0, 1.0 - abs(len(completion_text(c)) - self.target) / self.target)
            for c in completions
        ]


class StringsScorer:
    """Share of checks passed: each required string present, each forbidden string absent."""

    def __init__(self, required: Sequence[str] = (), forbidden: Sequence[str] = ()) -> None:
        self.required, self.forbidden = list(required), list(forbidden)

    def __call__(self, prompts: Texts, completions: Texts) -> list[float]:
        checks = len(self.required) + len(self.forbidden)
        scores = []
        for completion in completions:
            text = completion_text(completion)
            passed = sum(s in text for s in self.required) + sum(
                s not in text for s in self.forbidden
            )
            scores.append(passed / checks)
        return scores


class RegexScorer:
    """1 if the pattern is found in the completion, else 0."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def __call__(self, prompts: Texts, completions: Texts) -> list[float]:
        return [float(bool(self.pattern.search(completion_text(c)))) for c in completions]


def json_scorer(prompts: Texts, completions: Texts) -> list[float]:
    """1 if the completion parses as JSON, else 0."""
    scores = []
    for completion in completions:
        try:
            json.loads(completion_text(completion))
            scores.append(1.0)
        except ValueError:
            scores.append(0.0)
    return scores


def build_rewards(
    specs: list[dict[str, Any]], reward_models: Mapping[str, Scorer]
) -> list[WeightedScorer]:
    """Scorers for a validated ``rewards`` spec; ``reward_models`` maps names to loaded scorers."""
    built = []
    for index, spec in enumerate(specs):
        kind, weight = spec["type"], float(spec.get("weight", 1.0))
        if kind == "reward_model":
            name = spec.get("model") or _only(reward_models)
            built.append(WeightedScorer(f"rm_{name}", _lookup(reward_models, name), weight))
        elif kind == "principles":
            keys = spec.get("models") or sorted(reward_models)
            if "priorities" in spec:
                missing = sorted(set(keys) - set(spec["priorities"]))
                if missing:
                    raise ValueError(f"Principles {missing} have no declared priority.")
                weights = weights_from_priority({k: spec["priorities"][k] for k in keys})
            else:
                given = spec.get("weights") or {}
                weights = {k: float(given.get(k, 1.0 / len(keys))) for k in keys}
            mixture = {k: (_lookup(reward_models, k), weights[k]) for k in keys}
            mixed = PrincipleWeightedScorer(mixture, standardize=True)
            built.append(WeightedScorer("principles", mixed, weight))
        elif kind == "length":
            built.append(WeightedScorer("length", LengthScorer(spec["target"]), weight))
        elif kind == "strings":
            scorer = StringsScorer(spec.get("required", ()), spec.get("forbidden", ()))
            built.append(WeightedScorer("strings", scorer, weight))
        elif kind == "regex":
            built.append(WeightedScorer("regex", RegexScorer(spec["pattern"]), weight))
        else:
            built.append(WeightedScorer("json", json_scorer, weight))
        if any(b.name == built[-1].name for b in built[:-1]):
            built[-1].name = f"{built[-1].name}_{index}"
    return built


def combine(scorers: list[WeightedScorer]) -> Scorer:
    """One scorer: the weighted sum of ``scorers`` (how PPO consumes a multi-reward spec)."""
    return PrincipleWeightedScorer({s.name: (s.scorer, s.weight) for s in scorers})


def needed_reward_models(specs: list[dict[str, Any]], available: Mapping[str, str]) -> list[str]:
    """Names of the reward models a spec uses (so only those are loaded)."""
    names: set[str] = set()
    for spec in specs:
        if spec["type"] == "reward_model":
            names.add(spec.get("model") or _only(available))
        elif spec["type"] == "principles":
            names.update(spec.get("models") or available)
    missing = sorted(names - set(available))
    if missing:
        raise ValueError(f"Reward models {missing} are not in data['reward_models'].")
    return sorted(names)


def _only(reward_models: Mapping[str, Any]) -> str:
    if len(reward_models) != 1:
        raise ValueError(
            "A 'reward_model' reward without 'model' needs exactly one entry in "
            f"data['reward_models'], found {sorted(reward_models)}."
        )
    return next(iter(reward_models))


def _lookup(reward_models: Mapping[str, Scorer], name: str) -> Scorer:
    if name not in reward_models:
        raise ValueError(f"Reward model {name!r} is not in data['reward_models'].")
    return reward_models[name]
