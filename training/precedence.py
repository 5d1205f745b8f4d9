"""Policies trained to a precedence of principles: which principle reward models, mixed how.

A GRPO or PPO launch may carry a ``precedence`` request::

    {"reward_group": 7}                      # the reward models of a "reward per principle" group
    {"reward_models": {"p": "rm-p@1", …}}    # or named versions, by principle key
    "weights_from": "declared" | "explicit" | "revealed"
    "weights": {"p": 0.7, "q": 0.3}          # explicit only
    "annotators": ["alice", …]               # revealed only: their plurality's fitted priorities

``resolve`` turns it into a :class:`Precedence`: the versions by key, the ranking (tiers,
highest first), the mixture weights (``rewards.weights_from_ranking``; explicit weights as
given, normalised) and the origin. It is stored on the run and on the model version it makes,
whose discretion profile is then measured against the ranking (``dd_target``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from annotation.models import Project
from annotation.quality import inputs as quality_inputs
from annotation.quality.metrics import discretion as disc
from common.errors import DomainError
from models_registry import profiles
from models_registry.models import ModelVersion
from training.models import RunGroup, TrainingRun
from training.trainers.rewards import ranking_from_weights, weights_from_ranking
from training.validation import LaunchRejected, registered_version

WEIGHTS_FROM = ("declared", "explicit", "revealed")
KEYS = {"reward_group", "reward_models", "weights_from", "weights", "annotators"}
FIELD = "precedence"


@dataclass
class Precedence:
    versions: dict[str, ModelVersion]
    ranking: list[list[str]]
    weights: dict[str, float]
    origin: dict = field(default_factory=dict)

    def record(self) -> dict:
        """What the run and the model version store (JSON)."""
        return {
            "reward_models": {key: v.pk for key, v in self.versions.items()},
            "reward_model_labels": {key: str(v) for key, v in self.versions.items()},
            "ranking": self.ranking,
            "weights": self.weights,
            "origin": self.origin,
        }

    def reward_spec(self) -> dict:
        """The ``principles`` entry of the run config's ``rewards``."""
        return {"type": "principles", "models": list(self.versions), "weights": self.weights}


def with_reward_spec(config: object, resolved: Precedence) -> object:
    """``config`` whose ``rewards`` mix the principle reward models by the resolved weights
    (an existing ``principles`` entry is replaced, keeping its ``weight``; other rewards stay)."""
    if not isinstance(config, dict):
        return config  # the config check says what is wrong with it
    rewards = config.get("rewards")
    rewards = rewards if isinstance(rewards, list) else []
    kept = [r for r in rewards if not (isinstance(r, dict) and r.get("type") == "principles")]
    previous = [r for r in rewards if isinstance(r, dict) and r.get("type") == "principles"]
    spec = resolved.reward_spec()
    if previous and "weight" in previous[0]:
        spec["weight"] = previous[0]["weight"]
    return {**config, "rewards": [*kept, spec]}


def resolve(request: object) -> Precedence:
    """Check a ``precedence`` request and resolve it (``LaunchRejected`` naming the field)."""
    if not isinstance(request, dict) or not request:
        raise LaunchRejected("precedence must be an object", FIELD)
    unknown = sorted(set(request) - KEYS)
    if unknown:
        raise LaunchRejected(f"unknown precedence keys {unknown}", FIELD)
    versions = _versions(request)
    project = _project_of(versions)
    source = request.get("weights_from", "declared")
    if source not in WEIGHTS_FROM:
        raise LaunchRejected(f"weights_from must be one of {', '.join(WEIGHTS_FROM)}", FIELD)
    if source == "explicit":
        weights = _explicit(request.get("weights"), versions)
        ranking, _ = ranking_from_weights(weights)
        return Precedence(versions, ranking, weights, {"kind": "explicit"})
    if source == "declared":
        principles = quality_inputs.principles_of(project)
        levels = disc.declared_weights(quality_inputs.declared_precedence(principles))
        origin = {"kind": "declared", "principle_set": project.principle_set.label}
    else:
        names = request.get("annotators")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise LaunchRejected("revealed weights need 'annotators': a list of usernames", FIELD)
        try:
            levels = profiles.revealed_priorities(project, names)["weights"]
        except DomainError as exc:
            raise LaunchRejected(str(exc), FIELD) from exc
        origin = {"kind": "revealed", "project": project.slug, "annotators": names}
    ranking, undefined = ranking_from_weights({k: levels.get(k) for k in versions})
    if undefined:
        origin["undefined"] = undefined  # ranked below every defined principle
    ranking = [*ranking, undefined] if undefined else ranking
    return Precedence(versions, ranking, weights_from_ranking(ranking), origin)


