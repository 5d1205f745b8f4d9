"""Policies trained to a precedence of principles: resolving the principle reward models and
their weights (declared, explicit, revealed), the launch, and the profile against the target."""

from __future__ import annotations

import pytest

from annotation.datasets import snapshots
from annotation.quality import reports
from models_registry import services as registry_services
from models_registry.profiles import against_target
from tests.registry.conftest import POLICY, annotate, make_project
from training import datasets as training_datasets
from training import precedence, services
from training.models import RunGroup, TrainingRun
from training.validation import LaunchRejected

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(pq_set, make_user, registry_artifacts):
    """p (root) is declared above q (user). alice sides with q in every conflict, bob with p;
    a run group holds a trained reward model per principle."""
    project = make_project(pq_set, "prec", train=6, probe=0, overlap=2)
    alice, bob = make_user("alice"), make_user("bob")
    annotate(project, alice, side="q", only="train")
    annotate(project, bob, side="p", only="train")
    group = RunGroup.objects.create(name="pq", project=project, status="launched", request={})
    versions = {}
    for snapshot in snapshots.create_principle_snapshots(project=project, run="inline"):
        key = snapshot.filters["principle"]
        artifact = registry_artifacts / "prec" / key
        artifact.mkdir(parents=True, exist_ok=True)
        (artifact / "config.json").write_text("{}")
        versions[key] = registry_services.register_model_version(
            name=f"rm-{key}", kind="reward", artifact_uri=str(artifact), sha256="b" * 64,
            size_bytes=2, dataset_snapshot=snapshot,
        )  # fmt: skip
        TrainingRun.objects.create(
            kind="reward", status="succeeded", snapshot=snapshot, group=group,
            output_model_version=versions[key],
        )  # fmt: skip
    preference = snapshots.create_snapshot(project=project, kind="preference", run="inline")
    return {"project": project, "group": group, "versions": versions, "snapshot": preference}


def test_declared_explicit_and_revealed_weights(world):
    group = world["group"].pk
    declared = precedence.resolve({"reward_group": group})
    assert declared.ranking == [["p"], ["q"]]
    assert declared.weights == pytest.approx({"p": 2 / 3, "q": 1 / 3})
    assert declared.origin == {"kind": "declared", "principle_set": "pq-principles@1"}
    assert declared.versions == world["versions"]

    explicit = precedence.resolve(
        {"reward_models": {"p": "rm-p@1", "q": world["versions"]["q"].pk},
         "weights_from": "explicit", "weights": {"p": 1, "q": 3}}
    )  # fmt: skip
    assert explicit.weights == {"p": 0.25, "q": 0.75} and explicit.ranking == [["q"], ["p"]]

    alice = precedence.resolve(
        {"reward_group": group, "weights_from": "revealed", "annotators": ["alice"]}
    )
    bob = precedence.resolve(
        {"reward_group": group, "weights_from": "revealed", "annotators": ["bob"]}
    )
    assert alice.ranking == [["q"], ["p"]] and bob.ranking == [["p"], ["q"]]
    assert alice.origin == {"kind": "revealed", "project": "prec", "annotators": ["alice"]}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({}, "must be an object"),
        ({"reward_group": 1, "reward_models": {}}, "either reward_group or reward_models"),
        ({"reward_group": 99999}, "no run group 99999"),
        ({"reward_group": "{group}", "nonsense": 1}, "unknown precedence keys"),
        ({"reward_group": "{group}", "weights_from": "vibes"}, "weights_from must be one of"),
        ({"reward_group": "{group}", "weights_from": "explicit", "weights": {"p": 1}},
         "one number per principle"),
        ({"reward_group": "{group}", "weights_from": "explicit", "weights": {"p": -1, "q": 1}},
         "must not be negative"),
        ({"reward_group": "{group}", "weights_from": "explicit", "weights": {"p": 0, "q": 0}},
         "must not all be zero"),
        ({"reward_group": "{group}", "weights_from": "revealed", "annotators": ["nobody"]},
         "no principle verdicts on prec from: nobody"),
        ({"reward_models": {"p": "rm-p@1"}}, "two or more"),
        ({"reward_models": {"p": "rm-p@1", "q": "rm-q@9"}}, "no model version"),
    ],
)  # fmt: skip
def test_a_bad_precedence_is_refused_with_its_reason(world, request_, message):
    request_ = {k: (world["group"].pk if v == "{group}" else v) for k, v in request_.items()}
    with pytest.raises(LaunchRejected, match=message) as raised:
        precedence.resolve(request_)
    assert raised.value.field == "precedence"


