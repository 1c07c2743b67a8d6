"""Resource allocations: refusals name what is left, releases return capacity, no overbooking."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from apps.tenants import services
from apps.tenants.models import ResourceAllocation, ResourcePool


@pytest.fixture
def pool(db):
    return ResourcePool.objects.create(name="p1", cpu_millicores=4000, memory_mib=8192, storage_gib=100, bandwidth_mbps=1000)


def test_allocation_beyond_free_capacity_names_the_resource_and_what_is_left(personas, pool):
    services.allocate_resources(actor=personas.a_admin, tenant=personas.tenant_a, pool=pool, cpu_millicores=3000)
    with pytest.raises(ValidationError) as refused:
        services.allocate_resources(actor=personas.b_admin, tenant=personas.tenant_b, pool=pool, cpu_millicores=1500)
    message = refused.value.message_dict["cpu_millicores"][0]
    assert "CPU" in message and "1500" in message and "only 1000 millicores free" in message


def test_release_returns_capacity(personas, pool):
    allocation = services.allocate_resources(actor=personas.a_admin, tenant=personas.tenant_a, pool=pool, memory_mib=8192)
    assert services.pool_usage(pool).free["memory_mib"] == 0
    services.release_allocation(actor=personas.a_admin, allocation=allocation)
    assert services.pool_usage(pool).free["memory_mib"] == 8192
    with pytest.raises(ValidationError):
        services.release_allocation(actor=personas.a_admin, allocation=allocation)


def test_api_refusal_is_a_400_with_a_field_message(personas, pool, api_for):
    response = api_for(personas.a_admin).post("/api/v1/tenants/tenant-a/allocations/",
                                              {"pool": pool.pk, "storage_gib": 101}, format="json")
    assert response.status_code == 400
    assert "only 100 GiB free" in response.json()["error"]["fields"]["storage_gib"][0]
    negative = api_for(personas.a_admin).post("/api/v1/tenants/tenant-a/allocations/",
                                              {"pool": pool.pk, "storage_gib": -1}, format="json")
    assert negative.status_code == 400


def test_release_through_the_api(personas, pool, api_for):
    api = api_for(personas.a_admin)
    created = api.post("/api/v1/tenants/tenant-a/allocations/", {"pool": pool.pk, "cpu_millicores": 500}, format="json")
    assert created.status_code == 201, created.json()
    released = api.post(f"/api/v1/tenants/tenant-a/allocations/{created.json()['id']}/release/")
    assert released.status_code == 200
    assert released.json()["status"] == "released"
    assert api_for(personas.b_admin).post(f"/api/v1/tenants/tenant-a/allocations/{created.json()['id']}/release/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_parallel_allocations_never_overbook(personas):
    pool = ResourcePool.objects.create(name="race", cpu_millicores=1000, memory_mib=1, storage_gib=1, bandwidth_mbps=1)
    results: list[str] = []
    barrier = threading.Barrier(16)

    def attempt():
        try:
            barrier.wait()
            services.allocate_resources(actor=None, tenant=personas.tenant_a, pool=pool, cpu_millicores=150)
            results.append("ok")
        except ValidationError:
            results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("ok") == 6  # 6 * 150 = 900 <= 1000; a 7th would overbook
    assert results.count("refused") == 10
    total = sum(a.cpu_millicores for a in ResourceAllocation.objects.filter(pool=pool, status="active"))
    assert total == 900
