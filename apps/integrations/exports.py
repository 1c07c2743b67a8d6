"""API gateway configuration exports: Kong (decK), Apigee (proxy bundle), AWS API Gateway (OpenAPI 3 and usage
plans), and the Prometheus scrape config, each built from the tenants' limits.

Every artifact puts the outer gateway in front of Switchyard's two public data-plane routes, POST /api/v1/generate
and GET /api/v1/models, with per-tenant request limits (per minute and per day, from each active tenant),
JWT verification of the tenant's identity at the edge, request logging, and a 300 s cache on the model list
(keyed by the caller's credential, since the list depends on the tenant). Callers keep sending their Switchyard
API key in `Authorization`, which passes through untouched; the edge JWT travels in `X-Gateway-JWT` with the
tenant id as its issuer. Token and concurrency limits stay with Switchyard, which enforces them itself.
No artifact carries a secret: keys are referenced (decK environment variables, a JWKS URL, AWS API keys
created per tenant), never included.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from urllib.parse import urlparse
from xml.sax.saxutils import escape, quoteattr

import yaml
from django.conf import settings

from apps.tenants.models import Tenant, TenantStatus

GENERATE_PATH = "/api/v1/generate"
MODELS_PATH = "/api/v1/models"
MODELS_CACHE_SECONDS = 300
JWT_HEADER = "X-Gateway-JWT"
TAG = "switchyard"


@dataclass(frozen=True)
class ExportOptions:
    """Where the outer gateway sends traffic and logs; defaults come from settings."""

    upstream_url: str
    log_endpoint: str
    jwks_url: str

    @classmethod
    def defaults(cls) -> ExportOptions:
        site = settings.SWITCHYARD_EXPORT_UPSTREAM_URL or settings.SITE_URL
        return cls(upstream_url=site.rstrip("/"), log_endpoint=settings.SWITCHYARD_EXPORT_LOG_ENDPOINT,
                   jwks_url=settings.SWITCHYARD_EXPORT_JWKS_URL or f"{site.rstrip('/')}/.well-known/jwks.json")


@dataclass(frozen=True)
class Artifact:
    kind: str
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class TenantLimits:
    id: str
    name: str
    requests_per_minute: int
    requests_per_day: int
    tokens_per_month: int
    max_concurrent: int


def tenant_limits() -> list[TenantLimits]:
    """Active tenants and their request limits, in id order (suspended tenants get no edge credentials)."""
    return [
        TenantLimits(t.id, t.name, t.requests_per_minute, t.requests_per_day, t.tokens_per_month, t.max_concurrent)
        for t in Tenant.objects.filter(status=TenantStatus.ACTIVE).order_by("id")
    ]


def _env_name(tenant_id: str) -> str:
    return "DECK_" + re.sub(r"[^A-Z0-9]", "_", tenant_id.upper()) + "_JWT_PUBLIC_KEY"


def _deck_env(name: str) -> str:
    """A decK template reference: deck fills it from the environment at sync time."""
    return '${{ env "' + name + '" }}'


def _yaml(data: dict, header: str) -> bytes:
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return (comment + body).encode()


# --- Kong (decK declarative configuration) --------------------------------------------------------------------

def kong(options: ExportOptions, tenants: list[TenantLimits]) -> Artifact:
    data = {
        "_format_version": "3.0",
        "_info": {"select_tags": [TAG]},
        "services": [{
            "name": "switchyard",
            "url": options.upstream_url,
            "connect_timeout": 5000,
            "read_timeout": 300000,
            "write_timeout": 60000,
            "retries": 0,
            "tags": [TAG],
            "routes": [
                {"name": "switchyard-generate", "paths": [f"~{GENERATE_PATH}$"], "methods": ["POST"],
                 "strip_path": False, "preserve_host": False, "protocols": ["https", "http"], "tags": [TAG]},
                {"name": "switchyard-models", "paths": [f"~{MODELS_PATH}$"], "methods": ["GET"],
                 "strip_path": False, "preserve_host": False, "protocols": ["https", "http"], "tags": [TAG],
                 "plugins": [{"name": "proxy-cache", "tags": [TAG], "config": {
                     "strategy": "memory", "cache_ttl": MODELS_CACHE_SECONDS, "request_method": ["GET"],
                     "response_code": [200], "content_type": ["application/json"],
                     # The list depends on the tenant: one cache entry per caller credential.
                     "vary_headers": ["Authorization"],
                 }}]},
            ],
            "plugins": [
                {"name": "jwt", "tags": [TAG], "config": {
                    "header_names": [JWT_HEADER.lower()], "uri_param_names": [], "cookie_names": [],
                    "key_claim_name": "iss", "claims_to_verify": ["exp"], "run_on_preflight": True,
                }},
                {"name": "http-log", "tags": [TAG], "config": {
                    "http_endpoint": options.log_endpoint, "method": "POST", "content_type": "application/json",
                    "timeout": 10000, "keepalive": 60000, "queue": {"max_batch_size": 100},
                }},
            ],
        }],
        "consumers": [{
            "username": t.id,
            "custom_id": t.id,
            "tags": [TAG, f"tokens-per-month:{t.tokens_per_month}", f"max-concurrent:{t.max_concurrent}"],
            "jwt_secrets": [{
                "key": t.id,
                "algorithm": "RS256",
                "rsa_public_key": _deck_env(_env_name(t.id)),
            }],
            "plugins": [{"name": "rate-limiting", "tags": [TAG], "config": {
                "minute": t.requests_per_minute, "day": t.requests_per_day, "limit_by": "consumer",
                "policy": "local", "fault_tolerant": True, "hide_client_headers": False,
            }}],
        } for t in tenants],
    }
    header = (
        "Switchyard behind Kong: decK declarative configuration (deck gateway sync switchyard-kong.yaml).\n"
        f"One consumer per active tenant; its edge JWT (header {JWT_HEADER}, issuer = tenant id, RS256) is\n"
        "checked against the public key in the DECK_<TENANT>_JWT_PUBLIC_KEY environment variable.\n"
        "Switchyard API keys pass through in Authorization; tokens per month and concurrency stay with Switchyard."
    )
    return Artifact("kong", "switchyard-kong.yaml", "application/yaml", _yaml(data, header))


# --- Apigee (API proxy bundle) --------------------------------------------------------------------------------

def _xml(text: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + text.strip() + "\n").encode()


def _policy_name(tenant_id: str, period: str) -> str:
    return f"Quota-{tenant_id}-{period}"


def apigee(options: ExportOptions, tenants: list[TenantLimits]) -> Artifact:
    policies: dict[str, bytes] = {}
    policies["Verify-JWT"] = _xml(f"""
