"""Audit reads: events scoped to who may audit them, search filters, details, compliance reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.postgres.search import SearchQuery
from django.db.models import BooleanField, Count, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from apps.core.roles import tenant_ids_for, user_can

from .models import AuditEvent, Checkpoint, Result

PLATFORM = "platform"  # how the platform chain is named in filters and URLs


def events_for(user):
    """Every event this user may audit: their tenants where their role has "audit"; all for platform admins."""
    return AuditEvent.objects.restrict(user, "audit")


def auditable_tenant_ids(user) -> list[str] | None:
    """Tenants whose audit trail the user may read (None = every tenant and the platform)."""
    if getattr(user, "is_platform_admin", False):
        return None
    return sorted(tenant_ids_for(user, "audit"))


@dataclass
class EventFilters:
    tenant: str | None = None
    user: str | None = None
    action: str | None = None
    resource: str | None = None
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None

    def as_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items() if v not in (None, "")}


def _user_ids(value: str) -> list[int]:
    value = value.strip()
    if value.isdigit():
        return [int(value)]
    return list(get_user_model().objects.filter(email__iexact=value).values_list("pk", flat=True))


def search_events(user, filters: EventFilters, *, text_index: bool = True):
    """The user's auditable events matching the filters, newest first. `text_index=False` states the
    full-text match so the text index cannot serve it: within a short recent window, walking the
    time index is far cheaper than the text index's bitmap of a common word over all time."""
    events = events_for(user)
    if filters.tenant:
        events = events.filter(tenant_id__isnull=True) if filters.tenant == PLATFORM else events.filter(tenant_id=filters.tenant)
    if filters.user:
        # A known user is matched by id alone (an OR with the label would defeat the index);
        # an identifier no user has (a failed sign-in of an unknown email) by the actor label.
        ids = _user_ids(filters.user)
        events = events.filter(user_id__in=ids) if ids else events.filter(actor_label__iexact=filters.user.strip())
    if filters.action:
        action = filters.action.strip()
        if action.endswith(("*", ".")):
            events = events.filter(action__startswith=action.rstrip("*"))
        else:
            events = events.filter(action=action)
    if filters.resource:
        kind, _, ident = filters.resource.strip().partition(":")
        events = events.filter(resource_type=kind)
        if ident:
            events = events.filter(resource_id=ident)
    if filters.result:
        events = events.filter(result=filters.result)
    if filters.since:
        events = events.filter(occurred_at__gte=filters.since)
    if filters.until:
        events = events.filter(occurred_at__lt=filters.until)
    if filters.q and text_index:
        events = events.filter(search=SearchQuery(filters.q, config="simple", search_type="plain"))
    elif filters.q:
        events = events.filter(RawSQL(
            "(audit_event.search || ''::tsvector) @@ plainto_tsquery('simple'::regconfig, %s)", (filters.q,),
            output_field=BooleanField(),
        ))
    return events.order_by("-occurred_at", "-id")


def page_of(events, *, page: int, size: int) -> tuple[list[AuditEvent], bool]:
    """One page without counting the whole result (counting millions of rows would be the slow part)."""
    offset = (page - 1) * size
    rows = list(events.defer("search")[offset:offset + size + 1])
    return rows[:size], len(rows) > size


# Full-text pages look in recent windows first: a common word fills a page from the last day
# (walking the time index), while a rare one falls through to the text index over all time.
FULLTEXT_WINDOWS = (timedelta(days=1), timedelta(days=7))


def search_page(user, filters: EventFilters, *, page: int, size: int) -> tuple[list[AuditEvent], bool]:
    """A page of search_events(). Newest first, so a window that holds the whole page (and one
    more) gives exactly the rows the unbounded query would."""
    if filters.q:
        recent = search_events(user, filters, text_index=False)
        now = timezone.now()
        for window in FULLTEXT_WINDOWS:
            since = now - window
            if filters.since and filters.since >= since:
                break
            rows, has_next = page_of(recent.filter(occurred_at__gte=since), page=page, size=size)
            if has_next:
                return rows, has_next
    return page_of(search_events(user, filters), page=page, size=size)


def may_read_details(user, event: AuditEvent) -> bool:
    if event.tenant_id is None:
        return bool(getattr(user, "is_platform_admin", False))
    return user_can(user, event.tenant_id, "audit")


