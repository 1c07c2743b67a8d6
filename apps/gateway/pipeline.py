"""The request pipeline of the data plane, shared by /api/v1/generate and /v1/chat/completions.

authenticate -> tenant context -> validate -> admit (quotas) -> route and call -> settle the
quota (release the slot, reconcile tokens) on every path -> record usage, audit and metrics.
Nothing here touches Postgres on the hot path: keys and tenants come from short-lived Redis
snapshots, routing from the router's in-process cache, and records go through usage.enqueue.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings

from apps.core.roles import roles_for

from . import context, metrics, pricing, quotas, router, usage
from .content import store_content
from .providers.base import ChatRequest, ChatResult, ProviderError, StreamDelta

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant", "tool", "developer")
GENERATE_ROLES = roles_for("generate")


class GatewayError(Exception):
    """A refusal or failure with its HTTP status and the shape apps.core.errors gives every error."""

    def __init__(self, status: int, message: str, *, code: str | None = None, fields: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.fields = fields
        self.headers = headers or {}


def _invalid(field_name: str, message: str) -> GatewayError:
    return GatewayError(400, f"{field_name}: {message}", code="invalid", fields={field_name: [message]})


# --- settings ---------------------------------------------------------------------------------

def max_prompt_chars() -> int:
    return getattr(settings, "SWITCHYARD_MAX_PROMPT_CHARS", 200_000)


def default_max_tokens() -> int:
    return getattr(settings, "SWITCHYARD_DEFAULT_MAX_TOKENS", 1024)


def max_output_tokens() -> int:
    return getattr(settings, "SWITCHYARD_MAX_OUTPUT_TOKENS", 32_768)


# --- the parsed request -----------------------------------------------------------------------

@dataclass
class Spec:
    model: str
    messages: list
    max_tokens: int
    temperature: float | None
    stream: bool
    include_usage: bool = False
    department: str | None = None
    project: str | None = None
    tags: dict = field(default_factory=dict)
    tenant_id: str | None = None
    user_id: int | None = None
    prompt_chars: int = 0


def parse_body(request) -> dict:
    try:
        raw = request.body
    except Exception:  # RequestDataTooBig: Django refused to read past its body limit
        raise GatewayError(413, "The request body is too large.", code="request_too_large") from None
    if not raw:
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def _text_of(content, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise _invalid(f"messages.{index}.content", "Only text content parts are supported.")
        return "".join(parts)
    if content is None:
        return ""
    raise _invalid(f"messages.{index}.content", "Must be a string or a list of text parts.")


def parse_spec(body: dict, *, allow_prompt: bool) -> Spec:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("model", "This field is required." if model is None else "Must be a non-empty string.")
    if len(model) > 100:
        raise _invalid("model", "At most 100 characters.")

    messages = body.get("messages")
    prompt = body.get("prompt") if allow_prompt else None
    if messages is None and prompt is None:
        name = "prompt" if allow_prompt else "messages"
        raise _invalid(name, "This field is required." + (" Send prompt or messages." if allow_prompt else ""))
    if messages is not None and prompt is not None:
        raise _invalid("prompt", "Send prompt or messages, not both.")
    chars = 0
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            raise _invalid("prompt", "Must be a non-empty string.")
        chars = len(prompt)
        clean = [{"role": "user", "content": prompt}]
    else:
        if not isinstance(messages, list) or not messages:
            raise _invalid("messages", "Must be a non-empty list of messages.")
        clean = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                raise _invalid(f"messages.{index}", "Must be an object with role and content.")
            role = message.get("role")
            if role not in ROLES:
                raise _invalid(f"messages.{index}.role", f"Must be one of {', '.join(ROLES)}.")
            text = _text_of(message.get("content"), index)
            chars += len(text)
            clean.append({"role": "system" if role == "developer" else role, "content": text})
    if chars > max_prompt_chars():
        raise GatewayError(
            413, f"The prompt is {chars} characters; the limit is {max_prompt_chars()}.", code="prompt_too_large",
            fields={"prompt" if prompt is not None else "messages": [f"At most {max_prompt_chars()} characters."]},
        )

    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is None:
        max_tokens = default_max_tokens()
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= max_output_tokens():
        raise _invalid("max_tokens", f"Must be an integer from 1 to {max_output_tokens()}.")

    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2
    ):
        raise _invalid("temperature", "Must be a number from 0 to 2.")

    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream", "Must be true or false.")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _invalid("stream_options", "Must be an object.")
        include_usage = bool(options.get("include_usage"))

    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _invalid("metadata", "Must be an object.")
    department = metadata.get("department")
    project = metadata.get("project")
    for name, value in (("department", department), ("project", project)):
        if value is not None and not isinstance(value, str):
            raise _invalid(f"metadata.{name}", "Must be a department or project code (a string).")
    tags = {k: v for k, v in metadata.items() if k not in ("department", "project")}
    if len(tags) > 32 or any(not isinstance(v, (str, int, float, bool)) or len(str(v)) > 200 for v in tags.values()):
        raise _invalid("metadata", "At most 32 tags, each a string, number or boolean of up to 200 characters.")

    tenant_id = body.get("tenant_id", body.get("tenantId"))
    if tenant_id is not None and (not isinstance(tenant_id, str) or not tenant_id):
        raise _invalid("tenant_id", "Must be a tenant id (a string).")
    user_id = body.get("user_id", body.get("userId"))
    if user_id is not None:
        try:
            user_id = int(user_id)
        except (TypeError, ValueError):
            raise _invalid("user_id", "Must be a user id (an integer).") from None

    return Spec(
        model=model.strip(), messages=clean, max_tokens=max_tokens,
        temperature=float(temperature) if temperature is not None else None, stream=stream,
        include_usage=include_usage, department=department, project=project, tags=tags,
        tenant_id=tenant_id, user_id=user_id, prompt_chars=chars,
    )


# --- who is calling, for which tenant -------------------------------------------------------

@dataclass
class Caller:
    key: context.KeySnapshot | None
    user_id: int | None
    tenant: context.TenantContext
    department_id: int | None = None
    project_id: int | None = None

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key else None


def bearer_of(request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-Api-Key") or request.headers.get("Api-Key") or None


async def authenticate(request, tenant_hint: str | None):
    """(key snapshot or None, user for an access token or None, cached tenant context or None)."""
    secret = bearer_of(request)
    if not secret:
        raise GatewayError(401, "Send an API key as 'Authorization: Bearer <key>'.", code="missing_api_key")
    if secret.startswith(("sy_live_", "sy_svc_")):
        snapshot, tenant = await context.lookup_key(secret, tenant_hint)
        if snapshot is None:
            raise GatewayError(401, "The API key is not valid or has been revoked.", code="invalid_api_key")
        if snapshot.expired():
            raise GatewayError(401, "The API key has expired.", code="expired_api_key")
        return snapshot, None, tenant
    user = await context.authenticate_token(secret)
    if user is None or not getattr(user, "is_active", False):
        raise GatewayError(401, "The API key or access token is not valid.", code="invalid_api_key")
    return None, user, None


async def resolve_caller(request, *, tenant_id: str | None, user_id: int | None,
                         department: str | None = None, project: str | None = None) -> Caller:
    key, user, tenant = await authenticate(request, tenant_id)
    if key is not None:
        acting_tenant, acting_user = _acting_for_key(key, tenant_id, user_id)
        if tenant is None or tenant.id != acting_tenant:
            tenant = await context.get_tenant_context(acting_tenant)
        return caller_for_key(key, tenant, tenant_id=acting_tenant, acting_user=acting_user,
                              department=department, project=project)
    if getattr(user, "client_id", None):  # a service client's token: bound to its tenant and role
        if tenant_id and tenant_id != user.tenant_id:
            raise GatewayError(403, "This token cannot act for another tenant.", code="tenant_mismatch")
        if user.role not in GENERATE_ROLES:
            raise GatewayError(403, "This client's role does not allow generating.", code="role_forbidden")
        tenant_id, acting_user = user.tenant_id, None
    else:
        roles = await _user_tenants(user)
        if not tenant_id:
            choices = [t for t, r in roles.items() if r in GENERATE_ROLES]
            if len(choices) != 1:
                raise _invalid("tenant_id", "Name the tenant this request is for.")
            tenant_id = choices[0]
        elif not getattr(user, "is_platform_admin", False) and tenant_id not in roles:
            raise GatewayError(403, "You are not a member of this tenant.", code="tenant_mismatch")
        acting_user = user.pk
    tenant = await context.get_tenant_context(tenant_id)
    _check_tenant(tenant, tenant_id, acting_user, key=None, user=user)
    return _with_scopes(Caller(key=None, user_id=acting_user, tenant=tenant), department, project)


def _acting_for_key(key: context.KeySnapshot, tenant_id: str | None, user_id: int | None) -> tuple[str, int | None]:
    """(tenant, user) an API key's request acts for."""
    if key.is_platform_service:
        if not tenant_id:
            raise _invalid("tenant_id", "A platform service key must name the tenant it acts for.")
        return tenant_id, user_id
    if tenant_id and tenant_id != key.tenant_id:
        raise GatewayError(403, "This API key cannot act for another tenant.", code="tenant_mismatch")
    if user_id is not None and user_id != key.user_id:
        raise GatewayError(403, "Only a platform service key may act for another user.", code="user_mismatch")
    return key.tenant_id, key.user_id


