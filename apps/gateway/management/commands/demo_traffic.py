"""Send a gentle stream of requests through the gateway with the demo tenants' API keys, so the
console shows live usage (the keys come from var/demo_api_keys.json, written by seed_demo)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import aiohttp
import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.gateway.services import demo_keys_path

PROMPTS = [
    "Summarise the attached meeting notes in three bullet points.",
    "Draft a polite reply declining the vendor's offer.",
    "Explain the difference between a mutex and a semaphore.",
    "Write a haiku about a freight train at dawn.",
    "List five risks of migrating a billing system on a Friday.",
    "Translate 'the switchyard routes every train' into French.",
]


class Command(BaseCommand):
    help = "Generate demo traffic through the gateway (Ctrl-C to stop)."

    def add_arguments(self, parser):
        parser.add_argument("--url", default=settings.SITE_URL, help="Switchyard base URL (default SITE_URL).")
        parser.add_argument("--rate", type=float, default=3.0, help="Requests per second across all tenants.")
        parser.add_argument("--duration", type=float, default=0, help="Seconds to run (0: until interrupted).")
        parser.add_argument("--stream-share", type=float, default=0.3, help="Share of requests that stream.")

    def handle(self, *args, url, rate, duration, stream_share, **options):
        path = demo_keys_path()
        if not path.exists():
            raise CommandError(f"{path} does not exist: run `manage.py seed_demo` first.")
        keys = orjson.loads(path.read_bytes())
        if not keys:
            raise CommandError(f"{path} holds no keys.")
        if rate <= 0:
            raise CommandError("--rate must be positive.")
        try:
            asyncio.run(self.run(url.rstrip("/"), keys, rate, duration, stream_share))
        except KeyboardInterrupt:
            self.stdout.write("stopped")

    async def run(self, url: str, keys: dict, rate: float, duration: float, stream_share: float) -> None:
        counts: Counter = Counter()
        started = time.monotonic()
        last_report = started
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            models = {tenant: await self.models(session, url, key) for tenant, key in keys.items()}
            self.stdout.write(f"sending ~{rate:g} req/s to {url} for {', '.join(keys)}")
            pending: set[asyncio.Task] = set()
            while not duration or time.monotonic() - started < duration:
                tenant = random.choice(list(keys))
                choices = models.get(tenant) or ["sim-small"]
                task = asyncio.create_task(self.one(session, url, keys[tenant], random.choice(choices),
                                                    random.random() < stream_share, tenant, counts))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.sleep(random.expovariate(rate))
                if time.monotonic() - last_report >= 10:
                    last_report = time.monotonic()
                    self.stdout.write(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self.stdout.write("done: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))

    async def models(self, session, url: str, key: str) -> list[str]:
        try:
            async with session.get(f"{url}/api/v1/models", headers={"Authorization": f"Bearer {key}"}) as response:
                if response.status == 200:
                    return [m["id"] for m in (await response.json())["data"]]
        except aiohttp.ClientError as exc:
            raise CommandError(f"cannot reach {url}: {exc}") from None
        return []

    async def one(self, session, url, key, model, stream, tenant, counts) -> None:
        body = {"model": model, "prompt": random.choice(PROMPTS), "max_tokens": random.choice([32, 64, 128]),
                "stream": stream, "metadata": {"source": "demo_traffic"}}
        try:
            async with session.post(f"{url}/api/v1/generate", json=body,
                                    headers={"Authorization": f"Bearer {key}"}) as response:
                await response.read()
                counts[f"{tenant}:{response.status}"] += 1
        except (TimeoutError, aiohttp.ClientError):
            counts[f"{tenant}:error"] += 1
