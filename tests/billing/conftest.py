"""Billing fixtures: usage records written straight into the partitioned usage table, priced by
the gateway's own price book (so a test sees what the gateway would have recorded)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.gateway import partitions, pricing

# The gateway's live-server fixtures (uvicorn + upstream simulators), for end-to-end budget tests.
from tests.gateway.conftest import live_gateway, sim_eu, sim_us, world  # noqa: F401


def add_usage(tenant_id, *, created_at: datetime, model="sim-small", prompt=1000, completion=500, cost=None,
              department_id=None, project_id=None, user_id=None, api_key_id=None, status="success",
              currency=None, priced=True) -> Decimal | None:
    """Insert one usage record; with priced=True its cost comes from ModelPrice at created_at."""
    from django.db import connection

    price = pricing.price_at(model, created_at) if priced and cost is None else None
    if cost is None and price is not None:
        cost = pricing.cost_of(price, prompt, completion)
    currency = currency or (price.currency if price else ("USD" if cost is not None else ""))
    partitions.ensure_partition_for([created_at])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO gateway_usagerecord (request_id, created_at, tenant_id, api_key_id, user_id, department_id, "
            "project_id, model, region_id, endpoint, stream, status, status_code, error_code, prompt_tokens, "
            "completion_tokens, cost, currency, unpriced, latency_ms, attempts, tags) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, '', 'generate', false, %s, 200, '', %s, %s, %s, %s, %s, 10, 1, '{}')",
            [uuid.uuid4().hex, created_at, tenant_id, api_key_id, user_id, department_id, project_id, model, status,
             prompt, completion, cost, currency, cost is None and status == "success", ])
    return cost


def price(model, input_per_1k, output_per_1k, effective_from, currency="USD"):
    from apps.gateway.models import ModelPrice

    pricing.forget_prices()
    return ModelPrice.objects.create(model=model, input_per_1k=Decimal(input_per_1k),
                                     output_per_1k=Decimal(output_per_1k), currency=currency,
                                     effective_from=effective_from)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def org(personas):
    """Tenant A with two departments, a project in each, and two members to attribute usage to."""
    from apps.tenants.models import Department, Project

    eng = Department.objects.create(tenant=personas.tenant_a, name="Engineering", code="eng")
    ops = Department.objects.create(tenant=personas.tenant_a, name="Operations", code="ops")
    search = Project.objects.create(tenant=personas.tenant_a, department=eng, name="Search", code="search")
    infra = Project.objects.create(tenant=personas.tenant_a, department=ops, name="Infra", code="infra")
    return {"eng": eng, "ops": ops, "search": search, "infra": infra, "personas": personas}