def details_of(user, event: AuditEvent) -> dict | None:
    """The decrypted details when the user may audit the event's tenant; None otherwise or if empty.
    A ciphertext that cannot be opened (destroyed key, tampering) reads as an explanation."""
    if not event.details or not may_read_details(user, event):
        return None
    from apps.keys import services as key_services
    from apps.keys.errors import DecryptionError

    try:
        raw = key_services.decrypt(
            tenant_id=event.tenant_id, token=event.details, table=AuditEvent._meta.db_table, row=str(event.pk), field="details"
        )
    except DecryptionError as exc:
        return {"_unreadable": str(exc)}
    return json.loads(raw)


# --- Compliance --------------------------------------------------------------------------------


def compliance_report(*, tenant_id: str | None, since: datetime, until: datetime, verify: bool = True) -> dict:
    """Totals, unique users, actions, success rate, retention and encryption, and chain verification
    for one tenant (None: the platform chain) over [since, until)."""
    from django.apps import apps

    from .verify import verify_chain

    events = AuditEvent.objects.filter(occurred_at__gte=since, occurred_at__lt=until)
    events = events.filter(tenant_id=tenant_id) if tenant_id else events.filter(tenant_id__isnull=True)
    totals = events.aggregate(
        total=Count("id"),
        unique_users=Count("user_id", distinct=True),
        successes=Count("id", filter=Q(result=Result.SUCCESS)),
        failures=Count("id", filter=Q(result=Result.FAILURE)),
        denied=Count("id", filter=Q(result=Result.DENIED)),
        with_details=Count("id", filter=Q(details__isnull=False)),
    )
    by_action = list(
        events.values("action").annotate(
            count=Count("id"), successes=Count("id", filter=Q(result=Result.SUCCESS))
        ).order_by("-count", "action")
    )
    for row in by_action:
        row["success_rate"] = round(row["successes"] / row["count"], 4) if row["count"] else None
    tenant = None
    if tenant_id:
        tenant = apps.get_model("tenants", "Tenant").objects.filter(pk=tenant_id).values(
            "name", "retention_days", "encrypt_content", "store_content"
        ).first()
    encryption = _encryption_status(tenant_id)
    encryption["audit_details_encrypted"] = totals["with_details"]
    oldest = AuditEvent.objects.filter(tenant_id=tenant_id).order_by("seq").values("occurred_at").first() if tenant_id else None
    report = {
        "tenant": tenant_id or PLATFORM,
        "tenant_name": tenant["name"] if tenant else "Platform",
        "period": {"since": since.isoformat(), "until": until.isoformat()},
        "total_actions": totals["total"],
        "unique_users": totals["unique_users"],
        "results": {"success": totals["successes"], "failure": totals["failures"], "denied": totals["denied"]},
        "success_rate": round(totals["successes"] / totals["total"], 4) if totals["total"] else None,
        "by_action": by_action,
        "retention": {
            "retention_days": tenant["retention_days"] if tenant else None,
            "oldest_event": oldest["occurred_at"].isoformat() if oldest else None,
            "last_purge": _last_purge(tenant_id),
        },
        "encryption": encryption,
        "checkpoints": Checkpoint.objects.filter(tenant_id=tenant_id).count(),
    }
    if tenant:
        report["encryption"]["content_encryption"] = tenant["encrypt_content"]
        report["encryption"]["stores_content"] = tenant["store_content"]
    if verify:
        chain = verify_chain(tenant_id or "")
        report["chain_verification"] = {
            "ok": chain.ok, "events": chain.events, "valid_events": chain.valid_events,
            "checkpoints": chain.checkpoints, "valid_checkpoints": chain.valid_checkpoints,
            "first_bad_event": chain.first_bad_event, "errors": chain.errors[:5],
        }
    return report


def _last_purge(tenant_id: str | None) -> dict | None:
    event = (
        AuditEvent.objects.filter(tenant_id=tenant_id, action="audit.retention_purge")
        .order_by("-seq").values("occurred_at", "metadata").first()
    )
    if not event:
        return None
    return {"at": event["occurred_at"].isoformat(), "deleted": event["metadata"].get("deleted")}


def _encryption_status(tenant_id: str | None) -> dict:
    """The tenant's data-key state as the keys app reports it (read-only; never key material)."""
    try:
        from apps.keys.models import DataKey, KeyState, keyring_id
    except ImportError:
        return {"keyring": "unavailable"}
    keys = list(DataKey.objects.filter(tenant_id=keyring_id(tenant_id)).order_by("-version").values("version", "state", "created_at"))
    primary = next((k for k in keys if k["state"] == KeyState.PRIMARY), None)
    return {
        "keyring": "active" if primary else ("destroyed" if keys else "none"),
        "primary_version": primary["version"] if primary else None,
        "primary_created_at": primary["created_at"].isoformat() if primary else None,
        "versions": len(keys),
    }
