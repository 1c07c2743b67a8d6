"""No plaintext or key material in logs, Celery task messages and results, or exceptions; the
KEK provider and its development fallback."""

import base64
import json
import logging
import os
import stat

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.core.logging import JsonFormatter
from apps.keys import services, tasks
from apps.keys.errors import DecryptionError, KekUnavailableError
from apps.keys.models import DataKey
from apps.keys.providers import LocalKekProvider, get_kek_provider, load_kek_bytes

from .sample_models import SampleSecret

PLAINTEXTS = ["prompt: the merger closes friday", "sk-upstream-0123456789abcdef"]


def forms_of(secret: bytes) -> list[str]:
    return [secret.hex(), base64.b64encode(secret).decode(), base64.urlsafe_b64encode(secret).decode().rstrip("=")]


def key_material() -> list[str]:
    """Every form in which the KEK, a wrapped key or an unwrapped data key could leak."""
    forms = forms_of(load_kek_bytes())
    provider = get_kek_provider()
    for key in DataKey.objects.exclude(wrapped_key=None):
        wrapped = bytes(key.wrapped_key)
        forms += forms_of(wrapped)
        forms += forms_of(provider.unwrap(wrapped, context=services._wrap_context(key.tenant_id, key.version)))
    return forms


@pytest.mark.django_db(transaction=True)
def test_no_plaintext_or_key_material_reaches_the_logs(caplog):
    caplog.set_level(logging.DEBUG)
    rows = [SampleSecret.objects.create(tenant_id="acme", secret=PLAINTEXTS[0], details={"k": PLAINTEXTS[1]})
            for _ in range(5)]
    services.rotate_tenant_key(tenant_id="acme", reason="test", enqueue_reencrypt=False)
    damaged = rows[0]
    SampleSecret.objects.filter(pk=damaged.pk).update(secret=SampleSecret.objects.values_list("secret", flat=True)
                                                      .get(pk=rows[1].pk))
    services.reencrypt_tenant(tenant_id="acme", batch_size=2)
    with pytest.raises(DecryptionError):
        SampleSecret.objects.get(pk=damaged.pk).secret  # noqa: B018
    material = key_material()
    services.destroy_tenant_keys(tenant_id="acme")
    with pytest.raises(DecryptionError):
        SampleSecret.objects.get(pk=rows[2].pk).secret  # noqa: B018

    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert any("row left on its old key version" in line for line in lines)
    text = "\n".join(lines)
    for secret in PLAINTEXTS + material:
        assert secret not in text


@pytest.mark.django_db
def test_exception_messages_name_the_row_but_never_the_value_or_a_key():
    token = services.encrypt(tenant_id="acme", plaintext=PLAINTEXTS[0], table="t", row="r1", field="f")
    material = key_material()
    messages = []
    for binding in ({"row": "r2"}, {"field": "g"}, {"table": "u"}):
        try:
            services.decrypt(tenant_id="acme", token=token, **{"table": "t", "row": "r1", "field": "f", **binding})
        except DecryptionError as exc:
            messages.append(str(exc) + repr(exc) + repr(exc.__cause__) + repr(exc.__context__))
    assert len(messages) == 3
    for message in messages:
        for secret in [PLAINTEXTS[0], token] + material:
            assert secret not in message
    assert "wrapped" not in repr(DataKey.objects.first())


@pytest.mark.django_db
def test_task_messages_carry_only_a_keyring_id_and_results_only_counts(redis_client, settings):
    services.ensure_tenant_keyring(tenant_id="acme")
    SampleSecret.objects.create(tenant_id="acme", secret=PLAINTEXTS[0])
    assert services.enqueue_reencryption(tenant_id="acme")

    queued = []
    for name in redis_client.scan_iter(match=settings.REDIS_KEY_PREFIX + "celery:*"):
        if redis_client.type(name) == b"list":
            queued += [json.loads(item) for item in redis_client.lrange(name, 0, -1)]
    assert len(queued) == 1
    message = queued[0]
    assert message["headers"]["task"] == "apps.keys.tasks.reencrypt_tenant_rows"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert args == ["acme"] and kwargs == {}
    raw = json.dumps(message)
    for secret in PLAINTEXTS + key_material():
        assert secret not in raw

    result = tasks.reencrypt_tenant_rows.apply(args=["acme"]).get()
    assert result == {"status": "completed", "rows_reencrypted": 0, "rows_failed": 0}
    summary = tasks.rotate_due_keys.apply().get()
    assert set(summary) == {"rotated", "reencryption_queued"}


def test_a_configured_kek_is_used_and_a_malformed_one_is_refused():
    kek = base64.b64encode(os.urandom(32)).decode()
    with override_settings(SWITCHYARD_KEK=kek):
        assert load_kek_bytes() == base64.b64decode(kek)
    for bad in ("not base64!!", base64.b64encode(b"short").decode()):
        with override_settings(SWITCHYARD_KEK=bad), pytest.raises(ImproperlyConfigured) as caught:
            load_kek_bytes()
        assert bad not in str(caught.value)


def test_without_a_kek_development_generates_one_file_readable_only_by_its_owner(tmp_path, caplog):
    with override_settings(SWITCHYARD_KEK=None, SWITCHYARD_DATA_DIR=tmp_path, PRODUCTION=False):
        first = load_kek_bytes()
        second = load_kek_bytes()
    path = tmp_path / "dev-kek.b64"
    assert first == second and len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "generated a development KEK" in caplog.text
    assert base64.b64encode(first).decode() not in caplog.text


def test_production_without_a_kek_refuses_to_start(tmp_path):
    with override_settings(SWITCHYARD_KEK=None, SWITCHYARD_DATA_DIR=tmp_path, PRODUCTION=True):
        with pytest.raises(ImproperlyConfigured, match="SWITCHYARD_KEK"):
            load_kek_bytes()
    assert not (tmp_path / "dev-kek.b64").exists()


def test_a_data_key_wrapped_under_another_kek_or_context_does_not_unwrap():
    mine, other = LocalKekProvider(os.urandom(32)), LocalKekProvider(os.urandom(32))
    wrapped = mine.wrap(b"k" * 32, context=b"acme:1")
    assert mine.unwrap(wrapped, context=b"acme:1") == b"k" * 32
    with pytest.raises(KekUnavailableError):
        other.unwrap(wrapped, context=b"acme:1")
    with pytest.raises(KekUnavailableError):
        mine.unwrap(wrapped, context=b"globex:1")
    assert mine.key_id != other.key_id and mine.key_id.startswith("local:")
