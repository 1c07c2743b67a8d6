"""Provider kinds by name: each adapter module registers one instance when it is imported."""

from __future__ import annotations

from .base import Provider

_providers: dict[str, Provider] = {}


def register(provider: Provider) -> Provider:
    if not provider.kind:
        raise ValueError("a provider needs a kind")
    _providers[provider.kind] = provider
    return provider


def get_provider(kind: str) -> Provider:
    provider = _providers.get(kind)
    if provider is not None:
        return provider
    _load_builtin()
    try:
        return _providers[kind]
    except KeyError:
        raise LookupError(f"no provider of kind {kind!r}; known: {', '.join(sorted(_providers))}") from None


def provider_kinds() -> list[tuple[str, str]]:
    """(kind, label) of every registered provider, for forms and validation."""
    _load_builtin()
    return [(kind, getattr(p, "label", kind)) for kind, p in sorted(_providers.items())]


def _load_builtin() -> None:
    # Importing the package registers the built-in adapters; a cheap no-op after the first time.
    from . import anthropic, openai_compat, simulator  # noqa: F401
