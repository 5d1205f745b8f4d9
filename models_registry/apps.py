from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "models_registry"

    def ready(self) -> None:
        from models_registry import checks  # noqa: F401  (registers the system checks)