def caller_for_key(key: context.KeySnapshot, tenant: context.TenantContext | None, *, tenant_id: str,
                   acting_user: int | None, department: str | None, project: str | None) -> Caller:
    """The caller of an API key's request, from the key's and the tenant's snapshots (no I/O)."""
    _check_tenant(tenant, tenant_id, acting_user, key=key, user=None)
    caller = Caller(key=key, user_id=acting_user, tenant=tenant, department_id=key.department_id,
                    project_id=key.project_id)
    return _with_scopes(caller, department, project)


def _check_tenant(tenant, tenant_id: str, acting_user, *, key, user) -> None:
    if tenant is None:
        raise GatewayError(404, f"Tenant '{tenant_id}' does not exist.", code="tenant_not_found")
    if tenant.status != "active":
        raise GatewayError(403, "This tenant is suspended.", code="tenant_suspended")
    if acting_user is None:
        return
    role = tenant.members.get(str(acting_user))
    if role is None:
        if key is not None and not key.is_platform_service:
            raise GatewayError(403, "The key's user is no longer a member of this tenant.", code="role_forbidden")
        if user is None or not getattr(user, "is_platform_admin", False):
            raise _invalid("user_id", f"User {acting_user} is not a member of tenant '{tenant_id}'.")
    elif role not in GENERATE_ROLES:
        raise GatewayError(403, "The user's role in this tenant does not allow generating.", code="role_forbidden")


