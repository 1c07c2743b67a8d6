"""Rotation end to end: rotate, re-encrypt in a process killed with SIGKILL mid-way, rerun,
retire; scheduled rotation; the management command."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from apps.keys import services
from apps.keys.models import DataKey, JobStatus, KeyState, ReencryptionJob
from apps.keys.selectors import version_row_counts, versions_with_usage

from .sample_models import PlatformSecret, SampleSecret

ROOT = Path(settings.BASE_DIR)


def seed(tenant_id, count, prefix="secret"):
    rows = [SampleSecret(tenant_id=tenant_id, label=str(i), secret=f"{prefix}-{tenant_id}-{i}",
                         details={"n": i, "who": f"{prefix}-{i}"}) for i in range(count)]
    SampleSecret.objects.bulk_create(rows, batch_size=500)
    return {str(row.pk): i for i, row in enumerate(rows)}


def assert_all_readable(tenant_id, expected, prefix="secret"):
    for row in SampleSecret.objects.filter(tenant_id=tenant_id):
        i = expected[str(row.pk)]
        assert row.secret == f"{prefix}-{tenant_id}-{i}"
        assert row.details == {"n": i, "who": f"{prefix}-{i}"}


def raw_tokens(tenant_id):
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret, details FROM keys_test_sample_secret WHERE tenant_id = %s", [tenant_id])
        return [token for row in cursor.fetchall() for token in row]


def command_env():
    env = dict(os.environ)
    db = connection.settings_dict
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["SWITCHYARD_LOG_LEVEL"] = "DEBUG"
    env.pop("DATABASE_TEST_NAME", None)
    return env


def start_command(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.keys.reencrypt_subprocess", *args],
        cwd=ROOT, env=command_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_rotation_survives_a_reencryption_killed_mid_way_and_a_rerun_retires_the_old_version():
    rows = 1500
    acme = seed("acme", rows)
    globex = seed("globex", 40)
    globex_before = sorted(raw_tokens("globex"))
    assert version_row_counts("acme") == {1: 2 * rows}

    new = services.rotate_tenant_key(tenant_id="acme", reason="test", enqueue_reencrypt=False)
    assert new.version == 2
    assert DataKey.objects.get(tenant_id="acme", version=1).state == KeyState.DECRYPT_ONLY

    process = start_command("--tenant", "acme", "--no-rotate", "--reencrypt", "--batch-size", "20", "--pause", "0.02",
                            "--verbosity", "2")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = ReencryptionJob.objects.filter(tenant_id="acme").first()
        if job and job.rows_reencrypted >= 400:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    out, err = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL

    job = ReencryptionJob.objects.get(tenant_id="acme")
    assert job.status == JobStatus.RUNNING
    assert 400 <= job.rows_reencrypted < 2 * rows
    counts = version_row_counts("acme")
    # Whatever the kill interrupted rolled back with its batch: every row is on exactly one
    # version, and the job's count matches the rows it moved.
    assert counts[1] + counts[2] == 2 * rows
    assert counts[2] == job.rows_reencrypted
    assert DataKey.objects.get(tenant_id="acme", version=1).state == KeyState.DECRYPT_ONLY
    assert_all_readable("acme", acme)

    call_command("rotate_keys", "--tenant", "acme", "--no-rotate", "--reencrypt", "--batch-size", "200")

    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.runs == 2
    assert job.rows_reencrypted == 2 * rows  # nothing moved twice
    assert job.rows_failed == 0
    assert version_row_counts("acme") == {2: 2 * rows}
    assert all(token.startswith("sy1:2:") for token in raw_tokens("acme"))
    assert_all_readable("acme", acme)  # a double-wrapped value would read back as a token
    assert DataKey.objects.get(tenant_id="acme", version=1).state == KeyState.RETIRED
    assert DataKey.objects.get(tenant_id="acme", version=2).state == KeyState.PRIMARY

    assert sorted(raw_tokens("globex")) == globex_before
    assert_all_readable("globex", globex)
    for secret in ("secret-acme-", "secret-globex-"):
        assert secret not in out and secret not in err


@pytest.mark.django_db(transaction=True)
def test_running_the_job_again_after_it_finished_changes_nothing():
    seed("acme", 30)
    services.rotate_tenant_key(tenant_id="acme", enqueue_reencrypt=False)
    first = services.reencrypt_tenant(tenant_id="acme", batch_size=7)
    tokens = sorted(raw_tokens("acme"))
    second = services.reencrypt_tenant(tenant_id="acme", batch_size=7)
    assert first.rows_reencrypted == 60
    assert second.pk != first.pk and second.rows_reencrypted == 0
    assert sorted(raw_tokens("acme")) == tokens


@pytest.mark.django_db(transaction=True)
def test_a_rotation_during_a_job_restarts_it_on_the_newest_version():
    acme = seed("acme", 50)
    services.rotate_tenant_key(tenant_id="acme", enqueue_reencrypt=False)
    rotated = []

    def rotate_once(job):
        if not rotated:
            rotated.append(services.rotate_tenant_key(tenant_id="acme", enqueue_reencrypt=False))

    job = services.reencrypt_tenant(tenant_id="acme", batch_size=10, progress=rotate_once)
    assert job.status == JobStatus.COMPLETED and job.target_version == 3
    assert version_row_counts("acme") == {3: 100}
    assert list(DataKey.objects.filter(tenant_id="acme").order_by("version").values_list("state", flat=True)) == [
        KeyState.RETIRED, KeyState.RETIRED, KeyState.PRIMARY]
    assert_all_readable("acme", acme)


@pytest.mark.django_db
def test_a_version_still_protecting_an_unreadable_row_is_not_retired():
    seed("acme", 3)
    broken = SampleSecret.objects.create(tenant_id="acme", secret="will be damaged")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE keys_test_sample_secret SET secret = secret || 'AA' WHERE id = %s", [broken.pk])
    services.rotate_tenant_key(tenant_id="acme", enqueue_reencrypt=False)
    job = services.reencrypt_tenant(tenant_id="acme")
    assert job.rows_failed == 1
    assert version_row_counts("acme") == {1: 1, 2: 6}
    assert DataKey.objects.get(tenant_id="acme", version=1).state == KeyState.DECRYPT_ONLY


@pytest.mark.django_db
def test_platform_rows_are_reencrypted_with_the_platform_keyring():
    row = PlatformSecret.objects.create(secret="upstream api key")
    orphan = SampleSecret.objects.create(tenant_id=None, secret="no tenant")
    services.rotate_tenant_key(tenant_id=None, enqueue_reencrypt=False)
    job = services.reencrypt_tenant(tenant_id=None)
    assert job.rows_reencrypted == 2
    assert version_row_counts(None) == {2: 2}
    assert PlatformSecret.objects.get(pk=row.pk).secret == "upstream api key"
    assert SampleSecret.objects.get(pk=orphan.pk).secret == "no tenant"


@pytest.mark.django_db
def test_keys_past_their_tenants_rotation_period_rotate_and_others_do_not(personas):
    services.ensure_tenant_keyring(tenant_id="tenant-a")
    services.ensure_tenant_keyring(tenant_id="tenant-b")
    personas.tenant_a.key_rotation_days = 30
    personas.tenant_a.save()
    DataKey.objects.filter(tenant_id__in=["tenant-a", "tenant-b"]).update(created_at=timezone.now() - timedelta(days=45))

    assert services.rotate_due_keys() == ["tenant-a"]
    assert DataKey.objects.get(tenant_id="tenant-a", state=KeyState.PRIMARY).version == 2
    assert DataKey.objects.get(tenant_id="tenant-b", state=KeyState.PRIMARY).version == 1
    assert services.rotate_due_keys() == []
    later = timezone.now() + timedelta(days=46)
    assert sorted(services.rotate_due_keys(now=later)) == ["tenant-a", "tenant-b"]


@pytest.mark.django_db
def test_the_command_rotates_a_named_tenant_and_refuses_an_unknown_one(personas, capsys):
    services.ensure_tenant_keyring(tenant_id="tenant-a")
    call_command("rotate_keys", "--tenant", "tenant-a", "--reencrypt")
    assert DataKey.objects.get(tenant_id="tenant-a", state=KeyState.PRIMARY).version == 2
    assert "version 2 is primary" in capsys.readouterr().out
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No such tenant"):
        call_command("rotate_keys", "--tenant", "nope")
    with pytest.raises(CommandError):
        call_command("rotate_keys")


@pytest.mark.django_db
def test_the_console_listing_shows_age_state_and_rows_per_version():
    seed("acme", 4)
    services.rotate_tenant_key(tenant_id="acme", enqueue_reencrypt=False)
    SampleSecret.objects.create(tenant_id="acme", secret="new")
    listing = {row.version: row for row in versions_with_usage("acme")}
    assert listing[2].state == KeyState.PRIMARY and listing[2].rows == 1
    assert listing[1].state == KeyState.DECRYPT_ONLY and listing[1].rows == 8
    assert listing[1].age_days == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_two_reencryption_processes_at_once_move_every_row_exactly_once():
    rows = 600
    acme = seed("acme", rows)
    services.rotate_tenant_key(tenant_id="acme", enqueue_reencrypt=False)
    args = ("--tenant", "acme", "--no-rotate", "--reencrypt", "--batch-size", "15", "--pause", "0.01")
    processes = [start_command(*args) for _ in range(2)]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    job = ReencryptionJob.objects.get(tenant_id="acme")
    assert job.status == JobStatus.COMPLETED and job.runs == 2
    assert job.rows_reencrypted == 2 * rows
    assert version_row_counts("acme") == {2: 2 * rows}
    assert_all_readable("acme", acme)
    assert DataKey.objects.get(tenant_id="acme", version=1).state == KeyState.RETIRED


def test_the_daily_beat_entry_runs_the_registered_rotation_task():
    from console.celery import app

    app.loader.import_default_modules()
    task, seconds = settings.SWITCHYARD_BEAT["keys-rotation-check"]
    assert task == "apps.keys.tasks.rotate_due_keys" and seconds == 86400
    assert task in app.tasks and "apps.keys.tasks.reencrypt_tenant_rows" in app.tasks


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_rotation_from_the_api_is_re_encrypted_by_a_real_celery_worker(personas, api_for, redis_client):
    acme = seed("tenant-a", 50)
    worker = subprocess.Popen([sys.executable, "-m", "tests.keys.celery_worker"], cwd=ROOT, env=command_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        response = api_for(personas.a_admin).post("/api/v1/tenants/tenant-a/keys/rotate/", {"reason": "e2e"},
                                                  format="json")
        assert response.status_code == 201
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = ReencryptionJob.objects.filter(tenant_id="tenant-a", status=JobStatus.COMPLETED).first()
            if job:
                break
            assert worker.poll() is None, worker.communicate()[0]
            time.sleep(0.1)
        assert job is not None, "the worker did not finish the re-encryption in time"
    finally:
        worker.terminate()
        log = worker.communicate(timeout=30)[0]
    assert job.rows_reencrypted == 100
    assert version_row_counts("tenant-a") == {2: 100}
    assert DataKey.objects.get(tenant_id="tenant-a", version=1).state == KeyState.RETIRED
    assert_all_readable("tenant-a", acme)
    assert "reencrypt_tenant_rows" in log
    assert "secret-tenant-a" not in log