<VerifyJWT async="false" continueOnError="false" enabled="true" name="Verify-JWT">
  <DisplayName>Verify-JWT</DisplayName>
  <Algorithm>RS256</Algorithm>
  <Source>request.header.{JWT_HEADER.lower()}</Source>
  <PublicKey>
    <JWKS uri={quoteattr(options.jwks_url)}/>
  </PublicKey>
  <TimeAllowance>60s</TimeAllowance>
</VerifyJWT>""")
    policies["Response-Cache-Models"] = _xml(f"""
<ResponseCache async="false" continueOnError="false" enabled="true" name="Response-Cache-Models">
  <DisplayName>Response-Cache-Models</DisplayName>
  <CacheKey>
    <KeyFragment ref="request.uri" type="string"/>
    <KeyFragment ref="request.header.Authorization" type="string"/>
  </CacheKey>
  <Scope>Exclusive</Scope>
  <ExpirySettings>
    <TimeoutInSeconds>{MODELS_CACHE_SECONDS}</TimeoutInSeconds>
  </ExpirySettings>
  <SkipCacheLookup>request.verb != "GET"</SkipCacheLookup>
  <SkipCachePopulation>response.status.code != 200</SkipCachePopulation>
</ResponseCache>""")
    policies["Log-Request"] = _xml(f"""
<ServiceCallout async="true" continueOnError="true" enabled="true" name="Log-Request">
  <DisplayName>Log-Request</DisplayName>
  <Request variable="logRequest">
    <Set>
      <Verb>POST</Verb>
      <Headers><Header name="Content-Type">application/json</Header></Headers>
      <Payload contentType="application/json">{{"proxy":"switchyard","tenant":"{{jwt.Verify-JWT.claim.issuer}}","path":"{{request.path}}","status":"{{response.status.code}}"}}</Payload>
    </Set>
  </Request>
  <HTTPTargetConnection>
    <URL>{escape(options.log_endpoint)}</URL>
  </HTTPTargetConnection>