def _versions(request: dict) -> dict[str, ModelVersion]:
    if ("reward_group" in request) == ("reward_models" in request):
        raise LaunchRejected("give either reward_group or reward_models", FIELD)
    if "reward_group" in request:
        group_id = request["reward_group"]
        if isinstance(group_id, bool) or not isinstance(group_id, int) or group_id < 1:
            raise LaunchRejected("reward_group must be a run group id", FIELD)
        runs = TrainingRun.objects.filter(
            group_id=group_id,
            status=TrainingRun.Status.SUCCEEDED,
            output_model_version__isnull=False,
        ).select_related("snapshot", "output_model_version__registered_model")
        if not RunGroup.objects.filter(pk=group_id).exists():
            raise LaunchRejected(f"no run group {group_id}", FIELD)
        versions = {run.snapshot.filters.get("principle"): run.output_model_version for run in runs}
        versions.pop(None, None)
        if len(versions) < 2:
            raise LaunchRejected(
                f"run group {group_id} has {len(versions)} trained principle reward model(s); "
                "a precedence needs two or more",
                FIELD,
            )
        return dict(sorted(versions.items()))
    named = request["reward_models"]
    if not isinstance(named, dict) or len(named) < 2:
        raise LaunchRejected("reward_models maps two or more principle keys to versions", FIELD)
    versions = {}
    for key, ref in named.items():
        version = (
            ModelVersion.objects.filter(pk=ref).select_related("registered_model").first()
            if isinstance(ref, int) and not isinstance(ref, bool)
            else registered_version(str(ref), FIELD)
        )
        if version is None or version.registered_model.kind != "reward":
            raise LaunchRejected(f"{ref!r:.100} is not a registered reward model", FIELD)
        versions[str(key)] = version
    return versions


def _project_of(versions: dict[str, ModelVersion]) -> Project:
    """The one project whose principles the reward models were trained on."""
    projects = {
        v.dataset_snapshot.project_id
        for v in ModelVersion.objects.filter(pk__in=[v.pk for v in versions.values()])
        .select_related("dataset_snapshot")
        .exclude(dataset_snapshot=None)
    }
    if len(projects) != 1:
        raise LaunchRejected(
            "the principle reward models must come from one project's snapshots", FIELD
        )
    project = Project.objects.select_related("principle_set").get(pk=projects.pop())
    keys = set(project.principle_set.principles.values_list("key", flat=True))
    strangers = sorted(set(versions) - keys)
    if strangers:
        raise LaunchRejected(
            f"not principles of {project.principle_set.label}: {', '.join(strangers)}", FIELD
        )
    return project


def _explicit(weights: object, versions: dict[str, ModelVersion]) -> dict[str, float]:
    if not isinstance(weights, dict) or set(weights) != set(versions):
        raise LaunchRejected(
            f"explicit weights need one number per principle: {', '.join(versions)}", FIELD
        )
    values = {}
    for key, value in weights.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise LaunchRejected(f"weight of {key} must be a number", FIELD)
        if value < 0:
            raise LaunchRejected(f"weight of {key} must not be negative", FIELD)
        values[key] = float(value)
    total = sum(values.values())
    if total <= 0:
        raise LaunchRejected("explicit weights must not all be zero", FIELD)
    return {key: value / total for key, value in values.items()}
