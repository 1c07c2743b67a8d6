"""Deleting a tenant destroys its keys: its ciphertexts become unreadable, others' stay readable."""

import pytest
from django.db import connection

from apps.keys import services
from apps.keys.errors import KeyDestroyedError
from apps.keys.models import DataKey, Keyring, KeyState

from .sample_models import SampleSecret

pytestmark = pytest.mark.django_db


def test_deleting_a_tenant_destroys_its_keys_and_its_ciphertexts_become_unreadable(personas):
    from apps.tenants.services import delete_tenant

    services.ensure_tenant_keyring(tenant_id="tenant-a")
    services.rotate_tenant_key(tenant_id="tenant-a", enqueue_reencrypt=False)
    theirs = SampleSecret.objects.create(tenant_id="tenant-a", secret="tenant a data")
    other = SampleSecret.objects.create(tenant_id="tenant-b", secret="tenant b data")
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM keys_test_sample_secret WHERE id = %s", [theirs.pk])
        backup_copy = cursor.fetchone()[0]

    delete_tenant(actor=personas.platform_admin, tenant=personas.tenant_a)

    assert set(DataKey.objects.filter(tenant_id="tenant-a").values_list("state", flat=True)) == {KeyState.DESTROYED}
    assert not DataKey.objects.filter(tenant_id="tenant-a", wrapped_key__isnull=False).exists()
    assert Keyring.objects.get(tenant_id="tenant-a").destroyed_at is not None
    with pytest.raises(KeyDestroyedError, match="destroyed"):
        SampleSecret.objects.get(pk=theirs.pk).secret  # noqa: B018
    with pytest.raises(KeyDestroyedError):
        services.decrypt(tenant_id="tenant-a", token=backup_copy, table="keys_test_sample_secret",
                         row=str(theirs.pk), field="secret")
    assert SampleSecret.objects.get(pk=other.pk).secret == "tenant b data"


def test_destroying_twice_is_harmless_and_counts_only_the_first_time():
    services.ensure_tenant_keyring(tenant_id="acme")
    assert services.destroy_tenant_keys(tenant_id="acme") == 1
    assert services.destroy_tenant_keys(tenant_id="acme") == 0


def test_a_tenant_that_never_encrypted_anything_is_marked_destroyed_so_nothing_new_is_sealed():
    from apps.keys.errors import KeyringDestroyedError

    assert services.destroy_tenant_keys(tenant_id="never-used") == 0
    with pytest.raises(KeyringDestroyedError):
        services.encrypt(tenant_id="never-used", plaintext="late write", table="t", row="1", field="f")
