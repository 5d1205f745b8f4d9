"""submit_judgment / edit_judgment / create_demonstration: validation, idempotency, effects."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import errors
from annotation.models import Assignment, Demonstration, Judgment, PrincipleVerdict, Task
from annotation.workspace import demonstrations, judging, leasing
from common import events
from common.errors import DomainError

pytestmark = pytest.mark.django_db


@pytest.fixture
def leased(make_project, annotators):
    project = make_project(tasks=3, overlap=2)
    a, b = annotators(2)
    return project, a, b, leasing.next_task(annotator=a, project=project)


def test_submit_stores_ordering_verdicts_decisive_and_counts(leased):
    _, a, _, lease = leased
    x, y = lease.display_order
    judgment = judging.submit_judgment(
        assignment=lease,
        annotator=a,
        ordering=[[y], [x]],
        strength=2,
        verdicts={"harmless": y, "honest": "tie"},
        decisive=["harmless"],
        rationale="B refuses safely",
        confidence=4,
        time_spent_ms=12_345,
        idempotency_key="k-1",
    )
    assert judgment.ordering == [[y], [x]] and judgment.strength == 2
    verdicts = {
        v.principle.key: (v.verdict, v.preferred_response_id) for v in judgment.verdicts.all()
    }
    assert verdicts == {
        "harmless": ("prefers", y),
        "honest": ("tie", None),
        "helpful": ("not_applicable", None),  # every principle gets a verdict
    }
    assert [p.key for p in judgment.decisive_principles.all()] == ["harmless"]
    lease.refresh_from_db()
    assert lease.state == Assignment.State.SUBMITTED and lease.submitted_at is not None
    assert Task.objects.get(pk=lease.task_id).submitted_count == 1


def test_the_same_idempotency_key_never_makes_a_second_judgment(leased):
    _, a, b, lease = leased
    ids = lease.display_order
    first = judging.submit_judgment(
        assignment=lease, annotator=a, ordering=[ids], idempotency_key="same"
    )
    again = judging.submit_judgment(
        assignment=lease, annotator=a, ordering=[[ids[0]], [ids[1]]], idempotency_key="same"
    )
    assert again.pk == first.pk and again.ordering == [ids]
    assert Judgment.objects.count() == 1
    assert Task.objects.get(pk=lease.task_id).submitted_count == 1
    with pytest.raises(errors.AlreadySubmittedError):  # another key: a second judgment? no
        judging.submit_judgment(assignment=lease, annotator=a, ordering=[ids], idempotency_key="k2")
    other = leasing.next_task(annotator=b, project=lease.task.project)
    with pytest.raises(errors.IdempotencyConflictError):
        judging.submit_judgment(
            assignment=other, annotator=b, ordering=[other.display_order], idempotency_key="same"
        )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x, y: {"ordering": []}, "non-empty list"),
        (lambda x, y: {"ordering": "AB"}, "non-empty list"),
        (lambda x, y: {"ordering": [[x], []]}, "non-empty list of response ids"),
        (lambda x, y: {"ordering": [[999_999], [x, y]]}, "not part of task"),
        (lambda x, y: {"ordering": [["x"]]}, "integers"),
        (lambda x, y: {"ordering": [[x, x], [y]]}, "more than once"),
        (lambda x, y: {"ordering": [[x]]}, "missing"),
        (lambda x, y: {"ordering": [[x, y]], "strength": 2}, "a tie has no strength"),
        (lambda x, y: {"strength": 7}, "strength must be"),
        (lambda x, y: {"verdicts": {"nonsense": "tie"}}, "unknown principle"),
        (lambda x, y: {"verdicts": {"honest": 999_999}}, "must be a response id"),
        (
            lambda x, y: {"verdicts": {"honest": "tie"}, "decisive": ["honest"]},
            "must prefer a response",
        ),
        (lambda x, y: {"decisive": ["helpful"]}, "must prefer a response"),
        (lambda x, y: {"decisive": ["nope"]}, "unknown decisive"),
        (lambda x, y: {"decisive": "honest"}, "list of principle keys"),
        (
            lambda x, y: {"verdicts": {"honest": x}, "decisive": ["honest"], "discretion": True},
            "my own judgment",
        ),
        (lambda x, y: {"confidence": 9}, "confidence"),
        (lambda x, y: {"time_spent_ms": -1}, "time_spent_ms"),
        (lambda x, y: {"idempotency_key": "k" * 101}, "idempotency_key"),
    ],
)
def test_invalid_judgments_are_refused_with_a_reason(leased, make, message):
    _, a, _, lease = leased
    x, y = lease.display_order
    kwargs = {"ordering": [[x], [y]], **make(x, y)}
    with pytest.raises(DomainError, match=message):
        judging.submit_judgment(assignment=lease, annotator=a, **kwargs)
    assert Judgment.objects.count() == 0
    assert Assignment.objects.get(pk=lease.pk).state == Assignment.State.LEASED


def test_only_the_lease_holder_submits(leased):
    _, _, b, lease = leased
    with pytest.raises(errors.NotYourAssignmentError):
        judging.submit_judgment(assignment=lease, annotator=b, ordering=[lease.display_order])


def test_rank_tasks_take_buckets_with_ties_and_no_strength(make_project, annotators):
    project = make_project(tasks=1, responses=4)
    (a,) = annotators(1)
    lease = leasing.next_task(annotator=a, project=project)
    r1, r2, r3, r4 = lease.display_order
    with pytest.raises(DomainError, match="pairwise"):
        judging.submit_judgment(
            assignment=lease, annotator=a, ordering=[[r1], [r2, r3], [r4]], strength=1
        )
    judgment = judging.submit_judgment(
        assignment=lease,
        annotator=a,
        ordering=[[r1], [r2, r3], [r4]],
        verdicts={"harmless": r3},
        decisive=["harmless"],
    )
    assert judgment.ordering == [[r1], [r2, r3], [r4]]


def test_both_bad_creates_one_follow_up_demonstration_task(make_project, annotators):
    project = make_project(tasks=1, overlap=2, both_bad_creates_demonstration=True)
    a, b = annotators(2)
    leases = [(u, leasing.next_task(annotator=u, project=project)) for u in (a, b)]
    for annotator, lease in leases:
        judging.submit_judgment(
            assignment=lease, annotator=annotator, ordering=[lease.display_order], both_bad=True
        )
    (follow_up,) = Task.objects.filter(kind=Task.Kind.DEMONSTRATE)
    judged = Task.objects.get(kind=Task.Kind.COMPARE)
    assert follow_up.prompt_id == judged.prompt_id
    assert follow_up.origin_judgment.task_id == judged.pk
    assert sorted(follow_up.responses.values_list("pk", flat=True)) == sorted(
        judged.responses.values_list("pk", flat=True)
    )
    # and it is offered as work, with the original responses to start from
    lease = leasing.next_task(annotator=a, project=project)
    assert lease.task_id == follow_up.pk and len(lease.display_order) == 2


def test_edit_within_the_window_then_read_only(leased):
    _, a, b, lease = leased
    x, y = lease.display_order
    judgment = judging.submit_judgment(
        assignment=lease,
        annotator=a,
        ordering=[[x], [y]],
        verdicts={"honest": x},
        decisive=["honest"],
        time_spent_ms=1000,
    )
    edited = judging.edit_judgment(
        judgment=judgment,
        annotator=a,
        ordering=[[y], [x]],
        strength=3,
        verdicts={"harmless": y},
        decisive=["harmless"],
        time_spent_ms=500,
    )
    assert edited.ordering == [[y], [x]] and edited.time_spent_ms == 1500
    stored = {
        v.principle.key: v.verdict for v in PrincipleVerdict.objects.filter(judgment=judgment)
    }
    assert stored == {
        "harmless": "prefers",
        "honest": "not_applicable",
        "helpful": "not_applicable",
    }
    assert [p.key for p in edited.decisive_principles.all()] == ["harmless"]
    with pytest.raises(errors.NotYourAssignmentError):
        judging.edit_judgment(judgment=judgment, annotator=b, ordering=[[x], [y]])
    Judgment.objects.filter(pk=judgment.pk).update(
        created_at=timezone.now() - timedelta(seconds=lease.task.project.edit_window_seconds + 1)
    )
    with pytest.raises(errors.EditWindowClosedError):
        judging.edit_judgment(judgment=judgment, annotator=a, ordering=[[x], [y]])
    assert Task.objects.get(pk=lease.task_id).submitted_count == 1


def test_demonstrations_complete_demonstrate_leases_idempotently(make_project, annotators):
    project = make_project(tasks=2, responses=2, kind="demonstrate")
    a, b = annotators(2)
    lease = leasing.next_task(annotator=a, project=project)
    task = lease.task
    base = task.responses.first()
    with pytest.raises(DomainError, match="needs text"):
        demonstrations.create_demonstration(annotator=a, task=task, text="  ")
    with pytest.raises(DomainError, match="unknown principle"):
        demonstrations.create_demonstration(annotator=a, task=task, text="x", cited=["nope"])
    with pytest.raises(errors.NotYourAssignmentError):
        demonstrations.create_demonstration(annotator=b, task=task, text="mine")
    demo = demonstrations.create_demonstration(
        annotator=a,
        task=task,
        text="The ideal answer.",
        based_on=base,
        cited=["honest"],
        idempotency_key="d-1",
        time_spent_ms=900,
    )
    again = demonstrations.create_demonstration(
        annotator=a, task=task, text="changed", idempotency_key="d-1"
    )
    assert again.pk == demo.pk and Demonstration.objects.count() == 1
    assert demo.prompt_id == task.prompt_id and demo.based_on_id == base.pk
    assert [p.key for p in demo.cited_principles.all()] == ["honest"]
    assert Assignment.objects.get(pk=lease.pk).state == Assignment.State.SUBMITTED
    assert Task.objects.get(pk=task.pk).submitted_count == 1
    with pytest.raises(errors.AlreadySubmittedError):
        demonstrations.create_demonstration(annotator=a, task=task, text="second")
    other_task = Task.objects.exclude(pk=task.pk).filter(project=project).get()
    foreign = Task.objects.create(project=project, prompt=other_task.prompt, kind="compare")
    with pytest.raises(DomainError, match="worked on"):
        demonstrations.create_demonstration(annotator=a, task=foreign, text="x")


def test_judgment_on_a_demonstrate_task_is_refused(make_project, annotators):
    project = make_project(tasks=1, responses=2, kind="demonstrate")
    (a,) = annotators(1)
    lease = leasing.next_task(annotator=a, project=project)
    with pytest.raises(DomainError, match="takes a demonstration"):
        judging.submit_judgment(assignment=lease, annotator=a, ordering=[lease.display_order])


def test_events_are_published_after_commit(leased, django_capture_on_commit_callbacks):
    _, a, _, lease = leased
    seen = []

    def record(event, payload):
        seen.append((event, payload))

    events.subscribe(record, "judgment.created")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            judgment = judging.submit_judgment(
                assignment=lease, annotator=a, ordering=[lease.display_order]
            )
    finally:
        events.unsubscribe(record, "judgment.created")
    assert seen == [
        (
            "judgment.created",
            {
                "judgment_id": judgment.pk,
                "task_id": lease.task_id,
                "project_id": lease.task.project_id,
                "annotator_id": a.pk,
            },
        )
    ]
