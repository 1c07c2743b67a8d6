"""Log-spaced latency histograms with a bounded relative error, merged to compute percentiles.

Bucket i holds latencies in [RATIO**i, RATIO**(i+1)) milliseconds (anything under 1 ms goes to
bucket 0). A percentile is reported as the harmonic mean of its bucket's bounds, which is within
(RATIO - 1) / (RATIO + 1) of every value in the bucket: with RATIO = 1.02 that is at most 0.990 %
relative error against the exact nearest-rank percentile of the raw latencies. Buckets 0..1000
cover 1 ms to about 6.9 minutes; slower requests are clamped to the last bucket.

Rollup rows store a histogram sparsely, as two int arrays (bucket indexes, counts), so a minute
with five requests costs five pairs, not a thousand counters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

RATIO = 1.02
MAX_BUCKET = 1000
RELATIVE_ERROR = (RATIO - 1) / (RATIO + 1)
_LOG_RATIO = math.log(RATIO)

# The same bucket function in SQL, for rollups computed inside Postgres.
SQL_BUCKET = f"LEAST({MAX_BUCKET}, FLOOR(LN(GREATEST(latency_ms, 1.0)) / LN({RATIO})))::smallint"


def bucket_of(latency_ms: float) -> int:
    if latency_ms <= 1.0:
        return 0
    return min(MAX_BUCKET, int(math.floor(math.log(latency_ms) / _LOG_RATIO)))


def bucket_value(index: int) -> float:
    """The value reported for a bucket: the harmonic mean of its bounds (equal relative error
    towards either bound)."""
    lower = RATIO**index
    upper = lower * RATIO
    return 2 * lower * upper / (lower + upper)


def build(latencies: Iterable[float]) -> dict[int, int]:
    hist: dict[int, int] = {}
    for value in latencies:
        index = bucket_of(value)
        hist[index] = hist.get(index, 0) + 1
    return hist


def merge_into(total: dict[int, int], buckets: Iterable[int], counts: Iterable[int]) -> dict[int, int]:
    for index, count in zip(buckets, counts, strict=False):
        total[index] = total.get(index, 0) + count
    return total


def percentiles(hist: dict[int, int], points: Iterable[float]) -> dict[float, float | None]:
    """Nearest-rank percentiles (the value at rank ceil(p/100 * n)) of a merged histogram."""
    points = sorted(points)
    n = sum(hist.values())
    if n == 0:
        return dict.fromkeys(points)
    ranks = [(p, max(1, math.ceil(p / 100 * n))) for p in points]
    out: dict[float, float | None] = {}
    seen = 0
    pending = list(ranks)
    for index in sorted(hist):
        seen += hist[index]
        while pending and pending[0][1] <= seen:
            out[pending.pop(0)[0]] = bucket_value(index)
        if not pending:
            break
    return out


def exact_percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile of raw values, the definition the histogram approximates."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]
