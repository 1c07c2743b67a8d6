"""The one HTTP chokepoint for upstream calls: a shared aiohttp session per event loop, and error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
import yarl
from django.conf import settings

from .base import ProbeResult, ProviderError, error_kind_for_status, parse_retry_after

# One session per loop: an aiohttp session cannot cross loops, and a fresh session per call would pay a
# new TCP connection each time. Weak keys let a finished loop (tests, management commands) drop its entry.
_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()

API_KEY_PLACEHOLDER = "{api_key}"


def get_session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        connector = aiohttp.TCPConnector(
            limit=settings.GATEWAY_UPSTREAM_POOL_SIZE,
            limit_per_host=0,
            ttl_dns_cache=300,
            keepalive_timeout=30,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            # Proxies from the environment must not capture calls to in-cluster model servers.
            trust_env=False,
            # Model APIs set no cookies worth keeping; a real jar costs a filter pass per call and
            # would carry one tenant's upstream cookies into another's calls.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
        )
        _sessions[loop] = session
    return session


async def close_session() -> None:
    """Close this loop's session (at shutdown, and at the end of a test's event loop)."""
    with contextlib.suppress(RuntimeError):
        session = _sessions.pop(asyncio.get_running_loop(), None)
        if session is not None and not session.closed:
            await session.close()


@functools.lru_cache(maxsize=1024)  # a pure function of two strings, called on every upstream call
def join_url(base_url: str, path: str) -> str:
    """base_url + path, keeping the base's query string (Azure-style `?api-version=...`) at the end."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, parts.query, ""))


def api_root(base_url: str) -> str:
    """A base URL without a trailing /v1, for APIs whose paths carry the version themselves
    (Anthropic's /v1/messages, the simulator's /v1/chat/completions and /health)."""
    base = base_url.rstrip("/")
    return base[:-3] if base.endswith("/v1") else base


@functools.lru_cache(maxsize=1024)
def request_url(url: str) -> yarl.URL:
    """The parsed form of an upstream URL, parsed once (aiohttp parses a string on every call)."""
    return yarl.URL(url)


def auth_headers(deployment, default: Mapping[str, str]) -> dict[str, str]:
    """Headers for a deployment: `default` carries the provider's usual credential header; when an
    extra header's value names the {api_key} placeholder (Azure's `api-key`), that header carries it instead."""
    headers: dict[str, str] = {}
    uses_placeholder = False
    api_key = deployment.api_key or ""
    for name, value in (deployment.extra_headers or {}).items():
        text = str(value)
        if API_KEY_PLACEHOLDER in text:
            uses_placeholder = True
            text = text.replace(API_KEY_PLACEHOLDER, api_key)
        headers[name] = text
    if not uses_placeholder and api_key:
        for name, value in default.items():
            headers.setdefault(name, value)
    return headers


def tracing_headers(request) -> dict[str, str]:
    headers = {}
    if request.request_id:
        headers["X-Request-Id"] = request.request_id
    if request.traceparent:
        headers["traceparent"] = request.traceparent
    return headers


def upstream_message(body: bytes, status: int) -> str:
    """The upstream's own error message when it sent one in a familiar shape, else the status."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    message = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        message = message or data.get("message")
    text = str(message) if message else f"HTTP {status}"
    return text[:500]


async def raise_for_status(response: aiohttp.ClientResponse, provider_name: str) -> None:
    if response.status < 400:
        return
    body = await response.read()
    kind = error_kind_for_status(response.status)
    raise ProviderError(
        f"{provider_name} answered {response.status}: {upstream_message(body, response.status)}",
        kind=kind,
        status=response.status,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


@contextlib.asynccontextmanager
async def translate_errors(provider_name: str, timeout_seconds: float) -> AsyncIterator[None]:
    """Turn transport failures into ProviderError of the right kind."""
    try:
        yield
    except ProviderError:
        raise
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise ProviderError(f"{provider_name} did not answer within {timeout_seconds:g} s", kind="timeout") from None
    except aiohttp.ClientConnectorError as exc:
        raise ProviderError(f"{provider_name} is unreachable: {exc.os_error.strerror or exc}", kind="connection") from None
    except aiohttp.ClientPayloadError:
        raise ProviderError(f"{provider_name} closed the connection mid-answer", kind="connection") from None
    except aiohttp.ClientConnectionError as exc:
        raise ProviderError(f"{provider_name} connection failed: {exc.__class__.__name__}", kind="connection") from None
    except aiohttp.ClientError as exc:
        raise ProviderError(f"{provider_name} call failed: {exc.__class__.__name__}", kind="server_error") from None


def call_timeout(deployment) -> aiohttp.ClientTimeout:
    """Whole-call timeout for a non-streaming answer."""
    return _call_timeout(float(deployment.timeout_seconds))


def stream_timeout(deployment) -> aiohttp.ClientTimeout:
    """A stream may run long; what must not exceed the deployment's timeout is any silence in it."""
    return _stream_timeout(float(deployment.timeout_seconds))


# ClientTimeout is immutable; one per distinct number of seconds.
@functools.lru_cache(maxsize=64)
def _call_timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds, connect=min(seconds, 10.0))


@functools.lru_cache(maxsize=64)
def _stream_timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, connect=min(seconds, 10.0), sock_read=seconds)


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, bytes]]:
    """(event name, data) pairs of a server-sent event stream; multi-line data joined with newlines."""
    event = ""
    data: list[bytes] = []
    async for raw in response.content:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield event, b"\n".join(data)
            event, data = "", []
            continue
        if line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode(errors="replace")
    if data:
        yield event, b"\n".join(data)


async def probe_get(provider_name: str, deployment, url: str, *, headers: Mapping[str, str] | None = None,
                    healthy: str = "models endpoint answered") -> ProbeResult:
    """A cheap health probe: one GET that must answer 2xx within the deployment's timeout."""
    started = time.perf_counter()
    try:
        async with translate_errors(provider_name, deployment.timeout_seconds):
            async with get_session().get(url, headers=headers, timeout=call_timeout(deployment)) as response:
                await raise_for_status(response, provider_name)
                await response.read()
    except ProviderError as exc:
        return ProbeResult(ok=False, latency_ms=_elapsed_ms(started), detail=exc.message)
    return ProbeResult(ok=True, latency_ms=_elapsed_ms(started), detail=healthy)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
