"""What every provider adapter takes and returns, its error type, and the Provider base class."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# Error kinds that say "this deployment could not answer now; another one might": they trigger fallback.
RETRYABLE_KINDS = frozenset({"timeout", "rate_limited", "server_error", "connection"})
ERROR_KINDS = RETRYABLE_KINDS | {"client_error", "auth"}


@dataclass(slots=True)
class ChatRequest:
    """One chat call, provider-neutral. `model` is the public model id; the deployment names the upstream one."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False
    request_id: str = ""
    tenant_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    traceparent: str | None = None


@dataclass(slots=True)
class ChatResult:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    upstream_model: str


@dataclass(slots=True)
class StreamDelta:
    """A piece of streamed output; the last one carries the finish reason and the token usage."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(slots=True)
class ProbeResult:
    ok: bool
    latency_ms: float
    detail: str


class ProviderError(Exception):
    """An upstream call failed. `kind` says how; `retryable` errors make the router try the next deployment."""

    def __init__(self, message: str, *, kind: str, status: int | None = None, retry_after: float | None = None):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown provider error kind {kind!r}")
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    def __repr__(self) -> str:
        return f"ProviderError({self.message!r}, kind={self.kind!r}, status={self.status!r})"


class DeploymentLike(Protocol):
    """What a provider reads from a deployment (the router's DeploymentSnapshot satisfies it)."""

    id: str
    base_url: str
    api_key: str | None
    upstream_model: str
    extra_headers: Mapping[str, str]
    timeout_seconds: float


class Provider(abc.ABC):
    """One upstream API. Subclasses set `kind` and register themselves in the registry."""

    kind: str = ""

    @abc.abstractmethod
    async def complete(self, deployment: DeploymentLike, request: ChatRequest) -> ChatResult:
        """The whole answer at once; raises ProviderError."""

    @abc.abstractmethod
    def stream(self, deployment: DeploymentLike, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """An async iterator of deltas; the last carries usage. Raises ProviderError while iterating."""

    @abc.abstractmethod
    def probe_request(self, deployment: DeploymentLike) -> tuple[str, dict[str, str]]:
        """The URL and headers of `probe`'s call (the periodic health checks send the same)."""

    @abc.abstractmethod
    async def probe(self, deployment: DeploymentLike) -> ProbeResult:
        """A cheap reachability and credentials check; never raises for upstream trouble."""


def error_kind_for_status(status: int) -> str:
    """Classify an upstream HTTP status the way fallback needs it."""
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if status >= 500:
        return "server_error"
    return "client_error"


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