def _with_scopes(caller: Caller, department: str | None, project: str | None) -> Caller:
    tenant = caller.tenant
    if department is not None:
        if department not in tenant.departments:
            raise _invalid("metadata.department", f"No department with code '{department}' in this tenant.")
        caller.department_id = tenant.departments[department]
    if project is not None:
        if project not in tenant.projects:
            raise _invalid("metadata.project", f"No project with code '{project}' in this tenant.")
        caller.project_id = tenant.projects[project]
    return caller


async def _user_tenants(user) -> dict:
    from asgiref.sync import sync_to_async

    return await sync_to_async(user.tenant_roles, thread_sensitive=False)()


async def models_for(caller: Caller) -> list[str]:
    models = await router.available_models(caller.tenant)
    return sorted(m for m in models if caller.tenant.allows_model(m))


# --- one call through the gateway -----------------------------------------------------------

def _limits(values) -> quotas.QuotaLimits:
    return quotas.QuotaLimits(*values)


def estimate_prompt_tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


@dataclass
class Call:
    """One admitted request, carried from admission to its usage record."""

    request: object
    request_id: str
    endpoint: str
    spec: Spec
    caller: Caller
    created_at: datetime
    started: float
    admission: object = None
    deployment: object = None
    attempts: int = 0
    status: str = "success"
    status_code: int = 200
    error_code: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft: float | None = None
    text_parts: list = field(default_factory=list)
    cost: object = None
    currency: str = ""
    unpriced: bool = False
    priced: bool = False
    finished: bool = False

    @property
    def latency(self) -> float:
        return time.perf_counter() - self.started


