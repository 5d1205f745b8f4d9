"""PostgreSQL bulk task import (``annotation/task_copy``): the copied rows satisfy every foreign
key, whether the database role may switch the per-row foreign-key triggers off or not."""

import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction

from annotation.datasets import bulk
from annotation.datasets import pg as dataset_pg
from annotation.models import Project, Prompt, Task, TaskResponse
from annotation.specs import PromptSpec, ResponseSpec


@pytest.fixture
def postgres(db):
    if connection.vendor != "postgresql":
        pytest.skip("the COPY path runs on PostgreSQL only; run with DATABASE_URL=postgres://…")


def _specs(count: int) -> list[PromptSpec]:
    return [
        PromptSpec(
            messages=[{"role": "user", "content": f"Question {i}?"}],
            responses=[ResponseSpec(f"Answer {i}.{k}", f"model:m{k}@1") for k in range(2 + i % 3)],
            external_id=f"q{i}",
        )
        for i in range(count)
    ]


def _fetch(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _dangling_references() -> list[str]:
    """Each foreign key column of the copied tables holding a value that points nowhere."""
    out = []
    for model in dataset_pg.COPIED:
        for field in model._meta.concrete_fields:
            if not field.is_relation:
                continue
            target = field.target_field
            (count,) = _fetch(
                f"SELECT count(*) FROM {model._meta.db_table} c WHERE c.{field.column} IS NOT NULL"
                f" AND NOT EXISTS (SELECT 1 FROM {target.model._meta.db_table} p"
                f" WHERE p.{target.column} = c.{field.column})"
            )[0]
            if count:
                out.append(f"{model._meta.db_table}.{field.column}: {count}")
    return out


def _prompts_locked_row_by_row() -> int:
    """Prompts whose row carries a lock (``xmax`` set): each per-row foreign-key check of a
    response or task on its prompt takes ``FOR KEY SHARE``."""
    return _fetch(f"SELECT count(*) FROM {Prompt._meta.db_table} WHERE xmax <> 0")[0][0]


def _stored(project: Project) -> list[tuple]:
    return [
        (task.prompt.external_id, task.kind, [(tr.position, tr.response.text) for tr in links])
        for task in Task.objects.filter(project=project).select_related("prompt").order_by("id")
        for links in [
            TaskResponse.objects.filter(task=task).select_related("response").order_by("position")
        ]
    ]


def _expected(project: Project, specs: list[PromptSpec]) -> list[tuple]:
    """Each task's responses at their positions: in the seeded order ``bulk`` stores them."""
    return [
        (
            s.external_id,
            bulk.task_kind_for(s),
            [(p, s.responses[i].text) for p, i in enumerate(bulk.stored_order(project.pk, s))],
        )
        for s in specs
    ]


def test_a_privileged_role_copies_without_per_row_checks_and_every_key_holds(project, postgres):
    with connection.cursor() as cursor:
        assert dataset_pg._may_switch_off_triggers(cursor)  # the test role is a superuser
    specs = _specs(25)
    with transaction.atomic():
        assert bulk.create_tasks(project=project, specs=specs, batch_size=10) == 25
        assert _prompts_locked_row_by_row() == 0
        assert _fetch("SHOW session_replication_role") == [("origin",)]
        # the project row is locked once, as each row's check would have locked it
        locked = f"SELECT xmax <> 0 FROM {Project._meta.db_table} WHERE id = %s"
        assert _fetch(locked, [project.pk]) == [(True,)]
    assert _stored(project) == _expected(project, specs)
    assert _dangling_references() == []


def test_a_role_that_may_not_switch_triggers_off_gets_per_row_checks(project, postgres):
    role = f"import_test_{uuid.uuid4().hex[:12]}"
    specs = _specs(25)
    with transaction.atomic():  # the role and its grants roll back with the test
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {role} NOLOGIN")
            cursor.execute(
                f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role};"
                f" GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role};"
                f" SET LOCAL ROLE {role}"
            )
            assert not dataset_pg._may_switch_off_triggers(cursor)
        assert bulk.create_tasks(project=project, specs=specs, batch_size=10) == 25
        assert _prompts_locked_row_by_row() == 25
        assert _dangling_references() == []
        connection.cursor().execute("RESET ROLE")
    assert _stored(project) == _expected(project, specs)


def test_writes_after_the_copy_in_the_same_transaction_are_checked(project, postgres):
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk.create_tasks(project=project, specs=_specs(3))
        response = TaskResponse.objects.first().response
        TaskResponse.objects.create(task_id=10**12, response=response, position=9)
        connection.cursor().execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert not Task.objects.exists()


def test_a_vanished_project_is_refused_and_nothing_is_written(project, postgres):
    Project.objects.filter(pk=project.pk).delete()
    with pytest.raises(IntegrityError, match="does not exist"):
        bulk.create_tasks(project=project, specs=_specs(3))
    assert not Prompt.objects.exists()


def test_a_foreign_key_the_copy_would_not_set_explicitly_is_refused(project, postgres, monkeypatch):
    monkeypatch.setattr(Task._meta.get_field("origin_judgment"), "get_default", lambda: 1)
    with pytest.raises(ImproperlyConfigured, match="origin_judgment"):
        bulk.create_tasks(project=project, specs=_specs(3))
    assert not Prompt.objects.exists()


def test_copied_rows_that_reference_existing_records_get_ids_defaults_and_checks(
    project, postgres, make_user
):
    """``copy_rows`` (imported judgments): ids from the table, defaults and ``auto_now`` filled,
    and each row's foreign keys checked as usual (triggers on)."""
    from annotation.models import Judgment

    bulk.create_tasks(project=project, specs=_specs(1))
    task_id = Task.objects.get(project=project).pk
    user, other = make_user("ext"), make_user("ext-2")
    columns = ("task_id", "annotator_id", "ordering", "strength", "origin")
    with transaction.atomic():
        dataset_pg.copy_rows(
            Judgment, columns, [(task_id, u.pk, [[1], [2]], 2, "import:x") for u in (user, other)]
        )
    first, second = Judgment.objects.order_by("id")
    assert second.pk == first.pk + 1 and first.created_at and first.rationale == ""
    assert (first.task_id, first.annotator_id, first.ordering, first.strength, first.flagged) == (
        task_id, user.pk, [[1], [2]], 2, False,
    )  # fmt: skip
    with pytest.raises(IntegrityError), transaction.atomic():
        dataset_pg.copy_rows(Judgment, columns, [(10**12, user.pk, [], 0, "import:x")])
        connection.cursor().execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert Judgment.objects.count() == 2
