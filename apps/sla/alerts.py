"""Alert rules and their per-tenant state machines: multiwindow burn-rate alerts and SLA breaches.

The burn-rate rules are those of the Google SRE Workbook ("Alerting on SLOs", recommendation 6,
multiwindow multi-burn-rate alerts) for a 30-day error budget. A rule fires when the burn rate
is above its factor over BOTH its long and its short window; the short window (1/12 of the long
one) makes the alert stop soon after the burning stops.

| rule         | long window | short window | burn-rate factor | budget spent | severity        |
|--------------|-------------|--------------|------------------|--------------|-----------------|
| burn_fast    | 1 hour      | 5 minutes    | 14.4             | 2 %          | critical (page) |
| burn_slow    | 6 hours     | 30 minutes   | 6                | 5 %          | critical (page) |
| burn_ticket  | 3 days      | 6 hours      | 1                | 10 %         | warning (ticket)|

`breach` fires while any target of the policy window is missed, and resolves when none is.
Each (tenant, rule) has one AlertState row; only a transition (ok -> firing, firing -> ok) writes
an AlertEvent and notifies, so a firing alert is sent once and its recovery once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.urls import reverse

from apps.core.models import NotificationEvent
from apps.core.notifications import notify

from .models import AlertEvent, AlertState


@dataclass(frozen=True)
class BurnRule:
    name: str
    long: timedelta
    short: timedelta
    factor: float
    budget_spent: str
    severity: str


BURN_RULES = [
    BurnRule("burn_fast", timedelta(hours=1), timedelta(minutes=5), 14.4, "2%", "critical"),
    BurnRule("burn_slow", timedelta(hours=6), timedelta(minutes=30), 6.0, "5%", "critical"),
    BurnRule("burn_ticket", timedelta(days=3), timedelta(hours=6), 1.0, "10%", "warning"),
]
BREACH_RULE = "breach"
RULE_LABELS = {r.name: f"Error budget burn ({r.budget_spent} in {_h})" for r, _h in
               zip(BURN_RULES, ["1 hour", "6 hours", "3 days"], strict=True)}
RULE_LABELS[BREACH_RULE] = "SLA breach"


def windows() -> dict[str, timedelta]:
    """Every window a burn rule reads, named for failure_counts()."""
    out = {}
    for rule in BURN_RULES:
        out[f"{rule.name}_long"] = rule.long
        out[f"{rule.name}_short"] = rule.short
    return out


def burn_decisions(counts: dict[str, tuple[int, int]], availability_target) -> dict[str, dict]:
    """{rule: {"firing": bool, "long": burn, "short": burn, "factor": f}} for one tenant."""
    from .compliance import burn_rate

    out = {}
    for rule in BURN_RULES:
        long_burn = burn_rate(*counts[f"{rule.name}_long"], availability_target)
        short_burn = burn_rate(*counts[f"{rule.name}_short"], availability_target)
        out[rule.name] = {
            "firing": long_burn > rule.factor and short_burn > rule.factor,
            "long": round(long_burn, 3), "short": round(short_burn, 3), "factor": rule.factor,
            "long_window": _span(rule.long), "short_window": _span(rule.short), "severity": rule.severity,
        }
    return out


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


def apply(*, tenant_id: str, rule: str, firing: bool, severity: str, now: datetime, values: dict,
          title: str, message: str) -> AlertEvent | None:
    """Advance one rule's state machine; on a transition, record it and notify the tenant's channels.
    Call inside a transaction: the state row is locked so two evaluators cannot both send."""
    state, _ = AlertState.objects.select_for_update().get_or_create(
        tenant_id=tenant_id, rule=rule,
        defaults={"state": AlertState.OK, "since": now, "last_evaluated_at": now},
    )
    was_firing = state.state == AlertState.FIRING
    state.last_evaluated_at = now
    state.last_values = values
    event = None
    if firing != was_firing:
        state.state = AlertState.FIRING if firing else AlertState.OK
        state.since = now
        kind = AlertEvent.FIRING if firing else AlertEvent.RESOLVED
        label = RULE_LABELS.get(rule, rule)
        full_title = f"[{tenant_id}] {label}: {'firing' if firing else 'resolved'}" + (f" — {title}" if title else "")
        link = reverse("sla:tenant-dashboard", args=[tenant_id])
        sent = notify(
            tenant_id=tenant_id, event=NotificationEvent.SLA_VIOLATION, title=full_title, message=message,
            severity=severity if firing else "info", link=link,
            dedup_key=f"sla:{rule}:{kind}:{now:%Y%m%d%H%M}",
        )
        event = AlertEvent.objects.create(
            tenant_id=tenant_id, rule=rule, kind=kind, severity=severity if firing else "info", title=full_title,
            message=message, values=values, channels=sent, created_at=now,
        )
    state.save()
    return event