async def start_call(request, *, endpoint: str, spec: Spec, caller: Caller, created_at: datetime,
                     started: float, verify: tuple | None = None) -> Call:
    """Model checks and quota admission; raises GatewayError (already recorded) when refused, and
    quotas.StaleSnapshot (nothing recorded, nothing taken) when `verify` finds a changed snapshot."""
    call = Call(request=request, request_id=request.request_id, endpoint=endpoint, spec=spec, caller=caller,
                created_at=created_at, started=started)
    tenant = caller.tenant
    try:
        if not tenant.allows_model(spec.model):
            raise GatewayError(403, f"Model '{spec.model}' is not allowed for this tenant.", code="model_not_allowed",
                               fields={"model": ["Not in this tenant's allowed models."]})
        if spec.model not in await router.available_models(tenant):
            raise GatewayError(404, f"Model '{spec.model}' is not available.", code="model_not_found",
                               fields={"model": ["No deployment serves this model for this tenant."]})
        key = caller.key
        try:
            # Budget hard limits (set by billing) reserve the request's worst-case cost.
            price = (await pricing.current_book()).price_at(spec.model, created_at)
            estimated_cost = pricing.cost_of(price, estimate_prompt_tokens(spec.prompt_chars), spec.max_tokens)
            budget_scopes = [("tenant", tenant.id)] + [
                (kind, scope_id) for kind, scope_id in (("department", caller.department_id),
                                                        ("project", caller.project_id)) if scope_id is not None]
            admission = await quotas.admit(
                tenant_id=tenant.id, tenant_limits=_limits(tenant.limits),
                key_id=key.id if key else None, key_limits=_limits(key.limits) if key else None,
                estimated_tokens=estimate_prompt_tokens(spec.prompt_chars) + spec.max_tokens,
                request_id=call.request_id, degraded_ok=tenant.redis_outage_mode == "degraded",
                budget_scopes=budget_scopes, estimated_cost_units=quotas.to_budget_units(estimated_cost),
                verify=verify,
            )
        except quotas.QuotaBackendUnavailable as exc:
            raise GatewayError(503, exc.message, code="quota_backend_unavailable", headers={"Retry-After": "5"}) from None
        if not admission.allowed:
            await _violation(call, admission)
            headers = dict(admission.headers)
            headers["Retry-After"] = str(max(1, int(admission.retry_after)))
            if admission.reason == quotas.BUDGET:
                raise GatewayError(
                    429, f"Budget hard limit reached: this request would exceed the {admission.scope} budget "
                    f"({(admission.limit * quotas.BUDGET_QUANTUM).normalize():f} per period). "
                    f"Ask a tenant admin to raise it, or retry after {headers['Retry-After']} s.",
                    code="budget_exceeded", headers=headers,
                )
            who = "this API key" if admission.scope == "key" else "this tenant"
            raise GatewayError(
                429, f"Rate limit reached: {admission.reason.replace('_', ' ')} of {who} "
                f"(limit {admission.limit}). Retry after {headers['Retry-After']} s.",
                code=admission.reason, headers=headers,
            )
        call.admission = admission
        return call
    except GatewayError as exc:
        call.status = "rate_limited" if exc.status == 429 else ("error" if exc.status >= 500 else "client_error")
        call.status_code = exc.status
        call.error_code = exc.code or ""
        await finish(call)
        raise


async def start_remembered_call(request, *, endpoint: str, spec: Spec, tenant_hint: str | None,
                                created_at: datetime, started: float) -> Call | None:
    """The one-round-trip path of an API key this process has seen: decide on the key's and
    tenant's snapshots it last read and admit with a check that they are still current (see
    context.remembered). None when that cannot be done or the snapshots were stale (nothing was
    taken or recorded then): the caller takes the full path, which also answers every refusal
    from fresh snapshots."""
    secret = bearer_of(request)
    if not secret or not secret.startswith(("sy_live_", "sy_svc_")):
        return None
    found = context.remembered(secret, tenant_hint)
    if found is None:
        return None
    key, tenant, verify, name = found
    try:
        if key.expired():
            return None
        acting_tenant, acting_user = _acting_for_key(key, tenant_hint, spec.user_id)
        if tenant.id != acting_tenant:
            return None
        caller = caller_for_key(key, tenant, tenant_id=acting_tenant, acting_user=acting_user,
                                department=spec.department, project=spec.project)
        if not tenant.allows_model(spec.model) or spec.model not in await router.available_models(tenant):
            return None
    except GatewayError:
        return None
    try:
        return await start_call(request, endpoint=endpoint, spec=spec, caller=caller, created_at=created_at,
                                started=started, verify=verify)
    except quotas.StaleSnapshot:
        context.forget_remembered(name)
        return None


async def _violation(call: Call, admission) -> None:
    try:
        from .violations import record_violation

        result = record_violation(tenant_id=call.caller.tenant.id, key_id=call.caller.key_id, reason=admission.reason,
                                  limit=admission.limit, request_id=call.request_id)
        if inspect.isawaitable(result):
            await result
    except Exception:  # a violation that cannot be recorded must not turn a 429 into a 500
        logger.exception("quota violation could not be recorded")
    metrics.count_quota_refusal(call.caller.tenant.id, admission.reason)


def chat_request(call: Call) -> ChatRequest:
    spec = call.spec
    return ChatRequest(
        model=spec.model, messages=spec.messages, max_tokens=spec.max_tokens, temperature=spec.temperature,
        stream=spec.stream, request_id=call.request_id, tenant_id=call.caller.tenant.id, extra={},
        traceparent=call.request.headers.get("traceparent"),
    )