</ServiceCallout>""")
    quota_steps = []
    for t in tenants:
        for period, unit, count in (("minute", "minute", t.requests_per_minute), ("day", "day", t.requests_per_day)):
            name = _policy_name(t.id, period)
            policies[name] = _xml(f"""
<Quota async="false" continueOnError="false" enabled="true" name={quoteattr(name)} type="calendar">
  <DisplayName>{escape(name)}</DisplayName>
  <Allow count="{count}"/>
  <Interval>1</Interval>
  <TimeUnit>{unit}</TimeUnit>
  <StartTime>2026-01-01 00:00:00</StartTime>
  <Identifier ref="jwt.Verify-JWT.claim.issuer"/>
  <Distributed>true</Distributed>
  <Synchronous>true</Synchronous>
</Quota>""")
            quota_steps.append(
                f'<Step><Name>{escape(name)}</Name><Condition>jwt.Verify-JWT.claim.issuer = "{escape(t.id)}"'
                f"</Condition></Step>")
    quota_xml = "\n        ".join(quota_steps)
    proxy = _xml(f"""
<ProxyEndpoint name="default">
  <Description>Switchyard data plane: generate and the model list.</Description>
  <PreFlow name="PreFlow">
    <Request>
      <Step><Name>Verify-JWT</Name></Step>
    </Request>
    <Response/>
  </PreFlow>
  <Flows>
    <Flow name="generate">
      <Condition>(proxy.pathsuffix MatchesPath "{GENERATE_PATH}") and (request.verb = "POST")</Condition>
      <Request>
        {quota_xml}
      </Request>
      <Response/>
    </Flow>
    <Flow name="models">
      <Condition>(proxy.pathsuffix MatchesPath "{MODELS_PATH}") and (request.verb = "GET")</Condition>
      <Request>
        <Step><Name>Response-Cache-Models</Name></Step>
      </Request>
      <Response>
        <Step><Name>Response-Cache-Models</Name></Step>
      </Response>
    </Flow>
    <Flow name="not-found">
      <Condition>true</Condition>
      <Request><Step><Name>Raise-Not-Found</Name></Step></Request>
    </Flow>
  </Flows>
  <PostFlow name="PostFlow">
    <Request/>
    <Response><Step><Name>Log-Request</Name></Step></Response>
  </PostFlow>
  <HTTPProxyConnection>
    <BasePath>/</BasePath>
  </HTTPProxyConnection>
  <RouteRule name="default">
    <TargetEndpoint>default</TargetEndpoint>
  </RouteRule>
</ProxyEndpoint>""")
    policies["Raise-Not-Found"] = _xml("""
<RaiseFault async="false" continueOnError="false" enabled="true" name="Raise-Not-Found">
  <DisplayName>Raise-Not-Found</DisplayName>
  <FaultResponse>
    <Set>
      <StatusCode>404</StatusCode>
      <ReasonPhrase>Not Found</ReasonPhrase>
      <Payload contentType="application/json">{"error":{"status":404,"message":"No such route."}}</Payload>
    </Set>
  </FaultResponse>
</RaiseFault>""")
    target = _xml(f"""
<TargetEndpoint name="default">
  <Description>Switchyard</Description>
  <HTTPTargetConnection>
    <URL>{escape(options.upstream_url)}</URL>
    <Properties>
      <Property name="io.timeout.millis">300000</Property>
    </Properties>
  </HTTPTargetConnection>
</TargetEndpoint>""")
    policy_list = "\n    ".join(f"<Policy>{escape(name)}</Policy>" for name in sorted(policies))
    root = _xml(f"""
<APIProxy name="switchyard" revision="1">
  <DisplayName>Switchyard</DisplayName>
  <Description>Switchyard LLM gateway behind Apigee: JWT verification, per-tenant quotas, model-list cache.</Description>
  <BasePaths>/</BasePaths>
  <Policies>
    {policy_list}
  </Policies>
  <ProxyEndpoints>
    <ProxyEndpoint>default</ProxyEndpoint>
  </ProxyEndpoints>
  <TargetEndpoints>
    <TargetEndpoint>default</TargetEndpoint>
  </TargetEndpoints>
