"""API gateway exports: each artifact checked by a parser or validator for its format, limits matching tenants'."""

from __future__ import annotations

import io
import json
import zipfile

import jsonschema
import pytest
import yaml
from lxml import etree
from openapi_spec_validator import validate as validate_openapi

from apps.audit.models import AuditEvent
from apps.integrations import exports

# The decK 3.x state-file structure for what Switchyard exports (entities and fields as decK documents them);
# unknown top-level keys or malformed plugin entries fail.
PLUGIN = {
    "type": "object",
    "required": ["name", "config"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "config": {"type": "object"}, "tags": {"type": "array"},
                   "enabled": {"type": "boolean"}},
}
DECK_SCHEMA = {
    "type": "object",
    "required": ["_format_version", "services"],
    "additionalProperties": False,
    "properties": {
        "_format_version": {"enum": ["1.1", "3.0"]},
        "_info": {"type": "object", "properties": {"select_tags": {"type": "array", "items": {"type": "string"}}}},
        "services": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "url"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"}, "url": {"type": "string", "pattern": "^https?://"},
                "connect_timeout": {"type": "integer"}, "read_timeout": {"type": "integer"},
                "write_timeout": {"type": "integer"}, "retries": {"type": "integer"},
                "tags": {"type": "array"}, "plugins": {"type": "array", "items": PLUGIN},
                "routes": {"type": "array", "items": {
                    "type": "object", "required": ["name", "paths"], "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"}, "paths": {"type": "array", "items": {"type": "string"}},
                        "methods": {"type": "array", "items": {"enum": ["GET", "POST", "PUT", "DELETE", "PATCH"]}},
                        "strip_path": {"type": "boolean"}, "preserve_host": {"type": "boolean"},
                        "protocols": {"type": "array", "items": {"enum": ["http", "https"]}},
                        "tags": {"type": "array"}, "plugins": {"type": "array", "items": PLUGIN},
                    }}},
            }}},
        "consumers": {"type": "array", "items": {
            "type": "object", "required": ["username"], "additionalProperties": False,
            "properties": {
                "username": {"type": "string"}, "custom_id": {"type": "string"}, "tags": {"type": "array"},
                "plugins": {"type": "array", "items": PLUGIN},
                "jwt_secrets": {"type": "array", "items": {
                    "type": "object", "required": ["key", "algorithm"], "additionalProperties": False,
                    "properties": {"key": {"type": "string"}, "algorithm": {"enum": ["HS256", "RS256", "ES256"]},
                                   "rsa_public_key": {"type": "string"}, "secret": {"type": "string"}}}},
            }}},
    },
}


@pytest.fixture
def tenants(personas):
    personas.tenant_a.requests_per_minute = 120
    personas.tenant_a.requests_per_day = 5000
    personas.tenant_a.max_concurrent = 7
    personas.tenant_a.save()
    personas.tenant_b.requests_per_minute = 30
    personas.tenant_b.requests_per_day = 900
    personas.tenant_b.save()
    from tests.conftest import make_tenant

    make_tenant("gone-co", status="suspended")
    return personas


def build(kind):
    return exports.build(kind, exports.ExportOptions(
        upstream_url="https://switchyard.example.com", log_endpoint="https://logs.example.com/kong",
        jwks_url="https://idp.example.com/jwks.json"))


