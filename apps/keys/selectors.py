"""Reads of the keys app: scoped keyrings and versions, and how many rows each version protects."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, F, Func, IntegerField, Value
from django.db.models.functions import Cast
from django.utils import timezone

from .models import DataKey, JobStatus, ReencryptionJob, keyring_id


def data_keys_for(user, action: str = "view"):
    return DataKey.objects.restrict(user, action)


def version_row_counts(tenant_id: str | None) -> dict[int, int]:
    """{version: rows sealed by it} over every encrypted column of the project."""
    from .fields import encrypted_columns

    ring_id = keyring_id(tenant_id)
    counts: Counter[int] = Counter()
    for column in encrypted_columns():
        version = Cast(Func(F(column.attname), Value(":"), Value(2), function="split_part"), IntegerField())
        rows = (column.rows(ring_id).filter(**{f"{column.attname}__startswith": "sy1:"})
                .annotate(key_version=version).values("key_version").annotate(n=Count("pk")).order_by())
        for row in rows:
            counts[row["key_version"]] += row["n"]
    return dict(counts)


@dataclass
class VersionRow:
    version: int
    state: str
    state_label: str
    kek_id: str
    created_at: datetime
    age_days: int
    rows: int
    retired_at: datetime | None
    destroyed_at: datetime | None


def versions_with_usage(tenant_id: str | None) -> list[VersionRow]:
    """Each version of the tenant, newest first, with its age and the rows it still protects."""
    ring_id = keyring_id(tenant_id)
    counts = version_row_counts(tenant_id)
    now = timezone.now()
    return [
        VersionRow(
            version=key.version, state=key.state, state_label=key.get_state_display(), kek_id=key.kek_id,
            created_at=key.created_at, age_days=(now - key.created_at).days, rows=counts.get(key.version, 0),
            retired_at=key.retired_at, destroyed_at=key.destroyed_at,
        )
        for key in DataKey.objects.filter(tenant_id=ring_id).order_by("-version")
    ]


def latest_job(tenant_id: str | None) -> ReencryptionJob | None:
    return ReencryptionJob.objects.filter(tenant_id=keyring_id(tenant_id)).order_by("-started_at").first()


def running_job(tenant_id: str | None) -> ReencryptionJob | None:
    return ReencryptionJob.objects.filter(tenant_id=keyring_id(tenant_id), status=JobStatus.RUNNING).first()
