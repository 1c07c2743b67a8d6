"""The least a Python proxy can do, as a baseline for the gateway benchmark: read the JSON body,
forward it on a pooled aiohttp session to the upstream that serves its model (under the upstream's
model name), return the answer. No authentication, quotas, routing, metering or audit. Served by
uvicorn exactly as Switchyard is:

    PASSTHROUGH_UPSTREAMS='{"sim-small": ["http://127.0.0.1:9100", "sim-small"]}' \\
        uvicorn bench.passthrough:application --workers 2
"""

from __future__ import annotations

import json
import os

import aiohttp
import orjson

UPSTREAMS = {model: (url.rstrip("/") + "/v1/chat/completions", upstream_model)
             for model, (url, upstream_model) in json.loads(os.environ.get("PASSTHROUGH_UPSTREAMS", "{}")).items()}
_session: aiohttp.ClientSession | None = None


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    global _session
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4096))
    request = orjson.loads(body)
    upstream, request["model"] = UPSTREAMS[request["model"]]
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk"}
    async with _session.post(upstream, data=orjson.dumps(request), headers=headers) as response:
        data = await response.read()
    await send({"type": "http.response.start", "status": response.status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})
