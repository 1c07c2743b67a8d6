"""Parallel writers in separate processes leave one linear chain per tenant."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from apps.audit.models import AuditEvent
from apps.audit.verify import verify_chain

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import os, sys, django
os.environ["DJANGO_SETTINGS_MODULE"] = "console.settings"
django.setup()
from apps.audit.services import record_event, record_events_bulk
n = int(sys.argv[1]); worker = sys.argv[2]
for i in range(n):
    if i % 10 == 9:
        record_events_bulk([{"action": "bulk.write", "tenant_id": "shared", "metadata": {"w": worker, "i": i, "k": k}} for k in range(5)])
    else:
        record_event(action="parallel.write", tenant_id="shared", metadata={"w": worker, "i": i})
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_eight_writer_processes_leave_one_linear_chain():
    settings_db = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{settings_db['USER']}@{settings_db['HOST']}:{settings_db['PORT']}/{settings_db['NAME']}"
    env.pop("PYTEST_CURRENT_TEST", None)
    per_writer = 60
    processes = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(per_writer), f"w{n}"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for n in range(8)
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()[-2000:]
    expected = 8 * (per_writer - per_writer // 10 + 5 * (per_writer // 10))
    seqs = list(AuditEvent.objects.filter(tenant_id="shared").order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, expected + 1))
    report = verify_chain("shared")
    assert report.ok, report.errors[:3]
    assert report.valid_events == expected
