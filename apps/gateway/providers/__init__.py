"""Upstream model providers behind a registry: one module per API, all speaking ChatRequest/ChatResult."""

from .base import ChatRequest, ChatResult, ProbeResult, Provider, ProviderError, StreamDelta
from .registry import get_provider, provider_kinds, register

__all__ = [
    "ChatRequest",
    "ChatResult",
    "ProbeResult",
    "Provider",
    "ProviderError",
    "StreamDelta",
    "get_provider",
    "provider_kinds",
    "register",
]
