"""ASGI entry point: the console and management API through Django, with the data plane's
four paths dispatched straight to their async views (see apps/gateway/asgi.py)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from apps.gateway.asgi import application  # noqa: E402

__all__ = ["application"]
