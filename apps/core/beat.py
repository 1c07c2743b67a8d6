"""A Celery beat scheduler that schedules only while it holds a Redis lock: one active beat per install.

Run a beat on every worker node with `celery -A console beat -S apps.core.beat.LeaderScheduler`. The first to
take the lock (key "<prefix>beat:leader", value "<host>:<pid>:<random>") schedules and renews the lock every
third of SWITCHYARD_BEAT_LOCK_SECONDS; the others stay passive and try again every second, so when the
active node dies its lock expires and another beat takes over within SWITCHYARD_BEAT_LOCK_SECONDS (+1 s). A beat
stopped cleanly releases the lock at once. A leader that fails to renew in time (a long stall, Redis away) stops
scheduling: two beats never send the same tick, and each entry's `expires` drops what a hand-over delayed.
The schedule lives in memory (from settings.SWITCHYARD_BEAT), so no node keeps a schedule file.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from celery.beat import Scheduler
from django.conf import settings
from redis.exceptions import RedisError

from .redis import get_redis, key

logger = logging.getLogger(__name__)

# Take the lock when free, or extend it when it is ours; 1 when we hold it afterwards.
_ACQUIRE_OR_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

PASSIVE_POLL_SECONDS = 1.0


def leader_key() -> str:
    return key("beat", "leader")


def current_leader() -> str | None:
    value = get_redis().get(leader_key())
    return value.decode() if value else None


class LeaderScheduler(Scheduler):
    """The in-memory beat Scheduler, active only while this process holds the leader lock."""

    def __init__(self, *args, **kwargs):
        self.lock_seconds = max(2, int(settings.SWITCHYARD_BEAT_LOCK_SECONDS))
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.is_leader = False
        self._checked_at = 0.0
        super().__init__(*args, **kwargs)
        # Renew well before expiry even when no entry is due for a long time.
        self.max_interval = min(self.max_interval, self.lock_seconds / 3)

    def setup_schedule(self):
        from importlib import import_module

        self.install_default_entries(self.data)
        schedule = self.app.conf.beat_schedule or import_module(settings.SETTINGS_MODULE).beat_schedule(
            settings.SWITCHYARD_BEAT)
        self.merge_inplace(schedule)

    def _hold_lock(self) -> bool:
        try:
            held = bool(get_redis().eval(_ACQUIRE_OR_RENEW, 1, leader_key(), self.token, self.lock_seconds * 1000))
        except RedisError:
            logger.warning("beat lock unreachable; not scheduling until Redis answers")
            held = False
        if held and not self.is_leader:
            logger.info("beat: this node is now the active scheduler", extra={"beat": self.token})
        elif self.is_leader and not held:
            logger.warning("beat: lost the leader lock; standing by", extra={"beat": self.token})
        self.is_leader = held
        self._checked_at = time.monotonic()
        return held

    def tick(self, *args, **kwargs):
        due_check = time.monotonic() - self._checked_at >= (self.lock_seconds / 3 if self.is_leader else PASSIVE_POLL_SECONDS)
        if due_check and not self._hold_lock():
            return PASSIVE_POLL_SECONDS
        if not self.is_leader:
            return PASSIVE_POLL_SECONDS
        return min(super().tick(*args, **kwargs), self.lock_seconds / 3)

    def close(self):
        if self.is_leader:
            try:
                get_redis().eval(_RELEASE, 1, leader_key(), self.token)
            except RedisError:
                pass  # it expires by itself
            self.is_leader = False
        super().close()
