"""Cost of a request from the model's price in force at the request's moment (Decimal, never float).

The price table is small, so each process keeps all of it in memory and reloads it every few
seconds off the event loop; an unpriced model gets no cost (NULL and flagged), never a guess.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from asgiref.sync import sync_to_async

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


async def current_book() -> PriceBook:
    global _book
    if _book is None or time.monotonic() - _book.loaded_at > RELOAD_SECONDS:
        _book = await sync_to_async(PriceBook.load, thread_sensitive=False)()
    return _book


def price_at(model: str, moment: datetime) -> Price | None:
    """Synchronous lookup straight from Postgres (services, reports, tests)."""
    return PriceBook.load().price_at(model, moment)


def forget_prices() -> None:
    global _book
    _book = None
