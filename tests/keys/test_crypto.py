"""Encrypt/decrypt: binding to tenant, table, row and field; nonces; destroyed keys."""

import base64

import pytest

from apps.keys import services
from apps.keys.crypto import parse_token
from apps.keys.errors import DecryptionError, KeyDestroyedError, KeyringDestroyedError
from apps.keys.models import DataKey, KeyState

pytestmark = pytest.mark.django_db

BIND = {"table": "gateway_request", "row": "9b1c", "field": "prompt"}


def test_a_value_round_trips_and_the_token_names_its_key_version():
    token = services.encrypt(tenant_id="acme", plaintext="hello world", **BIND)
    assert token.startswith("sy1:1:")
    assert "hello" not in token
    assert services.decrypt(tenant_id="acme", token=token, **BIND) == b"hello world"


def test_the_first_encrypt_creates_the_tenants_keyring_with_a_primary_version():
    services.encrypt(tenant_id="fresh", plaintext=b"x", **BIND)
    assert list(DataKey.objects.filter(tenant_id="fresh").values_list("version", "state")) == [(1, KeyState.PRIMARY)]


@pytest.mark.parametrize("change", [
    {"tenant_id": "other"},
    {"table": "billing_invoice"},
    {"row": "9b1d"},
    {"field": "response"},
])
def test_a_value_copied_to_another_tenant_table_row_or_field_fails_with_a_clear_error(change):
    token = services.encrypt(tenant_id="acme", plaintext="secret text", **BIND)
    services.ensure_tenant_keyring(tenant_id="other")
    target = {"tenant_id": "acme", **BIND, **change}
    with pytest.raises(DecryptionError) as caught:
        services.decrypt(token=token, **target)
    message = str(caught.value)
    assert "cannot decrypt" in message
    assert "secret text" not in message and token not in message


def test_a_tampered_ciphertext_fails():
    token = services.encrypt(tenant_id="acme", plaintext="secret text", **BIND)
    version, raw = parse_token(token)
    flipped = bytearray(raw)
    flipped[20] ^= 1
    forged = f"sy1:{version}:" + base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
    with pytest.raises(DecryptionError, match="altered"):
        services.decrypt(tenant_id="acme", token=forged, **BIND)


def test_a_token_that_claims_another_version_fails():
    token = services.encrypt(tenant_id="acme", plaintext="secret text", **BIND)
    services.rotate_tenant_key(tenant_id="acme", enqueue_reencrypt=False)
    relabelled = "sy1:2:" + token.split(":", 2)[2]
    with pytest.raises(DecryptionError):
        services.decrypt(tenant_id="acme", token=relabelled, **BIND)


@pytest.mark.parametrize("garbage", ["", "plain text", "sy1:1:!!!", "sy1:0:AAAA", "sy1:1:AAAA"])
def test_something_that_is_not_a_ciphertext_fails_clearly(garbage):
    services.ensure_tenant_keyring(tenant_id="acme")
    with pytest.raises(DecryptionError, match="cannot decrypt"):
        services.decrypt(tenant_id="acme", token=garbage, **BIND)


def test_every_encryption_uses_a_fresh_nonce():
    tokens = [services.encrypt(tenant_id="acme", plaintext="same", **BIND) for _ in range(2000)]
    nonces = {parse_token(t)[1][:12] for t in tokens}
    assert len(nonces) == len(tokens)
    assert len(set(tokens)) == len(tokens)


def test_the_platform_keyring_is_separate_from_every_tenant():
    token = services.encrypt(tenant_id=None, plaintext="shared credential", **BIND)
    assert services.decrypt(tenant_id=None, token=token, **BIND) == b"shared credential"
    services.ensure_tenant_keyring(tenant_id="acme")
    with pytest.raises(DecryptionError):
        services.decrypt(tenant_id="acme", token=token, **BIND)


def test_an_old_ciphertext_after_destruction_fails_clearly():
    token = services.encrypt(tenant_id="acme", plaintext="customer prompt", **BIND)
    services.rotate_tenant_key(tenant_id="acme", enqueue_reencrypt=False)
    newer = services.encrypt(tenant_id="acme", plaintext="customer prompt", **BIND)

    assert services.destroy_tenant_keys(tenant_id="acme") == 2

    for sealed in (token, newer):
        with pytest.raises(KeyDestroyedError, match="destroyed") as caught:
            services.decrypt(tenant_id="acme", token=sealed, **BIND)
        assert "customer prompt" not in str(caught.value)
    assert not DataKey.objects.filter(tenant_id="acme", wrapped_key__isnull=False).exists()
    with pytest.raises(KeyringDestroyedError):
        services.encrypt(tenant_id="acme", plaintext="new data", **BIND)


def test_destruction_reaches_keys_already_cached_in_this_process():
    token = services.encrypt(tenant_id="acme", plaintext="cached", **BIND)
    services.decrypt(tenant_id="acme", token=token, **BIND)
    services.destroy_tenant_keys(tenant_id="acme")
    with pytest.raises(KeyDestroyedError):
        services.decrypt(tenant_id="acme", token=token, **BIND)


def test_a_reused_tenant_id_gets_new_keys_and_the_destroyed_ones_stay_destroyed():
    old = services.encrypt(tenant_id="acme", plaintext="before", **BIND)
    services.destroy_tenant_keys(tenant_id="acme")
    services.ensure_tenant_keyring(tenant_id="acme")
    new = services.encrypt(tenant_id="acme", plaintext="after", **BIND)
    assert new.startswith("sy1:2:")
    assert services.decrypt(tenant_id="acme", token=new, **BIND) == b"after"
    with pytest.raises(KeyDestroyedError):
        services.decrypt(tenant_id="acme", token=old, **BIND)


def test_the_platform_keyring_cannot_be_destroyed():
    with pytest.raises(Exception, match="platform"):
        services.destroy_tenant_keys(tenant_id=None)


@pytest.mark.django_db(transaction=True)
def test_a_key_created_in_a_rolled_back_transaction_is_never_used_afterwards():
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        services.encrypt(tenant_id="acme", plaintext="lost", **BIND)
        raise RuntimeError("roll back")
    assert not DataKey.objects.filter(tenant_id="acme").exists()

    token = services.encrypt(tenant_id="acme", plaintext="kept", **BIND)
    services.clear_key_cache()
    assert services.decrypt(tenant_id="acme", token=token, **BIND) == b"kept"


@pytest.mark.django_db(transaction=True)
def test_a_key_created_in_a_rolled_back_savepoint_is_not_used_later_in_the_same_transaction():
    from django.db import transaction

    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            services.encrypt(tenant_id="acme", plaintext="lost", **BIND)
            raise RuntimeError("roll back the savepoint")
        token = services.encrypt(tenant_id="acme", plaintext="kept", **BIND)
    services.clear_key_cache()
    assert services.decrypt(tenant_id="acme", token=token, **BIND) == b"kept"
