"""Write paths for the registry: register versions with their lineage, move stages."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from annotation.models import DatasetSnapshot, PrincipleSet

from .models import ModelParent, ModelVersion, RegisteredModel


@transaction.atomic
def register_model_version(
    *,
    name: str,
    kind: str,
    artifact_uri: str,
    sha256: str,
    size_bytes: int,
    parents: dict[str, ModelVersion | None] | None = None,
    dataset_snapshot: DatasetSnapshot | None = None,
    principle_set: PrincipleSet | None = None,
    eval_metrics: dict | None = None,
    annotator_contributions: dict | None = None,
    data_discretion_profile: dict | None = None,
) -> ModelVersion:
    """The next version of ``name`` (created on first use) with its lineage edges.

    ``parents`` maps a role (base / reference / reward) to the version that played it.
    """
    registered, _ = RegisteredModel.objects.get_or_create(name=name, defaults={"kind": kind})
    registered = RegisteredModel.objects.select_for_update().get(pk=registered.pk)
    latest = registered.versions.aggregate(v=Max("version"))["v"] or 0
    version = ModelVersion.objects.create(
        registered_model=registered,
        version=latest + 1,
        artifact_uri=artifact_uri,
        sha256=sha256,
        size_bytes=size_bytes,
        dataset_snapshot=dataset_snapshot,
        principle_set=principle_set or (dataset_snapshot and dataset_snapshot.principle_set),
        eval_metrics=eval_metrics or {},
        annotator_contributions=annotator_contributions or {},
        data_discretion_profile=data_discretion_profile or {},
    )
    ModelParent.objects.bulk_create(
        ModelParent(child=version, parent=parent, role=role)
        for role, parent in (parents or {}).items()
        if parent is not None
    )
    return version