def test_the_kong_export_is_a_valid_deck_file_with_per_tenant_rate_limits(tenants):
    artifact = build("kong")
    assert artifact.filename.endswith(".yaml")
    data = yaml.safe_load(artifact.content)
    jsonschema.validate(data, DECK_SCHEMA)
    service = data["services"][0]
    assert service["url"] == "https://switchyard.example.com"
    routes = {r["name"]: r for r in service["routes"]}
    assert routes["switchyard-generate"]["methods"] == ["POST"]
    assert routes["switchyard-generate"]["paths"] == ["~/api/v1/generate$"]
    assert routes["switchyard-models"]["methods"] == ["GET"]
    cache = routes["switchyard-models"]["plugins"][0]
    assert cache["name"] == "proxy-cache" and cache["config"]["cache_ttl"] == 300
    plugins = {p["name"]: p["config"] for p in service["plugins"]}
    assert plugins["jwt"]["key_claim_name"] == "iss"
    assert plugins["http-log"]["http_endpoint"] == "https://logs.example.com/kong"
    consumers = {c["username"]: c for c in data["consumers"]}
    assert set(consumers) == {"tenant-a", "tenant-b"}  # the suspended tenant gets no edge credentials
    limits = {name: c["plugins"][0]["config"] for name, c in consumers.items()}
    assert (limits["tenant-a"]["minute"], limits["tenant-a"]["day"]) == (120, 5000)
    assert (limits["tenant-b"]["minute"], limits["tenant-b"]["day"]) == (30, 900)
    assert all(c["plugins"][0]["name"] == "rate-limiting" for c in consumers.values())
    secret = consumers["tenant-a"]["jwt_secrets"][0]
    assert secret["rsa_public_key"] == '${{ env "DECK_TENANT_A_JWT_PUBLIC_KEY" }}'


def test_the_apigee_bundle_is_well_formed_xml_whose_steps_all_name_existing_policies(tenants):
    artifact = build("apigee")
    bundle = zipfile.ZipFile(io.BytesIO(artifact.content))
    docs = {name: etree.fromstring(bundle.read(name)) for name in bundle.namelist()}
    root = docs["apiproxy/switchyard.xml"]
    assert root.tag == "APIProxy"
    listed = {p.text for p in root.find("Policies")}
    files = {name.rsplit("/", 1)[1][:-4]: doc for name, doc in docs.items() if name.startswith("apiproxy/policies/")}
    assert listed == set(files)
    for name, doc in files.items():
        assert doc.get("name") == name
    proxy = docs["apiproxy/proxies/default.xml"]
    assert proxy.tag == "ProxyEndpoint"
    assert {s.text for s in proxy.iter("Name")} <= set(files)
    assert docs["apiproxy/targets/default.xml"].findtext("HTTPTargetConnection/URL") == "https://switchyard.example.com"
    assert files["Verify-JWT"].tag == "VerifyJWT"
    assert files["Verify-JWT"].find("PublicKey/JWKS").get("uri") == "https://idp.example.com/jwks.json"
    cache = files["Response-Cache-Models"]
    assert cache.tag == "ResponseCache" and cache.findtext("ExpirySettings/TimeoutInSeconds") == "300"
    quotas = {(d.findtext("Identifier") or "", d.get("name")): d for d in files.values() if d.tag == "Quota"}
    counts = {name: (int(d.find("Allow").get("count")), d.findtext("TimeUnit")) for (_, name), d in quotas.items()}
    assert counts == {
        "Quota-tenant-a-minute": (120, "minute"), "Quota-tenant-a-day": (5000, "day"),
        "Quota-tenant-b-minute": (30, "minute"), "Quota-tenant-b-day": (900, "day"),
    }
    flows = {f.get("name"): f for f in proxy.iter("Flow")}
    assert "POST" in flows["generate"].findtext("Condition")
    assert 'issuer = "tenant-a"' in "".join(c.text for c in flows["generate"].iter("Condition"))


def test_the_aws_export_is_a_valid_openapi_3_document_with_integrations_and_usage_plans(tenants):
    artifact = build("aws")
    document = yaml.safe_load(artifact.content)
    validate_openapi(document)
    generate = document["paths"]["/api/v1/generate"]["post"]["x-amazon-apigateway-integration"]
    assert generate["type"] == "http_proxy" and generate["httpMethod"] == "POST"
    assert generate["uri"] == "https://switchyard.example.com/api/v1/generate"
    models = document["paths"]["/api/v1/models"]["get"]["x-amazon-apigateway-integration"]
    assert models["httpMethod"] == "GET"
    stage = document["x-switchyard-stage"]["methodSettings"][0]
    assert stage["cacheTtlInSeconds"] == 300 and stage["resourcePath"] == "/api/v1/models"
    plans = {p["tags"]["switchyard:tenant"]: p for p in document["x-switchyard-usage-plans"]}
    assert set(plans) == {"tenant-a", "tenant-b"}
    assert plans["tenant-a"]["quota"] == {"limit": 5000, "period": "DAY", "offset": 0}
    assert plans["tenant-a"]["throttle"] == {"rateLimit": 2.0, "burstLimit": 7}
    assert plans["tenant-b"]["throttle"]["rateLimit"] == 0.5

    separate = json.loads(build("aws-usage-plans").content)
    assert separate["usagePlans"] == document["x-switchyard-usage-plans"]


