"""Regions tests keep their Redis keys under a prefix of their own and remove them afterwards."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def own_redis_prefix(settings):
    # Health and routing keys must not be swept by another test process cleaning a shared prefix.
    from apps.core.redis import get_redis

    prefix = f"sytest:regions:{os.getpid()}:"
    settings.REDIS_KEY_PREFIX = prefix
    yield
    client = get_redis()
    for name in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(name)
