"""Walks the URLconf for every route scoped to a tenant, so new routes join the matrix by themselves."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

TENANT_KWARGS = ("tenant_id", "tenant_pk")


@dataclass
class Route:
    pattern: str
    name: str
    kwargs: tuple[str, ...]
    callback: object

    @property
    def model(self):
        """The model behind a DRF viewset route, if any."""
        cls = getattr(self.callback, "cls", None)
        queryset = getattr(cls, "queryset", None)
        return getattr(queryset, "model", None)

    @property
    def actions(self) -> dict:
        return getattr(self.callback, "actions", None) or {}


def _walk(patterns, prefix="", namespace=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}:{entry.namespace}" if namespace and entry.namespace else (entry.namespace or namespace)
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}:{entry.name}" if namespace and entry.name else (entry.name or "")
            full = prefix + str(entry.pattern)
            yield Route(full, name, tuple(entry.pattern.regex.groupindex), entry.callback)


def all_routes() -> list[Route]:
    # Format suffix variants (…\.(?P<format>[a-z0-9]+)) duplicate their base route.
    return [r for r in _walk(get_resolver().url_patterns) if "format" not in r.kwargs]


def tenant_routes(object_routes=()) -> list[Route]:
    """Routes scoped to a tenant: by a tenant id in the URL, by a DRF model that belongs to a
    tenant, or named in `object_routes` (console pages that take a tenant-owned object's id)."""
    routes = []
    for route in all_routes():
        if any(k in route.kwargs for k in TENANT_KWARGS) or route.name in object_routes:
            routes.append(route)
        elif route.kwargs and route.model is not None and getattr(route.model, "tenant_field", None):
            routes.append(route)
    return routes


def build_path(route: Route, values: dict[str, str]) -> str:
    import re

    path = route.pattern.replace("^", "").replace("$", "")
    for kwarg in route.kwargs:
        value = str(values[kwarg])
        path = re.sub(rf"\(\?P<{kwarg}>[^)]*\)", value, path)
        path = re.sub(rf"<(?:\w+:)?{kwarg}>", value, path)
    return "/" + path.replace("\\", "")
