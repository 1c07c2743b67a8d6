"""Writes: producing an export is recorded (it reveals every tenant's limits and the edge set-up)."""

from __future__ import annotations

import hashlib

from django.db import transaction

from apps.audit.services import record_event

from . import exports


@transaction.atomic
def export_artifact(*, actor, kind: str, options: exports.ExportOptions | None = None, request=None) -> exports.Artifact:
    """Build the artifact of `kind` (KeyError for an unknown kind) and audit who took it."""
    artifact = exports.build(kind, options)
    record_event(
        action="integrations.export.generated", tenant_id=None, actor=actor, resource_type="gateway_export",
        resource_id=kind, request=request,
        metadata={"kind": kind, "filename": artifact.filename, "bytes": len(artifact.content),
                  "sha256": hashlib.sha256(artifact.content).hexdigest()},
    )
    return artifact
