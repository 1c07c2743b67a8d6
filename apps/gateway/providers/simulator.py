"""Our upstream simulator (bench/simulator.py): the OpenAI-compatible adapter pointed at its root URL.

`base_url` is the simulator's root (http://127.0.0.1:9100); /v1 is added here. Unlike a real vendor, the
simulator is told which tenant a call is for, so tests and demos can see where traffic went.
"""

from __future__ import annotations

import time

from .base import ChatRequest, ProbeResult, ProviderError
from .http import call_timeout, get_session, join_url, raise_for_status, translate_errors
from .openai_compat import OpenAICompatibleProvider
from .registry import register


class SimulatorProvider(OpenAICompatibleProvider):
    kind = "simulator"
    label = "Simulator"
    chat_path = "/v1/chat/completions"
    models_path = "/v1/models"

    def url(self, deployment, path: str) -> str:
        base = deployment.base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[:-3]
        return join_url(base, path)

    def headers(self, deployment, request: ChatRequest | None = None) -> dict[str, str]:
        headers = super().headers(deployment, request)
        if request is not None and request.tenant_id:
            headers["X-Switchyard-Tenant"] = request.tenant_id
        headers["X-Switchyard-Deployment"] = str(deployment.id)
        return headers

    async def probe(self, deployment) -> ProbeResult:
        started = time.perf_counter()
        try:
            async with translate_errors(self.label, deployment.timeout_seconds):
                async with get_session().get(
                    self.url(deployment, "/health"), timeout=call_timeout(deployment)
                ) as response:
                    await raise_for_status(response, self.label)
                    await response.read()
        except ProviderError as exc:
            return ProbeResult(ok=False, latency_ms=round((time.perf_counter() - started) * 1000, 2), detail=exc.message)
        return ProbeResult(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2), detail="healthy")


register(SimulatorProvider())
