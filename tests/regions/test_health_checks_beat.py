"""A single active beat: two real `celery beat` processes share one Redis lock; only its holder schedules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from apps.core import beat
from apps.core.redis import get_redis

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LOCK_SECONDS = 3


class BeatProcess:
    def __init__(self, name: str, tmp_path: Path):
        self.log_path = tmp_path / f"beat-{name}.log"
        env = dict(os.environ)
        env.update({
            "SWITCHYARD_REDIS_PREFIX": settings.REDIS_KEY_PREFIX,
            "SWITCHYARD_BEAT_LOCK_SECONDS": str(LOCK_SECONDS),
            "SWITCHYARD_HEALTH_CHECK_SECONDS": "1",
            "PYTHONPATH": str(ROOT),
        })
        env.pop("PYTEST_CURRENT_TEST", None)
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "console", "beat", "-S", "apps.core.beat.LeaderScheduler",
             "--loglevel", "INFO", "--pidfile", ""],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sent(self) -> int:
        return self.text().count("Sending due task")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def leader_pid() -> int | None:
    holder = beat.current_leader()
    return int(holder.split(":")[1]) if holder else None


def wait_for(predicate, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def clean_redis():
    yield
    client = get_redis()
    for name in client.scan_iter(match=settings.REDIS_KEY_PREFIX + "*", count=1000):
        client.delete(name)


def test_a_second_beat_stays_passive_until_the_leaders_lock_expires(tmp_path, clean_redis):
    first = BeatProcess("first", tmp_path)
    second = None
    try:
        wait_for(lambda: leader_pid() == first.proc.pid, 20)
        second = BeatProcess("second", tmp_path)
        wait_for(lambda: "beat: Starting" in second.text(), 20)
        time.sleep(LOCK_SECONDS * 2)
        assert leader_pid() == first.proc.pid
        assert first.sent() > 0
        assert second.sent() == 0, second.text()[-2000:]

        # The leader dies without a goodbye: its lock expires and the standby takes over.
        killed_at = time.monotonic()
        first.stop(signal.SIGKILL)
        took_over_at = wait_for(lambda: leader_pid() == second.proc.pid, LOCK_SECONDS + 5)
        assert took_over_at - killed_at <= LOCK_SECONDS + 1.5
        wait_for(lambda: second.sent() > 0, 10)
        assert "this node is now the active scheduler" in second.text()
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop()


def test_a_beat_stopped_cleanly_hands_over_at_once(tmp_path, clean_redis):
    first = BeatProcess("first", tmp_path)
    try:
        wait_for(lambda: leader_pid() == first.proc.pid, 20)
    finally:
        first.stop()
    assert beat.current_leader() is None
