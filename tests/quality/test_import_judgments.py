"""import_judgments: the four formats on a small hand-made project, and every refusal."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from annotation.datasets.importers.judgments import import_judgments
from annotation.errors import ImportFileError
from annotation.models import AnnotatorProfile, Judgment, PrincipleVerdict, Task

from .conftest import pair_of

User = get_user_model()


def _judgment(project, row_id, name):
    task_id, _, _ = pair_of(project, row_id)
    return Judgment.objects.get(task_id=task_id, annotator__username=name)


def _pref(project, row_id, name) -> int:
    """+1 chosen first, −1 rejected first, 0 abstain."""
    _, chosen, rejected = pair_of(project, row_id)
    ordering = _judgment(project, row_id, name).ordering
    if ordering == [[chosen], [rejected]]:
        return 1
    if ordering == [[rejected], [chosen]]:
        return -1
    assert ordering == []
    return 0


def test_principle_oracle(labelled_project, write_csv):
    path = write_csv(
        "oracle.csv",
        # columns in an unusual order, an ignored extra column, and order 1 (A = rejected)
        "principle_id,row_id,prob_NA,prob_B,prob_A,order,cost\n"
        "0,0,0.1,0.2,0.7,0,0.01\n"  # A wins → chosen
        "1,0,0.1,0.7,0.2,0,0.01\n"  # B wins → rejected
        "2,0,0.8,0.1,0.1,0,0.01\n"  # NA wins → n/a
        "0,3,0.2,0.4,0.4,0,0.01\n"  # A == B → n/a
        "1,3,0.0,0.1,0.9,1,0.01\n"  # order 1: A is the rejected response → rejected
        "2,3,0.5,0.0,0.5,0,0.01\n",  # NA == A: NA does not beat A → A (chosen)
    )
    result = import_judgments(
        project=labelled_project, path=path, fmt="principle-oracle", annotator="oracle"
    )
    assert (result.judgments, result.verdicts, result.preferences) == (2, 6, 0)
    user = User.objects.get(username="oracle")
    assert user.profile.kind == AnnotatorProfile.Kind.MODEL
    j0 = _judgment(labelled_project, 0, "oracle")
    assert j0.ordering == [] and j0.origin == "import:principle-oracle"
    _, chosen0, rejected0 = pair_of(labelled_project, 0)
    _, chosen3, rejected3 = pair_of(labelled_project, 3)
    got = {
        (v.judgment.task.prompt.external_id, v.principle.position): (
            v.verdict,
            v.preferred_response_id,
        )
        for v in PrincipleVerdict.objects.select_related("judgment__task__prompt", "principle")
    }
    assert got == {
        ("0", 0): ("prefers", chosen0),
        ("0", 1): ("prefers", rejected0),
        ("0", 2): ("not_applicable", None),
        ("3", 0): ("not_applicable", None),
        ("3", 1): ("prefers", rejected3),
        ("3", 2): ("prefers", chosen3),
    }
    v = PrincipleVerdict.objects.get(judgment=j0, principle__position=0)
    assert v.scores == {"A": 0.7, "B": 0.2, "NA": 0.1, "order": 0}
    # model judgments do not fill the human overlap of a task
    assert Task.objects.filter(project=labelled_project, submitted_count__gt=0).count() == 0


def test_reward_model_orientation_and_ties(labelled_project, write_csv):
    path = write_csv(
        "rm.csv",
        "reward_b,row_id,reward_a\n1.0,0,2.0\n3.0,1,-1.5\n0.5,2,0.5\n-2,3,4\n",
    )
    result = import_judgments(
        project=labelled_project, path=path, fmt="reward-model", annotator="rm"
    )
    assert (result.judgments, result.preferences) == (4, 3)
    assert [_pref(labelled_project, r, "rm") for r in range(4)] == [1, -1, 0, 1]
    assert _judgment(labelled_project, 2, "rm").rationale == "abstain: equal rewards"
    assert _judgment(labelled_project, 0, "rm").origin == "import:reward-model"


def test_llm_judge_needs_both_orders_to_agree(labelled_project, write_csv):
    path = write_csv(
        "judge.csv",
        "prob_A,prob_B,prob_NA,order,row_id\n"
        "0.9,0.1,0.0,0,0\n0.1,0.9,0.0,1,0\n"  # consistent: chosen
        "0.2,0.7,0.1,0,1\n0.7,0.2,0.1,1,1\n"  # consistent: rejected
        "0.9,0.1,0.0,0,2\n0.9,0.1,0.0,1,2\n"  # position-inconsistent: abstain
        "0.3,0.2,0.5,0,3\n0.1,0.9,0.0,1,3\n"  # NA wins in order 0: abstain
        "0.9,0.1,0.0,0,4\n0.5,0.5,0.0,1,4\n",  # (s0 - s1)/2 rule: the decisive order counts
    )
    result = import_judgments(
        project=labelled_project, path=path, fmt="llm-judge", annotator="judge"
    )
    assert result.judgments == 5
    assert [_pref(labelled_project, r, "judge") for r in range(5)] == [1, -1, 0, 0, 1]
    assert "disagree" in _judgment(labelled_project, 2, "judge").rationale
    assert "NA" in _judgment(labelled_project, 3, "judge").rationale


def test_policy_logprob_uses_first_order(labelled_project, write_csv):
    path = write_csv(
        "policy.csv",
        "row_id,order,reward_a,reward_b,reward_NA,log_prob_chat_chosen,log_prob_chat_rejected\n"
        '0,"0,1",0.1,0.9,0,-10,-20\n'
        '0,"1,0",0.1,0.9,0,-10,-20\n'
        '1,"1,0",0.1,0.9,0,-30,-20\n'  # only the other order: its log-probs still count
        '2,"0,1",0.1,0.9,0,-5,-5\n',
    )
    result = import_judgments(
        project=labelled_project, path=path, fmt="policy-logprob", annotator="policy"
    )
    assert (result.rows, result.judgments, result.preferences) == (3, 3, 2)
    assert [_pref(labelled_project, r, "policy") for r in range(3)] == [1, -1, 0]


def test_unknown_rows(labelled_project, write_csv):
    path = write_csv("rm.csv", "row_id,reward_a,reward_b\n0,1,0\n17,1,0\n1,0,1\n")
    with pytest.raises(ImportFileError) as exc:
        import_judgments(project=labelled_project, path=path, fmt="reward-model", annotator="rm")
    assert exc.value.line == 3
    assert "row_id 17" in str(exc.value) and "--ignore-unknown-rows" in str(exc.value)
    assert not Judgment.objects.exists()
    assert not User.objects.filter(username="rm").exists()
    result = import_judgments(
        project=labelled_project,
        path=path,
        fmt="reward-model",
        annotator="rm",
        ignore_unknown_rows=True,
    )
    assert (result.judgments, result.skipped_rows) == (2, 1)


MALFORMED = [
    ("reward-model", "row_id,reward_a\n0,1\n", 1, "missing column(s): reward_b"),
    ("reward-model", "row_id,reward_a,reward_b\n0,1,0\n1,abc,0\n", 3, "reward_a must be a number"),
    ("reward-model", "row_id,reward_a,reward_b\n0,1,0\n-1,1,0\n", 3, "row_id must be ≥ 0"),
    ("reward-model", "row_id,reward_a,reward_b\n0.5,1,0\n", 2, "row_id must be an integer"),
    ("reward-model", "row_id,reward_a,reward_b\n0,nan,0\n", 2, "reward_a must be finite"),
    ("reward-model", "row_id,reward_a,reward_b\n0,1,0\n\n0,2,1\n", 4, "repeats line 2"),
    ("reward-model", "row_id,reward_a,reward_b\n0,1\n", 2, "2 cells for 3 columns"),
    ("reward-model", "row_id,reward_a,reward_b\n", None, "no data rows"),
    ("reward-model", "", 1, "header"),
    (
        "principle-oracle",
        "row_id,principle_id,prob_A,prob_B,prob_NA\n0,0,0.5,0.5,0\n0,1,1.5,0,0\n",
        3,
        "prob_A must be a probability",
    ),
    (
        "principle-oracle",
        "row_id,principle_id,prob_A,prob_B,prob_NA\n0,0,0.5,0.5,0\n1,3,1,0,0\n",
        3,
        "principle_id 3 is not in",
    ),
    (
        "principle-oracle",
        "row_id,principle_id,prob_A,prob_B,prob_NA,order\n0,0,0.5,0.5,0,2\n",
        2,
        "order must be 0 or 1",
    ),
    (
        "llm-judge",
        "row_id,order,prob_A,prob_B,prob_NA\n0,0,1,0,0\n0,1,0,1,0\n1,0,1,0,0\n",
        4,
        "order 0 only",
    ),
    (
        "llm-judge",
        "row_id,order,prob_A,prob_B,prob_NA\n0,0,1,0,0\n0,0,0,1,0\n",
        3,
        "row_id 0, order 0 repeats line 2",
    ),
    (
        "policy-logprob",
        'row_id,order,log_prob_chat_chosen,log_prob_chat_rejected\n0,"0;1",-1,-2\n',
        2,
        'order must be "0,1" or "1,0"',
    ),
]


@pytest.mark.parametrize(("fmt", "text", "line", "reason"), MALFORMED)
def test_malformed_files_name_the_line_and_write_nothing(
    labelled_project, write_csv, fmt, text, line, reason
):
    path = write_csv("bad.csv", text)
    with pytest.raises(ImportFileError) as exc:
        import_judgments(project=labelled_project, path=path, fmt=fmt, annotator="bad-model")
    assert exc.value.line == line
    assert reason in exc.value.reason
    assert str(exc.value).startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert not Judgment.objects.exists()
    assert not PrincipleVerdict.objects.exists()
    assert not User.objects.filter(username="bad-model").exists()


def test_unlabelled_task_is_refused(project, compare_tasks, write_csv):
    """Prompts whose responses carry no chosen/rejected label cannot be oriented."""
    path = write_csv("rm.csv", "row_id,reward_a,reward_b\n0,1,0\n")
    with pytest.raises(ImportFileError, match="no responses labelled chosen and rejected"):
        import_judgments(project=project, path=path, fmt="reward-model", annotator="rm")


def test_reimport_needs_replace(labelled_project, write_csv):
    path = write_csv("rm.csv", "row_id,reward_a,reward_b\n0,1,0\n1,0,1\n")
    import_judgments(project=labelled_project, path=path, fmt="reward-model", annotator="rm")
    with pytest.raises(ImportFileError, match="already judged 2"):
        import_judgments(project=labelled_project, path=path, fmt="reward-model", annotator="rm")
    flipped = write_csv("rm2.csv", "row_id,reward_a,reward_b\n0,0,1\n")
    result = import_judgments(
        project=labelled_project, path=flipped, fmt="reward-model", annotator="rm", replace=True
    )
    assert result.replaced == 1
    assert _pref(labelled_project, 0, "rm") == -1
    assert Judgment.objects.filter(annotator__username="rm").count() == 2
    labelled_project.refresh_from_db()
    assert labelled_project.judgment_count == 2


def test_human_name_is_refused(labelled_project, write_csv, annotator):
    path = write_csv("rm.csv", "row_id,reward_a,reward_b\n0,1,0\n")
    with pytest.raises(ImportFileError, match="is a human annotator"):
        import_judgments(
            project=labelled_project, path=path, fmt="reward-model", annotator=annotator.username
        )
    with pytest.raises(ImportFileError, match="annotator name"):
        import_judgments(project=labelled_project, path=path, fmt="reward-model", annotator="a b")
    assert not Judgment.objects.exists()


def test_command(labelled_project, write_csv, capsys):
    path = write_csv("rm.csv", "row_id,reward_a,reward_b\n0,1,0\n9,1,0\n")
    args = ["import_judgments", "--project", labelled_project.slug, "--annotator", "rm"]
    with pytest.raises(CommandError, match=r"rm\.csv:3: row_id 9"):
        call_command(*args, "--format", "reward-model", str(path))
    call_command(*args, "--format", "reward-model", "--ignore-unknown-rows", str(path))
    out = capsys.readouterr().out
    assert "imported 1 judgments by rm" in out and "1 rows with unknown row ids skipped" in out
    with pytest.raises(CommandError, match="no project"):
        call_command(
            "import_judgments",
            "--project",
            "nope",
            "--annotator",
            "x",
            "--format",
            "reward-model",
            str(path),
        )
