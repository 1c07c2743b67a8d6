"""One JSON error shape for every API response (OpenAI-compatible, with field details)."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_timeout",
}


def error_body(status_code: int, message: str, *, code: str | None = None, fields: dict | None = None) -> dict:
    error = {
        "type": ERROR_TYPES.get(status_code, "api_error"),
        "code": code or ERROR_TYPES.get(status_code, "error"),
        "message": message,
        "param": next(iter(fields), None) if fields else None,
    }
    if fields:
        error["fields"] = fields
    return {"error": error}


def error_response(status_code: int, message: str, *, code: str | None = None, fields: dict | None = None,
                   headers: dict | None = None) -> JsonResponse:
    response = JsonResponse(error_body(status_code, message, code=code, fields=fields), status=status_code)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _flatten(detail) -> dict:
    """DRF's nested error detail as {field: [messages]} with dotted paths for nesting."""
    out: dict[str, list[str]] = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, list) and value and not all(isinstance(v, (str, exceptions.ErrorDetail)) for v in value):
            for index, sub in enumerate(value):
                if sub:
                    walk(f"{prefix}.{index}" if prefix else str(index), sub)
        else:
            items = value if isinstance(value, list) else [value]
            out.setdefault(prefix or "non_field_errors", []).extend(str(v) for v in items)

    walk("", detail)
    return out


def api_exception_handler(exc, context):
    """DRF exception handler: every error in the shape of error_body, never a stack trace."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages})
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error", extra={"view": context.get("view").__class__.__name__})
        return Response(error_body(500, "Internal error; it has been logged."), status=status.HTTP_500_INTERNAL_SERVER_ERROR)

    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        first = next(iter(fields.items()))
        message = f"{first[0]}: {first[1][0]}" if first[0] != "non_field_errors" else first[1][0]
        response.data = error_body(400, message, code="invalid", fields=fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        response.data = error_body(response.status_code, str(detail), code=code if isinstance(code, str) else None)
    if isinstance(exc, exceptions.Throttled) and exc.wait:
        response["Retry-After"] = str(int(exc.wait) + 1)
    return response


def _wants_json(request) -> bool:
    path = request.path
    return path.startswith(("/api/", "/v1/")) or "application/json" in request.headers.get("Accept", "")


def _page_or_json(request, status_code: int, message: str, template: str):
    if _wants_json(request):
        return error_response(status_code, message)
    from django.shortcuts import render

    return render(request, template, {"status": status_code, "message": message}, status=status_code)


def handler400(request, exception=None):
    return _page_or_json(request, 400, "The request was malformed.", "errors/error.html")


def handler403(request, exception=None):
    message = str(exception) if exception and str(exception) else "You do not have permission to do this."
    return _page_or_json(request, 403, message, "errors/error.html")


def handler404(request, exception=None):
    return _page_or_json(request, 404, "Not found.", "errors/error.html")


def handler500(request):
    if _wants_json(request):
        return error_response(500, "Internal error; it has been logged.")
    from django.http import HttpResponseServerError
    from django.template import loader

    return HttpResponseServerError(loader.get_template("errors/500.html").render())
