"""Cost of a request from the model's price in force at the request's moment (Decimal, never float).

The price table is small, so each process keeps all of it in memory and reloads it every few
seconds off the event loop; an unpriced model gets no cost (NULL and flagged), never a guess.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from asgiref.sync import sync_to_async

logger = logging.getLogger(__name__)

RELOAD_SECONDS = 10.0
THOUSAND = Decimal(1000)
COST_QUANTUM = Decimal("0.00000001")


@dataclass(frozen=True)
class Price:
    effective_from: datetime
    input_per_1k: Decimal
    output_per_1k: Decimal
    currency: str


class PriceBook:
    def __init__(self, rows: list[Price] | None = None, by_model: dict | None = None):
        self.by_model: dict[str, tuple[list[float], list[Price]]] = by_model or {}
        self.loaded_at = time.monotonic()

    @classmethod
    def load(cls) -> PriceBook:
        from .models import ModelPrice

        grouped: dict[str, list[Price]] = {}
        for row in ModelPrice.objects.order_by("model", "effective_from").values_list(
            "model", "effective_from", "input_per_1k", "output_per_1k", "currency"
        ):
            grouped.setdefault(row[0], []).append(Price(row[1], row[2], row[3], row[4]))
        return cls(by_model={m: ([p.effective_from.timestamp() for p in ps], ps) for m, ps in grouped.items()})

    def price_at(self, model: str, moment: datetime) -> Price | None:
        entry = self.by_model.get(model)
        if entry is None:
            return None
        stamps, prices = entry
        index = bisect.bisect_right(stamps, moment.timestamp()) - 1
        return prices[index] if index >= 0 else None


def cost_of(price: Price | None, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    if price is None:
        return None
    cost = (price.input_per_1k * prompt_tokens + price.output_per_1k * completion_tokens) / THOUSAND
    return cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


_book: PriceBook | None = None
_reloading: asyncio.Task | None = None
# A change to the price table bumps a version counter in Redis; each process looks at it at most
# every VERSION_CHECK_SECONDS, so a new price reaches every process within about a second
# instead of waiting for the next periodic reload.
VERSION_CHECK_SECONDS = 0.5
_version: bytes | None = None
_version_checked_at = 0.0


def _version_key() -> str:
    from apps.core.redis import key

    return key("gw", "prices", "version")


def price_book_changed() -> None:
    """Called after a committed price change: every process reloads its book."""
    from apps.core.redis import get_redis

    forget_prices()
    try:
        get_redis().incr(_version_key())
    except Exception:  # Redis down: the others reload within RELOAD_SECONDS anyway
        logger.warning("could not announce a price change; other processes reload on their schedule")


async def _version_changed() -> bool:
    global _version, _version_checked_at
    now = time.monotonic()
    if now - _version_checked_at < VERSION_CHECK_SECONDS:
        return False
    _version_checked_at = now
    from apps.core.redis import get_async_redis

    try:
        version = await get_async_redis().get(_version_key())
    except Exception:
        return False
    changed = _version is not None and version != _version
    _version = version
    return changed


async def current_book() -> PriceBook:
    """The price book, reloaded every RELOAD_SECONDS by one request while the others keep using
    the previous book (a burst must not queue a thousand identical queries). After a price
    change, requests wait for the new book so none is priced from a withdrawn row."""
    global _book, _reloading
    book = _book
    if book is not None and await _version_changed():
        _book = book = None
    if book is not None and time.monotonic() - book.loaded_at <= RELOAD_SECONDS:
        return book
    if _reloading is None or _reloading.done() or _reloading.get_loop() is not asyncio.get_running_loop():
        _reloading = asyncio.ensure_future(_reload())
    if book is not None:
        return book
    return await asyncio.shield(_reloading)


async def _reload() -> PriceBook:
    global _book
    try:
        _book = await sync_to_async(PriceBook.load, thread_sensitive=False)()
    except Exception:
        if _book is None:
            raise
        _book.loaded_at = time.monotonic()  # keep serving the last prices; retry after the interval
        logger.exception("price book reload failed; keeping the previous prices")
    return _book


def price_at(model: str, moment: datetime) -> Price | None:
    """Synchronous lookup straight from Postgres (services, reports, tests)."""
    return PriceBook.load().price_at(model, moment)


def forget_prices() -> None:
    global _book
    _book = None