def test_a_group_run_launches_mixing_its_principle_models(world):
    run = services.launch_run(
        kind="grpo",
        config={**POLICY, "rewards": [{"type": "length", "target": 20, "weight": 0.5}]},
        snapshot=world["snapshot"],
        precedence={"reward_group": world["group"].pk},
    )
    versions = world["versions"]
    assert run.precedence["reward_models"] == {"p": versions["p"].pk, "q": versions["q"].pk}
    assert run.precedence["ranking"] == [["p"], ["q"]]
    rewards = run.config["rewards"]
    assert rewards[0]["type"] == "length"
    assert rewards[1] == {
        "type": "principles", "models": ["p", "q"], "weights": run.precedence["weights"]
    }  # fmt: skip
    data = training_datasets.training_data(run)
    assert data["reward_models"] == {k: v.artifact_uri for k, v in versions.items()}
    ppo = services.launch_run(
        kind="ppo", config=POLICY, snapshot=world["snapshot"],
        precedence={"reward_group": world["group"].pk, "weights_from": "explicit",
                    "weights": {"p": 1, "q": 1}},
    )  # fmt: skip
    assert ppo.reward_model_version is None and ppo.precedence["ranking"] == [["p", "q"]]
    assert ppo.config["rewards"][-1]["weights"] == {"p": 0.5, "q": 0.5}
    with pytest.raises(LaunchRejected, match="for GRPO and PPO runs"):
        services.launch_run(
            kind="dpo", snapshot=world["snapshot"], precedence={"reward_group": world["group"].pk}
        )


def test_the_profile_says_whether_the_model_follows_its_target():
    mine = {
        "weights": {"p": 0.4, "q": 1.2, "r": -0.3},
        "supremacy": [
            {"winner": "q", "loser": "p", "ps": 0.8, "n": 5},
            {"winner": "p", "loser": "q", "ps": 0.2, "n": 5},
            {"winner": "p", "loser": "r", "ps": 0.9, "n": 4},
            {"winner": "r", "loser": "p", "ps": 0.1, "n": 4},
        ],
    }
    target = {"ranking": [["p"], ["q", "r"]], "origin": {"kind": "declared"}}
    result = against_target(target, mine)
    assert result["target"] == {"ranking": [["p"], ["q", "r"]], "origin": {"kind": "declared"}}
    assert [(r["higher"], r["lower"], r["follows"]) for r in result["follows_target"]] == [
        ("p", "q", False), ("p", "r", True),
    ]  # fmt: skip
    assert result["follows_target"][0]["ps"] == 0.2
    assert 0 < result["dd_target"] < 1
    assert against_target({}, mine) == {}


def test_compare_shows_two_policies_with_the_weights_that_made_them(world, client, make_user):
    made = []
    for name, ranking, weights, dd in (
        ("pol-a", [["p"], ["q"]], {"p": 2 / 3, "q": 1 / 3}, 0.0),
        ("pol-b", [["q"], ["p"]], {"p": 1 / 3, "q": 2 / 3}, 1.0),
    ):
        profile = {
            "status": "ready",
            "dd_target": dd,
            "follows_target": [
                {"higher": ranking[0][0], "lower": ranking[1][0], "ps": 0.7, "n": 6,
                 "follows": True}
            ],
        }  # fmt: skip
        made.append(
            registry_services.register_model_version(
                name=name,
                kind="grpo",
                artifact_uri="",
                sha256="",
                size_bytes=0,
                precedence={"ranking": ranking, "weights": weights, "origin": {"kind": "x"}},
                model_discretion_profile=profile,
            )
        )
    client.force_login(make_user("boss", role="manager"))
    page = client.get("/registry/compare/", {"a": made[0].pk, "b": made[1].pk}).content.decode()
    assert 'data-testid="compare-precedence"' in page
    assert "p &gt; q" in page and "q &gt; p" in page and "p 0.667 · q 0.333" in page
    api = client.get(
        "/api/v1/registry/model-versions/compare", {"a": "pol-a@1", "b": "pol-b@1"}
    ).json()
    assert [side["dd_target"] for side in api["precedence"]] == [0.0, 1.0]


def test_launch_links_prefill_the_precedence(world, client, admin_user):
    client.force_login(admin_user)
    group = world["group"]
    page = client.get(f"/training/groups/{group.pk}/").content.decode()
    assert f'href="/training/launch/grpo/?precedence_group={group.pk}"' in page
    prefill = {"precedence_group": group.pk, "weights_from": "revealed"}
    form = client.get(
        "/training/launch/grpo/", {**prefill, "precedence_annotators": "alice"}
    ).content.decode()
    assert f'<option value="{group.pk}" selected>' in form
    assert '<option value="revealed" selected>' in form and 'value="alice"' in form
    url = f"/quality/{world['project'].slug}/discretion/"
    client.get(url)  # asks for the report
    reports.refresh_due_reports(world["project"].pk)
    discretion = client.get(url).content.decode()
    assert 'data-testid="train-to-precedence"' in discretion
    assert "/training/launch/grpo/?weights_from=revealed&amp;precedence_annotators=" in discretion
