"""Registry services and selectors on the database, without workers: registration records
contributions and the data's discretion, a model becomes an annotator with its own profile,
lineage / model card / comparison, stages with their audit log, search, artifact download."""

from __future__ import annotations

import io
import tarfile

import pytest

from annotation.models import AnnotatorProfile, Judgment
from annotation.principles import services as principle_services
from annotation.quality.payloads import discretion_payload
from annotation.specs import PrincipleSpec
from common.errors import DomainError
from models_registry import profiles, selectors, services
from models_registry.cards import render_model_card
from models_registry.models import ModelVersion, StageChange

pytestmark = pytest.mark.django_db


def test_registration_records_contributions_and_data_discretion(trained_world):
    version, snapshot = trained_world["version"], trained_world["snapshot"]
    contributions = version.annotator_contributions
    assert len(contributions) == 2
    assert {c["judgments"] for c in contributions.values()} == {8}
    assert sum(c["share"] for c in contributions.values()) == pytest.approx(1.0)
    assert all(name.startswith("a-") for name in contributions)  # pseudonyms, never usernames
    assert set(contributions) == set(snapshot.per_annotator_counts)

    data = version.data_discretion_profile
    assert data["status"] == "ready" and data["pairs"] == 8
    assert data["categories"] == {"consensus": 0, "conflict": 8, "indifference": 0}
    people = {k: v for k, v in data["annotators"].items() if v["kind"] == "human"}
    assert set(people) == set(contributions)  # the prober is not in this snapshot
    for profile in people.values():
        assert profile["priority"] == [["p"], ["q"]]
        assert profile["supremacy"][0] == {"winner": "p", "loser": "q", "ps": 1.0, "n": 8}
        assert profile["dd_declared"] == 0.0  # p (root) is declared above q (user)
    assert data["annotators"][profiles.POOLED]["priority"] == [["p"], ["q"]]

    user = version.annotator
    assert user.profile.kind == AnnotatorProfile.Kind.MODEL
    assert user.username == "model:unit-rm@1"
    assert "# Model card: unit-rm@1" in version.model_card


def test_model_profile_from_scores_makes_the_model_an_annotator(trained_world):
    version, project = trained_world["version"], trained_world["project"]
    probe = profiles.probe_for(version)
    assert probe.held_out and len(probe.items) == 4  # the prober's tasks, not the snapshot's
    # a "model" that always prefers the q-response: it reverses the annotators' priority
    q_first = ["do" in item.first_text.lower() for item in probe.items]
    first = [1.0 if q else -1.0 for q in q_first]
    profile = profiles.record_model_profile(
        version=version,
        probe=probe,
        method="reward-model",
        first_scores=first,
        second_scores=[0.0] * 4,
    )
    assert profile["status"] == "ready" and profile["method"] == "reward-model"
    assert profile["priority"] == [["q"], ["p"]]
    assert profiles.supremacy_of(profile, "q", "p") == (1.0, 4)
    assert profile["dd_declared"] == 1.0
    assert profile["probe"]["held_out"] is True

    judgments = Judgment.objects.filter(annotator=version.annotator)
    assert judgments.count() == 4
    assert set(judgments.values_list("origin", flat=True)) == {"model:unit-rm@1"}
    # the model now appears in the project's discretion report like any annotator
    report = discretion_payload(project)
    assert report["annotators"]["model:unit-rm@1"]["priority"] == [["q"], ["p"]]
    assert report["meta"]["kinds"]["model:unit-rm@1"] == "model"

    # profiling again replaces its judgments instead of duplicating them
    profiles.record_model_profile(
        version=version,
        probe=probe,
        method="reward-model",
        first_scores=[0.0] * 4,
        second_scores=[0.0] * 4,
    )
    assert Judgment.objects.filter(annotator=version.annotator).count() == 4
    version.refresh_from_db()
    abstained = version.model_discretion_profile  # equal scores everywhere: no preference
    assert abstained["priority"] == [] and abstained["da"] is None
    assert abstained["scores"]["abstains"] == 4


