from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "annotation"

    def ready(self) -> None:
        from annotation import checks, signals  # noqa: F401  (registers checks, connects signals)
        from annotation.webhooks import install as install_webhooks

        install_webhooks()  # judgment.created → HMAC-signed webhooks
