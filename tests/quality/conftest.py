"""Small hand-made projects for the quality tests."""

import pytest

from annotation.datasets import bulk


@pytest.fixture
def labelled_project(project):
    """``project`` (principles harmless/honest/helpful) with six HH-like compare tasks whose
    prompts have external ids "0".."5"; the responses are labelled chosen / rejected, and in
    task "3" the rejected response sits at position 0."""
    from annotation.specs import PromptSpec, ResponseSpec

    specs = []
    for i in range(6):
        chosen = ResponseSpec(f"chosen answer {i} " + "x" * i, "external:test", "chosen")
        rejected = ResponseSpec(f"rejected {i}", "external:test", "rejected")
        specs.append(
            PromptSpec(
                messages=[{"role": "user", "content": f"Question {i}?"}],
                responses=[rejected, chosen] if i == 3 else [chosen, rejected],
                external_id=str(i),
                kind="compare",
            )
        )
    bulk.create_tasks(project=project, specs=specs)
    return project


def pair_of(project, row_id: int) -> tuple[int, int, int]:
    """(task id, chosen response id, rejected response id) of the prompt ``row_id``."""
    from annotation.models import TaskResponse

    rows = TaskResponse.objects.filter(
        task__project=project, task__prompt__external_id=str(row_id)
    ).values_list("task_id", "response_id", "source_label")
    labels = {label: (task, rid) for task, rid, label in rows}
    return labels["chosen"][0], labels["chosen"][1], labels["rejected"][1]


@pytest.fixture
def write_csv(tmp_path):
    def write(name: str, text: str):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