def test_the_prometheus_scrape_config_targets_metrics_and_never_contains_the_token(tenants, settings):
    settings.SWITCHYARD_METRICS_TOKEN = "scrape-secret-123"
    data = yaml.safe_load(build("prometheus").content)
    job = data["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["scheme"] == "https"
    assert job["static_configs"][0]["targets"] == ["switchyard.example.com:443"]
    assert job["authorization"]["credentials_file"]
    assert b"scrape-secret-123" not in build("prometheus").content


def test_no_export_carries_a_secret(tenants, settings):
    from apps.gateway.services import create_api_key

    _, secret = create_api_key(actor=tenants.a_admin, tenant=tenants.tenant_a, name="k", user=tenants.a_member)
    for kind in exports.BUILDERS:
        content = build(kind).content
        if kind == "apigee":
            bundle = zipfile.ZipFile(io.BytesIO(content))
            content = b"".join(bundle.read(n) for n in bundle.namelist())
        assert secret.encode() not in content
        assert settings.SECRET_KEY.encode() not in content


def test_a_platform_admin_fetches_each_export_from_the_api_and_it_is_audited(tenants, api_for):
    client = api_for(tenants.platform_admin)
    listing = client.get("/api/v1/integrations/exports/")
    assert listing.status_code == 200
    assert {row["kind"] for row in listing.json()} == set(exports.BUILDERS)
    response = client.get("/api/v1/integrations/exports/kong/", {"upstream_url": "https://sy.internal:8443"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="switchyard-kong.yaml"'
    assert yaml.safe_load(response.content)["services"][0]["url"] == "https://sy.internal:8443"
    zipped = client.get("/api/v1/integrations/exports/apigee/")
    assert zipped.status_code == 200 and zipped["Content-Type"] == "application/zip"
    event = AuditEvent.objects.filter(action="integrations.export.generated").order_by("seq").first()
    assert event.metadata["kind"] == "kong" and len(event.metadata["sha256"]) == 64


def test_the_api_refuses_non_admins_unknown_kinds_and_bad_options(tenants, api_for, client):
    assert api_for(tenants.a_admin).get("/api/v1/integrations/exports/kong/").status_code == 403
    assert client.get("/api/v1/integrations/exports/kong/").status_code in (401, 403)
    admin = api_for(tenants.platform_admin)
    missing = admin.get("/api/v1/integrations/exports/nginx/")
    assert missing.status_code == 404
    bad = admin.get("/api/v1/integrations/exports/kong/", {"upstream_url": "not a url"})
    assert bad.status_code == 400
    assert "upstream_url" in bad.json()["error"]["fields"]


def test_the_console_page_previews_and_downloads_for_platform_admins_only(tenants, client_for):
    admin = client_for(tenants.platform_admin)
    page = admin.get("/integrations/", {"preview": "kong"})
    assert page.status_code == 200
    assert b"Tenant A" in page.content and b"_format_version" in page.content
    download = admin.get("/integrations/aws/download/")
    assert download.status_code == 200
    validate_openapi(yaml.safe_load(download.content))
    assert admin.get("/integrations/kong/download/", {"log_endpoint": "ftp:/x"}).status_code == 400
    assert admin.get("/integrations/nginx/download/").status_code == 404
    assert client_for(tenants.a_admin).get("/integrations/").status_code == 403
    assert client_for(tenants.a_admin).get("/integrations/kong/download/").status_code == 403
