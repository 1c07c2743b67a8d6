"""Monthly partitions of the usage log: created ahead, on demand, and dropped for retention."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from django.db import connection

TABLE = "gateway_usagerecord"
_NAME = re.compile(rf"^{TABLE}_y(\d{{4}})m(\d{{2}})$")


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def add_months(start: datetime, months: int) -> datetime:
    index = start.year * 12 + (start.month - 1) + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(start: datetime) -> str:
    return f"{TABLE}_y{start.year:04d}m{start.month:02d}"


def partition_sql(start: datetime) -> str:
    end = add_months(start, 1)
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(start)} PARTITION OF {TABLE} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )


def ensure_partitions_sql(*, months_back: int = 0, months_ahead: int = 2, now: datetime | None = None) -> list[str]:
    base = month_start(now or datetime.now(UTC))
    return [partition_sql(add_months(base, offset)) for offset in range(-months_back, months_ahead + 1)]


def ensure_partitions(*, months_back: int = 0, months_ahead: int = 2, now: datetime | None = None) -> list[str]:
    """Create the partitions from `months_back` to `months_ahead` around now; returns their names."""
    statements = ensure_partitions_sql(months_back=months_back, months_ahead=months_ahead, now=now)
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    base = month_start(now or datetime.now(UTC))
    return [partition_name(add_months(base, o)) for o in range(-months_back, months_ahead + 1)]


def ensure_partition_for(moments) -> None:
    """Create the partitions these timestamps fall in (a record from a clock at a month edge)."""
    starts = {month_start(m) for m in moments}
    with connection.cursor() as cursor:
        for start in sorted(starts):
            cursor.execute(partition_sql(start))


def existing_partitions() -> list[tuple[str, datetime]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
            [TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    out = []
    for name in names:
        match = _NAME.match(name)
        if match:
            out.append((name, datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=UTC)))
    return sorted(out, key=lambda item: item[1])


def drop_partitions_before(cutoff: datetime) -> list[str]:
    """Drop every partition whose whole month ends on or before `cutoff` (no mass DELETE)."""
    dropped = []
    with connection.cursor() as cursor:
        for name, start in existing_partitions():
            if add_months(start, 1) <= cutoff:
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
                dropped.append(name)
    return dropped
