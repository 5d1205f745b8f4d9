"""Every user gets an ``AnnotatorProfile``; superusers start as admins."""

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from .models import AnnotatorProfile


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def ensure_profile(sender, instance, created: bool, **kwargs) -> None:
    if created:
        role = (
            AnnotatorProfile.Role.ADMIN
            if instance.is_superuser
            else AnnotatorProfile.Role.ANNOTATOR
        )
        AnnotatorProfile.objects.get_or_create(user=instance, defaults={"role": role})
