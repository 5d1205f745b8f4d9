"""The assignment engine: leases, overlap, expiry, skips, self-judging, gold, display order."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import errors
from annotation.models import Assignment, Judgment, Project, Response, Task
from annotation.projects import services as project_services
from annotation.workspace import judging, leasing
from annotation.workspace import selectors as workspace_selectors

pytestmark = pytest.mark.django_db


def submit(assignment, annotator, **kwargs):
    ids = assignment.display_order
    kwargs.setdefault("ordering", [[ids[0]], ids[1:]])
    return judging.submit_judgment(assignment=assignment, annotator=annotator, **kwargs)


def test_next_task_returns_the_live_lease_first(make_project, annotators):
    project = make_project(tasks=3)
    (a,) = annotators(1)
    first = leasing.next_task(annotator=a, project=project)
    again = leasing.next_task(annotator=a, project=project)
    assert first.pk == again.pk and first.state == Assignment.State.LEASED
    assert Assignment.objects.count() == 1
    assert first.leased_until - first.leased_at == timedelta(seconds=project.lease_seconds)


def test_overlap_caps_a_task_and_nobody_gets_a_task_twice(make_project, annotators):
    project = make_project(tasks=2, overlap=2)
    a, b, c = annotators(3)
    seen = {a: [], b: [], c: []}
    for _ in range(3):
        for annotator in (a, b, c):
            lease = leasing.next_task(annotator=annotator, project=project)
            if lease is not None:
                seen[annotator].append(lease.task_id)
                submit(lease, annotator)
    for tasks in seen.values():
        assert len(tasks) == len(set(tasks))
    counts = {t.pk: t.submitted_count for t in Task.objects.filter(project=project)}
    assert counts == {t: 2 for t in counts}
    assert Judgment.objects.count() == 4
    assert all(leasing.next_task(annotator=u, project=project) is None for u in (a, b, c))


def test_live_leases_hold_slots_and_expired_ones_are_reoffered(make_project, annotators):
    project = make_project(tasks=1, overlap=1)
    a, b = annotators(2)
    lease = leasing.next_task(annotator=a, project=project)
    assert leasing.next_task(annotator=b, project=project) is None
    Assignment.objects.filter(pk=lease.pk).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    taken = leasing.next_task(annotator=b, project=project)
    assert taken is not None and taken.task_id == lease.task_id
    # a's lease is gone: submitting it now is refused, and nothing is stored
    with pytest.raises(errors.LeaseExpiredError):
        submit(lease, a)
    assert Judgment.objects.count() == 0
    submit(taken, b)
    assert Task.objects.get().submitted_count == 1


def test_an_expired_lease_can_still_be_submitted_while_the_task_has_room(make_project, annotators):
    project = make_project(tasks=1, overlap=1)
    (a,) = annotators(1)
    lease = leasing.next_task(annotator=a, project=project)
    Assignment.objects.filter(pk=lease.pk).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    judgment = submit(lease, a)
    assert judgment.assignment_id == lease.pk
    assert Task.objects.get().submitted_count == 1


def test_own_expired_lease_comes_back_on_the_same_row(make_project, annotators):
    project = make_project(tasks=1, overlap=1, randomize_positions=True)
    (a,) = annotators(1)
    lease = leasing.next_task(annotator=a, project=project)
    Assignment.objects.filter(pk=lease.pk).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    assert leasing.expire_leases() == 1
    again = leasing.next_task(annotator=a, project=project)
    assert again.pk == lease.pk and again.state == Assignment.State.LEASED
    assert again.display_order == lease.display_order
    assert again.leased_until > timezone.now()


def test_skipped_tasks_go_to_others_only(make_project, annotators):
    project = make_project(tasks=1, overlap=1)
    a, b = annotators(2)
    lease = leasing.next_task(annotator=a, project=project)
    with pytest.raises(errors.DomainError, match="why"):
        leasing.skip_task(assignment=lease, annotator=a, reason="  ")
    skipped = leasing.skip_task(assignment=lease, annotator=a, reason="unclear: prompt")
    assert skipped.state == Assignment.State.SKIPPED and skipped.skip_reason == "unclear: prompt"
    assert leasing.skip_task(assignment=lease, annotator=a, reason="again").pk == lease.pk
    assert leasing.next_task(annotator=a, project=project) is None
    other = leasing.next_task(annotator=b, project=project)
    assert other is not None and other.task_id == lease.task_id
    with pytest.raises(errors.DomainError, match="skipped"):
        submit(lease, a)
    with pytest.raises(errors.NotYourAssignmentError):
        leasing.skip_task(assignment=other, annotator=a, reason="x")


def test_never_a_task_with_a_response_the_annotator_wrote(make_project, annotators):
    project = make_project(tasks=2, overlap=1)
    a, b = annotators(2)
    first = Task.objects.filter(project=project).order_by("id").first()
    Response.objects.filter(tasks=first).update(author=a)
    lease = leasing.next_task(annotator=a, project=project)
    assert lease.task_id != first.pk
    submit(lease, a)
    assert leasing.next_task(annotator=a, project=project) is None
    assert leasing.next_task(annotator=b, project=project).task_id == first.pk


def test_gold_tasks_are_mixed_in_at_the_gold_ratio(make_project, annotators, monkeypatch):
    project = make_project(tasks=40, overlap=1, gold_ratio=0.25)
    gold = list(
        Task.objects.filter(project=project).order_by("id")[:10].values_list("pk", flat=True)
    )
    Task.objects.filter(pk__in=gold).update(is_gold=True, gold_answer={"ordering": []})
    monkeypatch.setattr(leasing, "rng", random.Random(7))
    (a,) = annotators(1)
    kinds = []
    for _ in range(40):
        lease = leasing.next_task(annotator=a, project=project)
        if lease is None:
            break
        kinds.append(lease.task_id in gold)
        submit(lease, a)
    # all 30 regular tasks get done; gold ones are spread through them, about 1 in 4
    assert kinds.count(False) == 30
    assert 3 <= sum(kinds[:30]) <= 14


def test_gold_is_not_capped_by_overlap_and_ratio_zero_never_serves_it(make_project, annotators):
    project = make_project(tasks=2, overlap=1, gold_ratio=1.0)
    gold = Task.objects.filter(project=project).order_by("id").first()
    Task.objects.filter(pk=gold.pk).update(is_gold=True)
    a, b = annotators(2)
    for annotator in (a, b):
        lease = leasing.next_task(annotator=annotator, project=project)
        assert lease.task_id == gold.pk  # every annotator sees the gold task
        submit(lease, annotator)
    assert Task.objects.get(pk=gold.pk).submitted_count == 2
    other = make_project(tasks=2, overlap=1, gold_ratio=0.0)
    Task.objects.filter(project=other).update(is_gold=True)
    assert leasing.next_task(annotator=a, project=other) is None


def test_display_order_is_randomized_per_assignment_and_stored(
    make_project, annotators, monkeypatch
):
    monkeypatch.setattr(leasing, "rng", random.Random(3))
    project = make_project(tasks=40, responses=3, overlap=1, randomize_positions=True)
    (a,) = annotators(1)
    orders = set()
    for _ in range(40):
        lease = leasing.next_task(annotator=a, project=project)
        canonical = list(
            lease.task.task_responses.order_by("position").values_list("response_id", flat=True)
        )
        assert sorted(lease.display_order) == sorted(canonical)
        orders.add(tuple(canonical.index(r) for r in lease.display_order))
        assert Assignment.objects.get(pk=lease.pk).display_order == lease.display_order
        submit(lease, a)
    assert len(orders) >= 4  # of the 6 permutations
    fixed = make_project(tasks=3, responses=3, randomize_positions=False)
    lease = leasing.next_task(annotator=a, project=fixed)
    assert lease.display_order == list(
        lease.task.task_responses.order_by("position").values_list("response_id", flat=True)
    )


def test_inactive_project_hands_out_nothing(make_project, annotators):
    project = make_project(tasks=2, is_active=False)
    (a,) = annotators(1)
    assert leasing.next_task(annotator=a, project=project) is None


def test_a_cached_project_never_over_assigns_after_the_overlap_is_lowered(make_project, annotators):
    """The workspace's project is cached per process; another process lowers the overlap or
    deactivates the project (``update``: no signal reaches this process's cache). The lease
    reads both from the project row, so the stale copy changes nothing."""
    project = make_project(tasks=1, overlap=2)
    a, b = annotators(2)
    cached = workspace_selectors.cached_workspace_project(slug=project.slug)
    Project.objects.filter(pk=project.pk).update(annotations_per_task=1)
    assert workspace_selectors.cached_workspace_project(slug=project.slug).annotations_per_task == 2
    assert leasing.next_task(annotator=a, project=cached) is not None
    assert leasing.next_task(annotator=b, project=cached) is None
    Project.objects.filter(pk=project.pk).update(annotations_per_task=2, is_active=False)
    assert workspace_selectors.cached_workspace_project(slug=project.slug).is_active
    assert leasing.next_task(annotator=b, project=cached) is None


def test_saving_a_project_refreshes_this_process_s_cached_copy(make_project):
    project = make_project(tasks=1, overlap=2)
    assert workspace_selectors.cached_workspace_project(slug=project.slug).annotations_per_task == 2
    project_services.update_project(project=project, annotations_per_task=3)
    assert workspace_selectors.cached_workspace_project(slug=project.slug).annotations_per_task == 3
    project_services.update_project(project=project, is_active=False)
    with pytest.raises(Project.DoesNotExist):
        workspace_selectors.cached_workspace_project(slug=project.slug)


def test_a_lease_comes_with_the_task_content_the_page_shows(make_project, annotators):
    project = make_project(tasks=2, responses=3)
    (a,) = annotators(1)
    lease = workspace_selectors.with_task(leasing.next_task(annotator=a, project=project), project)
    task = Task.objects.select_related("prompt").get(pk=lease.task_id)
    assert lease.task.pk == task.pk and lease.task.prompt.messages == task.prompt.messages
    texts = dict(Response.objects.filter(pk__in=lease.display_order).values_list("id", "text"))
    assert [s.text for s in workspace_selectors.workspace_for(lease).slots] == [
        texts[rid] for rid in lease.display_order
    ]
    again = workspace_selectors.with_task(leasing.next_task(annotator=a, project=project), project)
    assert again.pk == lease.pk and again.task.pk == task.pk  # the live lease, same content