</APIProxy>""")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("apiproxy/switchyard.xml", root)
        bundle.writestr("apiproxy/proxies/default.xml", proxy)
        bundle.writestr("apiproxy/targets/default.xml", target)
        for name, body in sorted(policies.items()):
            bundle.writestr(f"apiproxy/policies/{name}.xml", body)
    return Artifact("apigee", "switchyard-apigee.zip", "application/zip", buffer.getvalue())


# --- AWS API Gateway (OpenAPI 3 with integrations; usage plans) -----------------------------------------------

def usage_plans(tenants: list[TenantLimits]) -> list[dict]:
    """One usage plan per tenant, in the shape of API Gateway's CreateUsagePlan request."""
    return [{
        "name": f"switchyard-{t.id}",
        "description": f"Switchyard tenant {t.name} ({t.id})",
        "apiStages": [{"apiId": "${ApiId}", "stage": "prod"}],
        "throttle": {"rateLimit": round(t.requests_per_minute / 60, 4), "burstLimit": max(1, t.max_concurrent)},
        "quota": {"limit": t.requests_per_day, "period": "DAY", "offset": 0},
        "tags": {"switchyard:tenant": t.id, "switchyard:requests-per-minute": str(t.requests_per_minute),
                 "switchyard:tokens-per-month": str(t.tokens_per_month)},
    } for t in tenants]


def _integration(method: str, options: ExportOptions, path: str) -> dict:
    return {
        "type": "http_proxy",
        "httpMethod": method,
        "uri": options.upstream_url + path,
        "passthroughBehavior": "when_no_match",
        "connectionType": "INTERNET",
        "timeoutInMillis": 29000,
        "requestParameters": {
            "integration.request.header.Authorization": "method.request.header.Authorization",
            "integration.request.header.traceparent": "method.request.header.traceparent",
        },
    }


def aws_openapi_document(options: ExportOptions, tenants: list[TenantLimits]) -> dict:
    error = {"$ref": "#/components/schemas/Error"}
    json_error = {"description": "Error", "content": {"application/json": {"schema": error}}}
    headers = [
        {"name": "Authorization", "in": "header", "required": True, "schema": {"type": "string"},
         "description": "Bearer <Switchyard API key>"},
        {"name": "traceparent", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "W3C trace context, passed through to Switchyard."},
    ]
    security = [{"tenant_api_key": [], "tenant_jwt": []}]
    return {
        "openapi": "3.0.1",
        "info": {"title": "Switchyard", "version": "1.0.0",
                 "description": "Switchyard LLM gateway behind AWS API Gateway (REST API, edge-optimized)."},
        "servers": [{"url": "https://{api}.execute-api.{region}.amazonaws.com/{stage}", "variables": {
            "api": {"default": "example"}, "region": {"default": "us-east-1"}, "stage": {"default": "prod"}}}],
        "paths": {
            GENERATE_PATH: {"post": {
                "operationId": "generate",
                "summary": "Generate a completion",
                "parameters": headers,
                "security": security,
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/GenerateRequest"}}}},
                "responses": {
                    "200": {"description": "The completion", "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "text/event-stream": {"schema": {"type": "string"}}}},
                    "400": json_error, "401": json_error, "429": json_error, "503": json_error,
                },
                "x-amazon-apigateway-integration": _integration("POST", options, GENERATE_PATH),
            }},
            MODELS_PATH: {"get": {
                "operationId": "listModels",
                "summary": "Models this tenant may use",
                "parameters": headers,
                "security": security,
                "responses": {"200": {"description": "The model list", "content": {
                    "application/json": {"schema": {"type": "object"}}}}, "401": json_error},
                "x-amazon-apigateway-integration": {
                    **_integration("GET", options, MODELS_PATH),
                    # Stage caching (300 s TTL on the stage) keyed by the caller's credential.
                    "cacheKeyParameters": ["method.request.header.Authorization"],
                    "cacheNamespace": "switchyard-models",
                },
            }},
        },
        "components": {
            "securitySchemes": {
                "tenant_api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"},
                "tenant_jwt": {"type": "apiKey", "name": JWT_HEADER, "in": "header",
                               "x-amazon-apigateway-authtype": "custom",
                               "x-amazon-apigateway-authorizer": {
                                   "type": "token", "identitySource": f"method.request.header.{JWT_HEADER}",
                                   "authorizerUri": "${JwtAuthorizerFunctionArn}",
                                   "authorizerResultTtlInSeconds": 300}},
            },
            "schemas": {
                "GenerateRequest": {"type": "object", "required": ["model"], "properties": {
                    "model": {"type": "string"}, "prompt": {"type": "string"},
                    "messages": {"type": "array", "items": {"type": "object"}},
                    "max_tokens": {"type": "integer", "minimum": 1}, "stream": {"type": "boolean"}}},
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"}}}}},
            },
        },
        "x-amazon-apigateway-api-key-source": "HEADER",
        "x-amazon-apigateway-minimum-compression-size": 1024,
        "x-switchyard-usage-plans": usage_plans(tenants),
        "x-switchyard-stage": {"cacheClusterEnabled": True, "cacheClusterSize": "0.5",
                               "methodSettings": [{"resourcePath": MODELS_PATH, "httpMethod": "GET",
                                                   "cachingEnabled": True, "cacheTtlInSeconds": MODELS_CACHE_SECONDS}],
                               "accessLogDestination": "${AccessLogGroupArn}", "tracingEnabled": True},
    }


