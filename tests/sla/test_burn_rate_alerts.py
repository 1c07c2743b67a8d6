"""Burn-rate alerts on synthetic request streams: the Workbook's multiwindow rules page on a
sustained burn, ignore a short blip, and resolve on recovery, each transition sent once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from apps.sla import alerts, compliance, services
from apps.sla.models import AlertEvent, AlertState
from apps.sla.rollups import rollup_range

from .conftest import stream

PER_MINUTE = 200


def evaluate_minutes(tenant, start, first: int, last: int):
    """Run the minute evaluation as the beat would, once per simulated minute."""
    for minute in range(first, last + 1):
        services.evaluate_tenant(tenant=tenant, now=start + timedelta(minutes=minute, seconds=30))


def fired(tenant, rule, kind="firing"):
    return list(AlertEvent.objects.filter(tenant=tenant, rule=rule, kind=kind).order_by("created_at"))


def test_the_rules_are_the_workbooks_multiwindow_rules():
    table = [(r.name, r.long, r.short, r.factor) for r in alerts.BURN_RULES]
    assert table == [
        ("burn_fast", timedelta(hours=1), timedelta(minutes=5), 14.4),
        ("burn_slow", timedelta(hours=6), timedelta(minutes=30), 6.0),
        ("burn_ticket", timedelta(days=3), timedelta(hours=6), 1.0),
    ]


def test_a_sustained_burn_of_two_percent_of_the_budget_in_an_hour_pages_once(personas, usage_writer, base_time):
    tenant = personas.tenant_a  # pro tier: 99.9 % availability, so the budget is 0.1 % of requests
    # 1.5 % failing is a burn rate of 15: slightly more than 2 % of the 30-day budget per hour (14.4).
    usage_writer(stream(tenant_id=tenant.pk, start=base_time, minutes=60, per_minute=PER_MINUTE, error_ratio=0.015))
    rollup_range(start=base_time, end=base_time + timedelta(minutes=60))

    evaluate_minutes(tenant, base_time, 0, 59)

    pages = fired(tenant, "burn_fast")
    assert len(pages) == 1
    assert pages[0].severity == "critical"
    assert pages[0].values["long"] > 14.4 and pages[0].values["short"] > 14.4
    assert AlertState.objects.get(tenant=tenant, rule="burn_fast").state == AlertState.FIRING


def test_a_five_minute_blip_alone_does_not_page(personas, usage_writer, base_time):
    tenant = personas.tenant_a
    # An hour of clean traffic before, then minutes 30..34 of the next hour fail at 8 %: a burn
    # rate of 80 over five minutes, around the minute evaluations.
    blip_start = base_time + timedelta(minutes=30)
    clean = [r for r in stream(tenant_id=tenant.pk, start=base_time - timedelta(hours=1), minutes=120, per_minute=PER_MINUTE)
             if not blip_start <= r["created_at"] < blip_start + timedelta(minutes=5)]
    blip = stream(tenant_id=tenant.pk, start=blip_start, minutes=5, per_minute=PER_MINUTE, error_ratio=0.08, seed=9)
    usage_writer(clean + blip)
    rollup_range(start=base_time - timedelta(hours=1), end=base_time + timedelta(minutes=60))

    evaluate_minutes(tenant, base_time, 25, 59)

    assert fired(tenant, "burn_fast") == []
    assert fired(tenant, "burn_slow") == []
    # The short window did see the blip: the long window is what kept it from paging.
    at_blip_end = base_time + timedelta(minutes=34, seconds=30)
    counts = compliance.failure_counts(tenant_ids=[tenant.pk], now=at_blip_end, windows=alerts.windows())[tenant.pk]
    decision = alerts.burn_decisions(counts, "99.9")["burn_fast"]
    assert decision["short"] > 14.4 > decision["long"]
    assert AlertState.objects.get(tenant=tenant, rule="burn_fast").state == AlertState.OK


def test_recovery_resolves_the_page_and_each_transition_is_sent_once(personas, usage_writer, base_time, receiver,
                                                                     eager_celery, django_capture_on_commit_callbacks):
    from apps.core.notifications import create_channel

    tenant = personas.tenant_a
    create_channel(tenant_id=tenant.pk, kind="webhook", name="pager", target=receiver.url())
    usage_writer(stream(tenant_id=tenant.pk, start=base_time, minutes=60, per_minute=PER_MINUTE, error_ratio=0.015))
    usage_writer(stream(tenant_id=tenant.pk, start=base_time + timedelta(minutes=60), minutes=20, per_minute=PER_MINUTE,
                        seed=3))
    rollup_range(start=base_time, end=base_time + timedelta(minutes=80))

    with django_capture_on_commit_callbacks(execute=True):
        evaluate_minutes(tenant, base_time, 0, 79)

    pages, recoveries = fired(tenant, "burn_fast"), fired(tenant, "burn_fast", "resolved")
    assert len(pages) == 1 and len(recoveries) == 1
    assert recoveries[0].created_at > pages[0].created_at
    # Recovery comes once the 5-minute window is clean again: a few minutes after the burn stops.
    assert recoveries[0].created_at <= base_time + timedelta(minutes=60 + 6)
    assert AlertState.objects.get(tenant=tenant, rule="burn_fast").state == AlertState.OK

    bodies = [json.loads(r["body"]) for r in receiver.requests]
    fast = [b for b in bodies if "2% in 1 hour" in b["title"]]
    assert [("firing" in b["title"], "resolved" in b["title"]) for b in fast] == [(True, False), (False, True)]
    assert fast[0]["severity"] == "critical" and fast[0]["event"] == "sla.violation"
    assert fast[0]["link"].endswith(f"/sla/{tenant.pk}/")


@pytest.mark.parametrize("ratio,expected", [(0.0, False), (0.005, False), (0.03, True)])
def test_burn_decisions_need_both_windows_above_the_factor(ratio, expected):
    counts = {name: (0, 1000) for name in alerts.windows()}
    counts["burn_fast_long"] = (int(ratio * 1000), 1000)
    counts["burn_fast_short"] = (int(ratio * 1000), 1000)
    assert alerts.burn_decisions(counts, "99.9")["burn_fast"]["firing"] is expected
    counts["burn_fast_short"] = (0, 1000)
    assert alerts.burn_decisions(counts, "99.9")["burn_fast"]["firing"] is False
