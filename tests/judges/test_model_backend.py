"""The same judge job through the registered-model backend: a tiny GPT-2 (built in-process, no
download) registered as a model version, read for the next-token probabilities of A, B and NA."""

import pytest

from annotation.models import PrincipleVerdict
from common.errors import DomainError
from models_registry import services as registry
from training.judges import runner, services
from training.judges.backends import ModelJudge
from training.models import JudgeAnswer
from training.tiny import save_tiny


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-judge"))


def test_registered_model_job_reads_next_token_probabilities(pairs, project, tiny_dir):
    version = registry.register_model_version(
        name="tiny-judge", kind="sft", artifact_uri=str(tiny_dir), sha256="0" * 64, size_bytes=1
    )
    job = services.launch_job(
        project=project,
        backend="model",
        model_version=version,
        config={"batch_size": 5},
        enqueue=False,
    )
    runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.requests == job.total_items == 6 * 3 * 2 and job.prompt_tokens > 0
    verdicts = PrincipleVerdict.objects.filter(judgment__annotator=job.annotator)
    assert verdicts.count() == 18
    for v in verdicts:
        assert (v.scores["backend"], v.scores["model"]) == ("model", "tiny-judge@1")
        for probs in v.scores["orders"]:
            assert set(probs) == {"A", "B", "NA"}
            assert all(0 < p < 1 for p in probs.values()) and sum(probs.values()) < 1

    # no GPU here: the transformers path, not vLLM
    assert isinstance(runner.open_backend(job), ModelJudge)

    # batched with left padding = one question at a time
    answers = list(JudgeAnswer.objects.filter(job=job).order_by("id"))
    pairs_of = services.compare_pairs(job)
    questions = [runner.Question(a.task_id, a.principle_id, a.order) for a in answers]
    one_by_one = ModelJudge(str(tiny_dir), ["A", "B", "NA"], batch_size=1).ask(
        runner.Renderer(job, pairs_of)(questions)
    )
    for stored, single in zip(answers, one_by_one, strict=True):
        assert stored.probs == pytest.approx(single.probs, rel=1e-4)
        assert stored.prompt_tokens == single.prompt_tokens


def test_a_reward_model_cannot_judge(project, tiny_dir):
    version = registry.register_model_version(
        name="tiny-rm", kind="reward", artifact_uri=str(tiny_dir), sha256="0" * 64, size_bytes=1
    )
    with pytest.raises(DomainError, match="reward model has no next-token"):
        services.launch_job(project=project, backend="model", model_version=version)
