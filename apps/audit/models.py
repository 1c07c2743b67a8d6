"""The append-only audit trail: events chained per tenant, chain heads, signed checkpoints, sink cursors."""

from __future__ import annotations

import uuid

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models.expressions import RawSQL

from apps.core.models import TenantScopedQuerySet

GENESIS_HASH = "0" * 64
PLATFORM_CHAIN = ""  # the chain key of platform events (tenant_id None); no tenant slug is empty


class Result(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"


class ActorType(models.TextChoices):
    USER = "user", "User"
    API_KEY = "api_key", "API key"
    SYSTEM = "system", "System"
    ANONYMOUS = "anonymous", "Anonymous"


class AuditEventQuerySet(TenantScopedQuerySet):
    pass


class AuditEvent(models.Model):
    """One security-relevant action. Never updated; `hash` covers every column but `search`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.CharField(max_length=63, null=True, blank=True, help_text="Empty for platform events.")
    seq = models.BigIntegerField(help_text="Position in the tenant's chain, from 1.")
    occurred_at = models.DateTimeField()
    actor_type = models.CharField(max_length=20, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=100)
    resource_type = models.CharField(max_length=100, blank=True)
    resource_id = models.CharField(max_length=200, blank=True)
    result = models.CharField(max_length=10, choices=Result.choices, default=Result.SUCCESS)
    ip = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    details = models.TextField(null=True, blank=True, help_text="Ciphertext token (apps.keys) of the details dict.")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    # Full-text over every clear field, metadata's strings and numbers included (never details).
    search = models.GeneratedField(
        expression=RawSQL(
            "to_tsvector('simple'::regconfig, action || ' ' || resource_type || ' ' || resource_id || ' ' || "
            "actor_label || ' ' || user_agent || ' ' || ip || ' ' || result) || "
            "jsonb_to_tsvector('simple'::regconfig, metadata, '[\"string\", \"numeric\"]'::jsonb)",
            [],
        ),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    tenant_field = "tenant_id"
    objects = AuditEventQuerySet.as_manager()

    class Meta:
        db_table = "audit_event"
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "seq"], name="audit_event_one_seq_per_chain", nulls_distinct=False),
        ]
        indexes = [
            models.Index(fields=["tenant_id", "-occurred_at"], name="audit_event_tenant_time"),
            models.Index(fields=["tenant_id", "action", "-occurred_at"], name="audit_event_tenant_action"),
            models.Index(fields=["user_id", "-occurred_at"], name="audit_event_user_time"),
            models.Index(fields=["-occurred_at"], name="audit_event_time"),
            # Failures and denials are few and what an auditor looks for first.
            models.Index(
                fields=["tenant_id", "-occurred_at"], condition=~models.Q(result="success"), name="audit_event_tenant_failed"
            ),
            GinIndex(fields=["search"], name="audit_event_search"),
        ]

    def __str__(self) -> str:
        return f"{self.chain_label} #{self.seq} {self.action}"

    @property
    def chain_label(self) -> str:
        return self.tenant_id or "platform"


class ChainHead(models.Model):
    """The last link of one chain; its row lock serialises appends so the chain never forks."""

    chain = models.CharField(primary_key=True, max_length=63, blank=True)
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    prev_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "audit_chain_head"

    def __str__(self) -> str:
        return f"{self.chain or 'platform'} @ {self.last_seq}"


class CheckpointKind(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    ANCHOR = "anchor", "Retention anchor"


class Checkpoint(models.Model):
    """A signed statement of a chain head; each names the one before, so checkpoints chain too."""

    tenant_id = models.CharField(max_length=63, null=True, blank=True)
    kind = models.CharField(max_length=20, choices=CheckpointKind.choices, default=CheckpointKind.SCHEDULED)
    seq = models.BigIntegerField()
    head_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    previous = models.OneToOneField("self", on_delete=models.PROTECT, null=True, blank=True, related_name="next")
    previous_digest = models.CharField(max_length=64, blank=True)
    key_id = models.CharField(max_length=16)
    signature = models.TextField(help_text="Ed25519 signature (base64) of the canonical payload.")

    tenant_field = "tenant_id"
    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        db_table = "audit_checkpoint"
        ordering = ["tenant_id", "id"]
        indexes = [models.Index(fields=["tenant_id", "-id"], name="audit_checkpoint_chain")]

    def __str__(self) -> str:
        return f"checkpoint {self.tenant_id or 'platform'} @ {self.seq}"


class SinkCursor(models.Model):
    """How far one sink has received one chain. Events are the outbox: a chain's seq commits in
    order (appends hold the head lock), so everything after the cursor is still to deliver."""

    sink = models.CharField(max_length=20)
    chain = models.CharField(max_length=63, blank=True)
    delivered_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "audit_sink_cursor"
        constraints = [models.UniqueConstraint(fields=["sink", "chain"], name="audit_sink_cursor_unique")]

    def __str__(self) -> str:
        return f"{self.sink}:{self.chain or 'platform'} @ {self.delivered_seq}"


class SinkState(models.Model):
    """Retry state of one sink: consecutive failures and when to try again (exponential backoff)."""

    sink = models.CharField(primary_key=True, max_length=20)
    failures = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    delivered_total = models.BigIntegerField(default=0)

    class Meta:
        db_table = "audit_sink_state"

    def __str__(self) -> str:
        return self.sink
