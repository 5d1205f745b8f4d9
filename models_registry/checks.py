"""System checks: an object store named by ``ARTIFACT_STORAGE_URL`` that fsspec can reach."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from models_registry import storage


@register()
def artifact_storage_is_usable(app_configs, **kwargs) -> list[Error]:
    """The store's fsspec implementation (s3fs for s3://, gcsfs for gs://) is installed."""
    url = getattr(settings, "ARTIFACT_STORAGE_URL", "")
    if not storage.is_remote(url):
        return []
    import fsspec

    protocol = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        return [
            Error(
                f"ARTIFACT_STORAGE_URL uses {protocol}:// but fsspec cannot open it: {exc}",
                hint="Install its fsspec backend (s3fs for s3://, gcsfs for gs://).",
                id="models_registry.E001",
            )
        ]
    return []
