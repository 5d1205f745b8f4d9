"""Every user gets an ``AnnotatorProfile``; superusers start as admins. A saved or deleted
user or API token leaves the authentication cache; a saved or deleted user, profile or
membership clears this process's remembered roles and memberships (``roles.remembered_role``,
``roles.remembered_membership``); a saved or deleted project or principle set leaves this
process's workspace cache (``selectors.cached_workspace_project``)."""

from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from annotation.models import AnnotatorProfile, PrincipleSet, Project, ProjectMembership
from annotation.roles import forget_roles
from annotation.workspace.selectors import forget_workspace_projects
from common.auth import forget_token, forget_user


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def ensure_profile(sender, instance, created: bool, **kwargs) -> None:
    if created:
        role = (
            AnnotatorProfile.Role.ADMIN
            if instance.is_superuser
            else AnnotatorProfile.Role.ANNOTATOR
        )
        AnnotatorProfile.objects.get_or_create(user=instance, defaults={"role": role})


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
@receiver(post_delete, sender=settings.AUTH_USER_MODEL)
def forget_cached_user(sender, instance, **kwargs) -> None:
    # Now, and again on commit: a request between the two may cache the row as it was.
    forget_user(instance.pk)
    transaction.on_commit(partial(forget_user, instance.pk))
    for key in Token.objects.filter(user_id=instance.pk).values_list("key", flat=True):
        forget_cached_token(Token, Token(key=key))  # the token's entry holds the user too
    forget_remembered_roles(sender, instance)


@receiver(post_save, sender=Token)
@receiver(post_delete, sender=Token)
def forget_cached_token(sender, instance, **kwargs) -> None:
    # Now, and again on commit (as for users above).
    forget_token(instance.key)
    transaction.on_commit(partial(forget_token, instance.key))


@receiver(post_save, sender=AnnotatorProfile)
@receiver(post_delete, sender=AnnotatorProfile)
@receiver(post_save, sender=ProjectMembership)
@receiver(post_delete, sender=ProjectMembership)
def forget_remembered_roles(sender, instance, **kwargs) -> None:
    forget_roles()
    transaction.on_commit(forget_roles)


@receiver(post_save, sender=Project)
@receiver(post_delete, sender=Project)
@receiver(post_save, sender=PrincipleSet)
@receiver(post_delete, sender=PrincipleSet)
def forget_cached_projects(sender, instance, **kwargs) -> None:
    forget_workspace_projects()
