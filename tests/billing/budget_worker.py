"""A spawned OS process that reserves budget through the real admission script (kept apart from
the test module, whose imports need Django set up first)."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal


def spend_worker(prefix: str, tenant_id: str, attempts: int, ready, go, out) -> None:
    """A separate OS process reserving budget as fast as it can."""
    os.environ["SWITCHYARD_REDIS_PREFIX"] = prefix
    import django

    django.setup()
    from apps.gateway import quotas as q

    async def hammer():
        await q.usage(tenant_id="warm-up")
        ready.put(os.getpid())
        while not go.is_set():
            await asyncio.sleep(0.005)
        sem = asyncio.Semaphore(25)

        async def one(i):
            async with sem:
                return await q.admit(
                    tenant_id=tenant_id, tenant_limits=q.QuotaLimits(), estimated_tokens=1,
                    request_id=f"{os.getpid()}-{i}", budget_scopes=[("tenant", tenant_id), ("project", "3")],
                    estimated_cost_units=q.to_budget_units(Decimal("0.01")))

        results = await asyncio.gather(*(one(i) for i in range(attempts)))
        return sum(1 for r in results if r.allowed)

    out.put(asyncio.run(hammer()))