def _upstream_error(exc) -> GatewayError:
    status = getattr(exc, "status", 502) or 502
    code = {503: "no_deployment_available", 504: "upstream_timeout"}.get(status, "upstream_error")
    return GatewayError(status, getattr(exc, "message", str(exc)), code=code)


async def complete(call: Call) -> ChatResult:
    """A whole answer; the slot is released and the record written whatever happens."""
    result = None
    try:
        result, call.deployment, attempts = await router.complete_with_fallback(call.caller.tenant, chat_request(call))
        call.attempts = len(attempts) if attempts is not None else 1
        call.ttft = call.latency
        call.prompt_tokens = result.prompt_tokens or estimate_prompt_tokens(call.spec.prompt_chars)
        call.completion_tokens = result.completion_tokens or 0
        call.text_parts = [result.text]
        return result
    except router.NoDeploymentAvailable as exc:
        error = _upstream_error(exc)
        call.status, call.status_code, call.error_code = "upstream_error", error.status, error.code
        raise error from None
    except asyncio.CancelledError:
        call.status, call.status_code, call.error_code = "cancelled", 499, "client_disconnected"
        raise
    except Exception:
        call.status, call.status_code, call.error_code = "error", 500, "gateway_error"
        logger.exception("gateway call failed")
        raise GatewayError(502, "The upstream call failed unexpectedly.", code="upstream_error") from None
    finally:
        await _settle_and_finish(call, result is not None)


async def open_stream(call: Call) -> AsyncIterator[StreamDelta]:
    """Connect upstream (falling back before the first byte) and return the deltas; the caller
    must iterate `stream_deltas(call, iterator)` so the call is settled and recorded."""
    try:
        call.deployment, iterator = await router.stream_with_fallback(call.caller.tenant, chat_request(call))
        call.attempts = 1
        return iterator
    except BaseException as exc:
        if isinstance(exc, router.NoDeploymentAvailable):
            error = _upstream_error(exc)
            call.status, call.status_code, call.error_code = "upstream_error", error.status, error.code
        elif isinstance(exc, asyncio.CancelledError):
            call.status, call.status_code, call.error_code = "cancelled", 499, "client_disconnected"
            error = None
        else:
            logger.exception("gateway stream failed to open")
            call.status, call.status_code, call.error_code = "error", 502, "upstream_error"
            error = GatewayError(502, "The upstream call failed unexpectedly.", code="upstream_error")
        await _settle_and_finish(call, False)
        if error is not None:
            raise error from None
        raise


async def stream_deltas(call: Call, iterator) -> AsyncIterator[StreamDelta | GatewayError]:
    """Deltas as they come; a failure after the first byte ends the stream with a GatewayError item."""
    got_usage = False
    try:
        async for delta in iterator:
            if call.ttft is None:
                call.ttft = call.latency
            if delta.text:
                call.text_parts.append(delta.text)
                call.completion_tokens += 1
            if delta.prompt_tokens is not None or delta.completion_tokens is not None:
                got_usage = True
                call.prompt_tokens = delta.prompt_tokens or call.prompt_tokens
                call.completion_tokens = delta.completion_tokens if delta.completion_tokens is not None else call.completion_tokens
            yield delta
    except ProviderError as exc:
        call.status, call.status_code, call.error_code = "upstream_error", 502, exc.kind
        yield GatewayError(502, f"The upstream stream failed: {exc.message}", code="upstream_error")
    except (asyncio.CancelledError, GeneratorExit):
        call.status, call.status_code, call.error_code = "cancelled", 499, "client_disconnected"
        raise
    except Exception:
        logger.exception("gateway stream failed")
        call.status, call.status_code, call.error_code = "error", 502, "upstream_error"
        yield GatewayError(502, "The upstream stream failed unexpectedly.", code="upstream_error")
    finally:
        if not call.prompt_tokens:
            call.prompt_tokens = estimate_prompt_tokens(call.spec.prompt_chars)
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            try:
                await closer()
            except Exception:  # the upstream connection is being torn down anyway
                logger.debug("closing the upstream stream failed", exc_info=True)
        await _settle_and_finish(call, got_usage or call.status == "success")


_redis_phases: dict[int, asyncio.Semaphore] = {}