def test_lineage_card_and_compare(trained_world, pq_set):
    version, snapshot = trained_world["version"], trained_world["snapshot"]
    fork = principle_services.fork_principle_set(principle_set=pq_set)
    principle_services.update_principle(principle=fork.principles.get(key="q"), title="Be direct")
    principle_services.add_principle(
        principle_set=fork,
        spec=PrincipleSpec(key="r", title="Be kind", authority="guideline"),
    )
    principle_services.publish_principle_set(principle_set=fork)
    policy = services.register_model_version(
        name="unit-policy",
        kind="ppo",
        artifact_uri="",
        sha256="",
        size_bytes=0,
        parents={"reward": version},
        principle_set=fork,
    )
    record = selectors.lineage(policy)
    assert record["parents"] == [{"role": "reward", "id": version.pk, "label": "unit-rm@1"}]
    assert [n["label"] for n in record["chain"]] == ["unit-policy@1", "unit-rm@1"]
    assert [s["id"] for s in record["snapshots"]] == [snapshot.pk]
    assert record["snapshots"][0]["sha256"] == snapshot.sha256
    sets = {ps["label"]: ps for ps in record["principle_sets"]}
    assert set(sets) == {"pq-principles@1", "pq-principles@2"}
    diff = sets["pq-principles@2"]["diff"]
    assert diff["added"] == ["r"] and diff["removed"] == []
    assert diff["changed"] == [{"key": "q", "fields": {"title": ["Answer directly", "Be direct"]}}]
    assert sets["pq-principles@1"]["diff"] is None
    assert sum(a["total"] for a in record["annotators"].values()) == 16

    card = render_model_card(policy)
    for text in ("unit-rm@1", "pq-principles@2", "added r", f"| {snapshot.pk} | preference"):
        assert text in card, text

    result = selectors.compare(version, policy)
    assert result["principle_set_diff"]["added"] == ["r"]
    assert result["data_discretion"]["priority"][0] == [["p"], ["q"]]


def test_stages_are_audited_and_exclusive_on_request(trained_world, roles):
    version = trained_world["version"]
    second = services.register_model_version(
        name="unit-rm", kind="reward", artifact_uri="", sha256="", size_bytes=0
    )
    services.set_stage(version, "production", roles["admin"], "first release")
    services.set_stage(second, "production", roles["manager"], "better", archive_existing=True)
    version.refresh_from_db()
    assert version.stage == "archived" and second.stage == "production"
    log = list(StageChange.objects.order_by("id").values_list("from_stage", "to_stage", "note"))
    assert log == [
        ("none", "production", "first release"),
        ("production", "archived", "archived: version 2 moved to production"),
        ("none", "production", "better"),
    ]
    assert selectors.stage_history(second)[0]["changed_by"] == "reg-manager"
    assert selectors.get_version(name="unit-rm", version="production") == second
    with pytest.raises(DomainError):
        services.set_stage(second, "shipped", roles["admin"])
    assert "| production | archived |" in render_model_card(version)


def test_search_filters_like_mlflow(trained_world):
    services.register_model_version(
        name="other-sft", kind="sft", artifact_uri="", sha256="", size_bytes=0
    )
    names = lambda f: [str(v) for v in selectors.search_versions(f)]  # noqa: E731
    assert names("name = 'unit-rm'") == ["unit-rm@1"]
    assert names("name LIKE 'unit%' AND kind = 'reward'") == ["unit-rm@1"]
    assert names("kind IN ('sft', 'dpo')") == ["other-sft@1"]
    assert names("name != 'unit-rm' AND stage = 'none'") == ["other-sft@1"]
    assert names("name ILIKE 'OTHER-%'") == ["other-sft@1"]
    for bad in ("name ~ 'x'", "secret = 1", "name = 'x' OR name = 'y'"):
        with pytest.raises(DomainError):
            list(selectors.search_versions(bad))


