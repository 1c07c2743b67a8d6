"""Request context: a request id on every request and response, the client address."""

from __future__ import annotations

import os
import re

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from .logging import request_id_var

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR")


def _assign(request) -> str:
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
    request_id = incoming if _VALID_ID.match(incoming) else os.urandom(16).hex()  # 32 hex digits, as uuid4().hex
    request.request_id = request_id
    request_id_var.set(request_id)
    return request_id


class RequestContextMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        request_id = _assign(request)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

    async def __acall__(self, request):
        request_id = _assign(request)
        response = await self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