def redis_phase() -> asyncio.Semaphore:
    """Bounds how many requests of this event loop are in a Redis-heavy step at once, so a burst
    of a thousand arrivals queues for a moment instead of exhausting the Redis connection pool.
    Upstream waits are outside it: any number of calls may be in flight."""
    loop_id = id(asyncio.get_running_loop())
    semaphore = _redis_phases.get(loop_id)
    if semaphore is None:
        semaphore = _redis_phases[loop_id] = asyncio.Semaphore(getattr(settings, "SWITCHYARD_REDIS_PHASE_LIMIT", 128))
    return semaphore


async def _settle_and_finish(call: Call, answered: bool) -> None:
    """Release the slot and reconcile tokens, then record. Shielded: a client that disconnects
    (cancelling this task) must not leave the slot taken or the request unrecorded."""
    if call.finished:
        return
    call.finished = True

    async def work():
        await _price(call)
        async with redis_phase():
            pending = None
            if call.admission is not None:
                actual = call.prompt_tokens + call.completion_tokens if answered or call.status != "cancelled" else None
                try:
                    pending = quotas.start_settle(call.admission, actual, quotas.to_budget_units(call.cost))
                except Exception:
                    logger.exception("quota settle failed")
            # The usage record is handed to Redis before anything is awaited, so it goes in the
            # same pipeline as the slot's release: one round trip for both.
            try:
                await finish(call)
            finally:
                await quotas.settled(pending)

    task = asyncio.ensure_future(work())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task  # finish the bookkeeping, then let the cancellation through
        raise


async def finish(call: Call) -> None:
    """Price the request, queue its usage record (with its audit event) and observe metrics."""
    tenant = call.caller.tenant
    await _price(call)
    latency = call.latency
    deployment = call.deployment
    record = {
        "request_id": call.request_id,
        "created_at": call.created_at.isoformat(),
        "tenant_id": tenant.id,
        "api_key_id": call.caller.key_id,
        "user_id": call.caller.user_id,
        "department_id": call.caller.department_id,
        "project_id": call.caller.project_id,
        "model": call.spec.model,
        "deployment_id": str(deployment.id) if deployment is not None else None,
        "region_id": _region_of(deployment),
        "endpoint": call.endpoint,
        "stream": call.spec.stream,
        "status": call.status,
        "status_code": call.status_code,
        "error_code": call.error_code[:64],
        "prompt_tokens": call.prompt_tokens if call.status in ("success", "cancelled", "upstream_error") else 0,
        "completion_tokens": call.completion_tokens,
        "cost": str(call.cost) if call.cost is not None else None,
        "currency": call.currency,
        "unpriced": call.unpriced,
        "latency_ms": round(latency * 1000, 3),
        "ttft_ms": round(call.ttft * 1000, 3) if call.ttft is not None else None,
        "attempts": call.attempts,
        "tags": call.spec.tags,
        # For the audit event only.
        "ip": call.request.META.get("REMOTE_ADDR"),
        "user_agent": call.request.headers.get("User-Agent", "")[:300],
        "key_prefix": call.caller.key.prefix if call.caller.key else "",
    }
    if tenant.store_content and call.status == "success":
        # Content never goes through the Redis queue: it is encrypted and stored right here.
        try:
            await sync_to_async(store_content, thread_sensitive=False)(
                tenant_id=tenant.id, request_id=call.request_id, created_at=call.created_at,
                prompt=orjson.dumps(call.spec.messages).decode(), response="".join(call.text_parts),
                encrypt=tenant.encrypt_content,
            )
        except Exception:
            logger.exception("content could not be stored", extra={"request_id": call.request_id})
    try:
        await usage.enqueue(record)
    except Exception:
        logger.exception("usage record could not be queued or written", extra={"request_id": call.request_id})
    metrics.observe_request(
        tenant.id, call.spec.model, call.status_code, latency, call.ttft,
        record["prompt_tokens"], call.completion_tokens, call.cost,
    )


async def _price(call: Call) -> None:
    """The request's cost from the price in force at its moment (once; only successes are charged)."""
    if call.priced:
        return
    call.priced = True
    if call.status == "success":
        book = await pricing.current_book()
        price = book.price_at(call.spec.model, call.created_at)
        call.cost = pricing.cost_of(price, call.prompt_tokens, call.completion_tokens)
        call.currency = price.currency if price else ""
        call.unpriced = price is None


def _region_of(deployment) -> str:
    if deployment is None:
        return ""
    return str(getattr(deployment, "region_id", None) or getattr(deployment, "region", "") or "")


def now_utc() -> datetime:
    return datetime.now(UTC)
