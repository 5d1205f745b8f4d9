from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "annotation"

    def ready(self) -> None:
        from annotation import checks, signals  # noqa: F401  (registers checks, connects signals)
        from annotation.models import Webhook
        from annotation.projects.services import RECOUNT_EVENTS, recount_after_import
        from annotation.quality.reports import JUDGMENT_EVENTS, refresh_after_judgments
        from annotation.webhooks.services import forward
        from common import events

        events.subscribe(forward, *Webhook.Event.values)  # → HMAC-signed webhooks
        events.subscribe(refresh_after_judgments, *JUDGMENT_EVENTS)  # → debounced metrics
        events.subscribe(recount_after_import, *RECOUNT_EVENTS)  # → the project's counts
