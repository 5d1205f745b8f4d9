"""Principle sets: publish freezes, edits are refused, forking makes the next version."""

import pytest
from django.db import IntegrityError, transaction

from annotation.errors import ImmutableError
from annotation.models import Principle, PrincipleSet
from annotation.principles import services as principle_services
from annotation.projects import services as project_services
from annotation.specs import PrincipleSpec
from common.errors import DomainError


@pytest.fixture
def draft(db):
    return principle_services.create_principle_set(
        name="constitution",
        principles=[
            PrincipleSpec(key="a", title="A", authority="root"),
            PrincipleSpec(key="b", title="B"),
        ],
    )


def test_draft_is_editable_and_publish_freezes_it(draft):
    principle = draft.principles.get(key="a")
    principle_services.update_principle(principle=principle, title="A, reworded")
    assert draft.principles.get(key="a").title == "A, reworded"

    published = principle_services.publish_principle_set(principle_set=draft)
    assert published.status == "published" and published.published_at is not None

    with pytest.raises(ImmutableError):
        principle_services.update_principle(principle=draft.principles.get(key="a"), title="sneaky")
    with pytest.raises(ImmutableError):
        principle_services.add_principle(
            principle_set=published, spec=PrincipleSpec(key="c", title="C")
        )
    with pytest.raises(ImmutableError):
        principle_services.remove_principle(principle=draft.principles.get(key="b"))
    with pytest.raises(ImmutableError):
        principle_services.publish_principle_set(principle_set=published)
    assert draft.principles.get(key="a").title == "A, reworded"
    assert draft.principles.count() == 2


def test_fork_creates_next_version_with_parent_and_same_keys(draft):
    published = principle_services.publish_principle_set(principle_set=draft)
    fork = principle_services.fork_principle_set(principle_set=published)
    assert (fork.name, fork.version, fork.status, fork.parent_id) == (
        "constitution",
        2,
        "draft",
        published.pk,
    )
    assert list(fork.principles.values_list("key", "authority", "position")) == list(
        published.principles.values_list("key", "authority", "position")
    )
    principle_services.update_principle(principle=fork.principles.get(key="b"), text="new text")
    assert published.principles.get(key="b").text == ""


def test_declared_priority_defaults_to_authority_rank(draft):
    priorities = dict(draft.principles.values_list("key", "declared_priority"))
    assert priorities["a"] < priorities["b"]  # root outranks user


def test_database_rejects_duplicate_version_and_bad_choices(draft):
    with pytest.raises(IntegrityError), transaction.atomic():
        PrincipleSet.objects.create(name="constitution", version=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Principle.objects.create(
            principle_set=draft, key="z", title="Z", position=9, authority="emperor"
        )


def test_unknown_field_edit_and_duplicate_keys_are_refused(draft):
    with pytest.raises(DomainError):
        principle_services.update_principle(principle=draft.principles.first(), principle_set_id=99)
    with pytest.raises(DomainError):
        principle_services.create_principle_set(
            name="dupes", principles=[PrincipleSpec(key="x", title="X")] * 2
        )
    assert not PrincipleSet.objects.filter(name="dupes").exists()


def test_project_requires_published_set(draft):
    with pytest.raises(DomainError):
        project_services.create_project(name="P", slug="p", principle_set=draft)