def aws(options: ExportOptions, tenants: list[TenantLimits]) -> Artifact:
    header = (
        "Switchyard behind AWS API Gateway: import with `aws apigateway import-rest-api --body fileb://...`.\n"
        "x-switchyard-usage-plans holds one CreateUsagePlan request per tenant (also served as aws-usage-plans);\n"
        "create one API key per tenant and attach it to its plan. ${...} values are filled in at deploy time."
    )
    document = aws_openapi_document(options, tenants)
    return Artifact("aws", "switchyard-aws-openapi.yaml", "application/yaml", _yaml(document, header))


def aws_usage_plans(options: ExportOptions, tenants: list[TenantLimits]) -> Artifact:
    body = json.dumps({"usagePlans": usage_plans(tenants)}, indent=2).encode()
    return Artifact("aws-usage-plans", "switchyard-aws-usage-plans.json", "application/json", body)


# --- Prometheus -------------------------------------------------------------------------------------------------

def prometheus(options: ExportOptions, tenants: list[TenantLimits]) -> Artifact:
    parsed = urlparse(options.upstream_url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    job = {
        "job_name": "switchyard",
        "metrics_path": "/metrics",
        "scheme": parsed.scheme or "http",
        "scrape_interval": "15s",
        "scrape_timeout": "10s",
        "static_configs": [{"targets": [f"{parsed.hostname}:{port}"], "labels": {"service": "switchyard"}}],
    }
    if settings.SWITCHYARD_METRICS_TOKEN:
        # The token itself stays out of the file: Prometheus reads it from a file next to its config.
        job["authorization"] = {"type": "Bearer", "credentials_file": "/etc/prometheus/switchyard-metrics-token"}
    data = {"global": {"scrape_interval": "15s", "evaluation_interval": "15s"}, "scrape_configs": [job]}
    header = ("Prometheus scrape config for Switchyard's /metrics (one target per load balancer or node;\n"
              "server processes share their values, so any node reports the whole process set).")
    return Artifact("prometheus", "switchyard-prometheus.yml", "application/yaml", _yaml(data, header))


BUILDERS = {
    "kong": ("Kong (decK declarative YAML)", kong),
    "apigee": ("Apigee API proxy bundle (zip)", apigee),
    "aws": ("AWS API Gateway (OpenAPI 3)", aws),
    "aws-usage-plans": ("AWS API Gateway usage plans (JSON)", aws_usage_plans),
    "prometheus": ("Prometheus scrape config (YAML)", prometheus),
}


def build(kind: str, options: ExportOptions | None = None) -> Artifact:
    """The artifact of `kind` (a key of BUILDERS; KeyError otherwise) for the current tenants."""
    _, builder = BUILDERS[kind]
    return builder(options or ExportOptions.defaults(), tenant_limits())
