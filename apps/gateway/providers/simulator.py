"""Our upstream simulator (bench/simulator.py): the OpenAI-compatible adapter pointed at its root URL.

`base_url` is the simulator's root (http://127.0.0.1:9100); /v1 is added here. Unlike a real vendor, the
simulator is told which tenant a call is for, so tests and demos can see where traffic went.
"""

from __future__ import annotations

from .base import ChatRequest, ProbeResult
from .http import api_root, join_url, probe_get
from .openai_compat import OpenAICompatibleProvider
from .registry import register


class SimulatorProvider(OpenAICompatibleProvider):
    kind = "simulator"
    label = "Simulator"
    chat_path = "/v1/chat/completions"
    models_path = "/v1/models"

    def url(self, deployment, path: str) -> str:
        return join_url(api_root(deployment.base_url), path)

    def headers(self, deployment, request: ChatRequest | None = None) -> dict[str, str]:
        headers = super().headers(deployment, request)
        if request is not None and request.tenant_id:
            headers["X-Switchyard-Tenant"] = request.tenant_id
        headers["X-Switchyard-Deployment"] = str(deployment.id)
        return headers

    def probe_request(self, deployment) -> tuple[str, dict[str, str]]:
        return self.url(deployment, "/health"), {}

    async def probe(self, deployment) -> ProbeResult:
        url, headers = self.probe_request(deployment)
        return await probe_get(self.label, deployment, url, headers=headers, healthy="healthy")


register(SimulatorProvider())