def test_artifact_stream_is_a_valid_tar(trained_world):
    from models_registry.artifacts import stream_tar

    version = trained_world["version"]
    root = services.local_artifact(version.artifact_uri)
    data = b"".join(stream_tar(root))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(tar.getnames())
        assert names == ["rm/config.json", "rm/weights.bin"]
        assert tar.extractfile("rm/weights.bin").read() == b"\x00\x01" * 700
    assert services.local_artifact("/etc") is None  # never outside the artifact root
    assert services.local_artifact("s3://bucket/model") is None


def test_register_from_source_hashes_and_validates(trained_world, registry_artifacts):
    version = trained_world["version"]
    registered = services.register_from_source(
        name="unit-rm",
        kind="reward",
        source=version.artifact_uri,
        parents=[("base", version)],
    )
    sha, size = services.artifact_digest(services.local_artifact(version.artifact_uri))
    assert (registered.sha256, registered.size_bytes, registered.version) == (sha, size, 2)
    with pytest.raises(DomainError, match="artifact root"):
        services.register_from_source(name="x", kind="sft", source="/etc")
    with pytest.raises(DomainError, match="is a reward model"):
        services.register_from_source(name="unit-rm", kind="sft", source="hf://org/model")
    remote = services.register_from_source(name="hub-sft", kind="sft", source="hf://org/model")
    assert remote.artifact_uri == "hf://org/model" and remote.sha256 == ""
    assert ModelVersion.objects.count() == 3


def test_generated_candidates_become_compare_or_rank_tasks(trained_world):
    from annotation.models import Prompt, Task
    from models_registry.models import GenerationJob
    from training.generation import _create_tasks

    project = trained_world["project"]
    prompts = [
        Prompt.objects.create(project=project, messages=[{"role": "user", "content": f"P{i}?"}])
        for i in range(2)
    ]
    policy = services.register_model_version(
        name="gen-policy", kind="sft", artifact_uri="", sha256="", size_bytes=0
    )
    params = {"samples_per_model": 3, "temperature": 1.0, "top_p": 0.9, "max_new_tokens": 8,
              "seed": 5}  # fmt: skip
    job = GenerationJob.objects.create(project=project, params=params)
    samples = {policy.pk: [["a0", "a1", "a2"], ["b0", "b1", "b2"]]}
    task_ids = _create_tasks(job, prompts, [policy], samples, "transformers")
    tasks = Task.objects.filter(pk__in=task_ids).order_by("id")
    assert [t.kind for t in tasks] == ["rank", "rank"]
    first = tasks[0].task_responses.order_by("position")
    assert sorted(r.response.text for r in first) == ["a0", "a1", "a2"]
    assert {r.response.source for r in first} == {"model:gen-policy@1"}
    assert first[0].response.generation_params["engine"] == "transformers"
    assert project.tasks.count() == 12 + 2


def test_policy_logprob_scorer_matches_a_direct_computation(registry_artifacts):
    import torch

    from training.generation import LogProbScorer
    from training.tiny import save_tiny
    from training.trainers.common import render_prompt

    path = save_tiny(registry_artifacts / "scorer-tiny", seed=3)
    scorer = LogProbScorer(path, batch_size=4)
    prompts = [[{"role": "user", "content": "Is it safe?"}]] * 3
    completions = ["Yes, it is safe.", "No.", "Maybe, explain why the answer is long."]
    batched = scorer(prompts, completions)
    single = [scorer([p], [c])[0] for p, c in zip(prompts, completions, strict=True)]
    assert batched == pytest.approx(single, abs=1e-4)  # padding never changes a score
    tok = scorer.tokenizer
    p_ids = tok(render_prompt(tok, prompts[1]), add_special_tokens=False)["input_ids"]
    c_ids = tok(completions[1], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p_ids + c_ids])
    with torch.no_grad():
        logp = torch.log_softmax(scorer.model(input_ids=ids).logits[0, :-1], dim=-1)
    direct = sum(logp[len(p_ids) - 1 + i, t].item() for i, t in enumerate(c_ids))
    assert batched[1] == pytest.approx(direct, abs=1e-4)
    assert all(score < 0 for score in batched)
