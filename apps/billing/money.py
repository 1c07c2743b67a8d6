"""Money rules in one place: periods (UTC calendar months), and the one rounding step.

Each usage record's cost is stored with 8 decimal places (priced by the gateway at request time).
Billing sums those costs at full precision and rounds ONCE, to the cent with ROUND_HALF_UP, at
the invoice line (one line per model and department, or one SLA credit). An invoice's subtotal is
the sum of its rounded usage lines and its total is subtotal - credits. Postgres' round(numeric, 2)
rounds half away from zero, which for these non-negative sums is the same ROUND_HALF_UP, so
reconciliation can recompute the same figure in SQL independently.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ROUNDING = ROUND_HALF_UP
ZERO = Decimal("0")
_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


def to_cents(amount) -> Decimal:
    """The one rounding step (see the module docstring)."""
    return Decimal(amount or 0).quantize(CENT, rounding=ROUNDING)


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def add_months(start: datetime, months: int) -> datetime:
    index = start.year * 12 + (start.month - 1) + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def parse_period(value: str) -> datetime:
    """'2026-10' -> the first instant of that UTC month; ValueError with a clear message otherwise."""
    match = _PERIOD.match((value or "").strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError("Give the period as YYYY-MM, e.g. 2026-10.")
    return datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=UTC)


def period_label(start: datetime) -> str:
    return f"{start.year:04d}-{start.month:02d}"


def budget_period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The current [start, end) of a budget period ("day" or "month"), UTC."""
    now = now.astimezone(UTC)
    if period == "day":
        start = datetime(now.year, now.month, now.day, tzinfo=UTC)
        return start, start + timedelta(days=1)
    start = month_start(now)
    return start, add_months(start, 1)


MAX_RANGE_DAYS = 366


def resolve_range(*, period: str | None = None, start: str | None = None, end: str | None = None,
                  now: datetime) -> tuple[datetime, datetime]:
    """A report's [start, end): a month ("2026-10", default this month) or explicit dates
    (YYYY-MM-DD, end exclusive, at most a year apart). ValueError(field, message) when bad."""
    if start or end:
        try:
            lo = datetime.strptime(start or "", "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise ValueError("start", "A date as YYYY-MM-DD.") from None
        try:
            hi = datetime.strptime(end or "", "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise ValueError("end", "A date as YYYY-MM-DD (exclusive).") from None
        if hi <= lo:
            raise ValueError("end", "Must be after start.")
        if hi - lo > timedelta(days=MAX_RANGE_DAYS):
            raise ValueError("end", f"At most {MAX_RANGE_DAYS} days after start.")
        return lo, hi
    if period:
        try:
            lo = parse_period(period)
        except ValueError as exc:
            raise ValueError("period", str(exc)) from None
    else:
        lo = month_start(now)
    return lo, add_months(lo, 1)
