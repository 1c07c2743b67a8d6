"""EncryptedTextField and EncryptedJSONField: plaintext on the attribute, a bound token in the column."""

import uuid

import pytest
from django.db import connection

from apps.keys import services
from apps.keys.errors import DecryptionError, KeyDestroyedError
from apps.keys.fields import Sealed, encrypted_columns

from .sample_models import PlatformSecret, SampleSecret

pytestmark = pytest.mark.django_db


def raw_column(model, pk, column):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_the_attribute_reads_plaintext_and_the_column_holds_a_token():
    row = SampleSecret.objects.create(tenant_id="acme", secret="sk-live-123", details={"ip": "10.0.0.1", "n": 3})
    stored = raw_column(SampleSecret, row.pk, "secret")
    assert stored.startswith("sy1:1:") and "sk-live" not in stored
    assert "10.0.0.1" not in raw_column(SampleSecret, row.pk, "details")

    loaded = SampleSecret.objects.get(pk=row.pk)
    assert loaded.secret == "sk-live-123"
    assert loaded.details == {"ip": "10.0.0.1", "n": 3}


def test_null_stays_null_and_the_empty_string_is_encrypted():
    row = SampleSecret.objects.create(tenant_id="acme", secret="", details=None)
    assert raw_column(SampleSecret, row.pk, "details") is None
    assert raw_column(SampleSecret, row.pk, "secret").startswith("sy1:")
    assert SampleSecret.objects.get(pk=row.pk).secret == ""


def test_changing_the_value_and_saving_seals_it_again():
    row = SampleSecret.objects.create(tenant_id="acme", secret="first")
    row = SampleSecret.objects.get(pk=row.pk)
    row.secret = "second"
    row.save()
    assert SampleSecret.objects.get(pk=row.pk).secret == "second"


def test_a_row_that_is_loaded_but_not_read_is_saved_without_decrypting():
    row = SampleSecret.objects.create(tenant_id="acme", secret="keep me")
    before = raw_column(SampleSecret, row.pk, "secret")
    loaded = SampleSecret.objects.get(pk=row.pk)
    loaded.label = "renamed"
    loaded.save()
    assert raw_column(SampleSecret, row.pk, "secret") == before


def test_a_token_copied_to_another_row_fails_to_decrypt():
    first = SampleSecret.objects.create(tenant_id="acme", secret="row one secret")
    second = SampleSecret.objects.create(tenant_id="acme", secret="row two")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE keys_test_sample_secret SET secret = (SELECT secret FROM keys_test_sample_secret WHERE id = %s) "
            "WHERE id = %s", [first.pk, second.pk])
    with pytest.raises(DecryptionError, match="another tenant, table, row or field"):
        SampleSecret.objects.get(pk=second.pk).secret  # noqa: B018


def test_a_token_copied_to_another_tenants_row_fails_to_decrypt():
    mine = SampleSecret.objects.create(tenant_id="acme", secret="acme only")
    theirs = SampleSecret.objects.create(tenant_id="globex", secret="globex")
    SampleSecret.objects.filter(pk=theirs.pk).update(secret=Sealed(raw_column(SampleSecret, mine.pk, "secret")))
    with pytest.raises(DecryptionError):
        SampleSecret.objects.get(pk=theirs.pk).secret  # noqa: B018


def test_a_token_copied_to_another_field_of_the_same_row_fails_to_decrypt():
    row = SampleSecret.objects.create(tenant_id="acme", secret='"quoted"', details="x")
    SampleSecret.objects.filter(pk=row.pk).update(details=Sealed(raw_column(SampleSecret, row.pk, "secret")))
    with pytest.raises(DecryptionError):
        SampleSecret.objects.get(pk=row.pk).details  # noqa: B018


def test_plaintext_is_refused_where_save_cannot_seal_it():
    row = SampleSecret.objects.create(tenant_id="acme", secret="a")
    with pytest.raises(TypeError, match="encrypted"):
        SampleSecret.objects.filter(pk=row.pk).update(secret="plain")
    row.secret = "b"
    with pytest.raises(TypeError, match="encrypted"):
        SampleSecret.objects.bulk_update([row], ["secret"])
    with pytest.raises(TypeError, match="encrypted"):
        list(SampleSecret.objects.filter(secret="a"))


def test_a_row_without_a_tenant_uses_the_platform_keyring():
    shared = PlatformSecret.objects.create(secret="shared upstream key")
    token = raw_column(PlatformSecret, shared.pk, "secret")
    assert services.decrypt(tenant_id=None, token=token, table="keys_test_platform_secret",
                            row=str(shared.pk), field="secret") == b"shared upstream key"
    orphan = SampleSecret.objects.create(tenant_id=None, secret="no tenant")
    assert SampleSecret.objects.get(pk=orphan.pk).secret == "no tenant"


def test_a_deferred_encrypted_field_loads_and_decrypts_on_access():
    row = SampleSecret.objects.create(tenant_id="acme", secret="lazy")
    loaded = SampleSecret.objects.defer("secret").get(pk=row.pk)
    assert loaded.secret == "lazy"
    loaded.refresh_from_db()
    assert loaded.secret == "lazy"


def test_rows_of_a_tenant_whose_keys_were_destroyed_still_load_and_delete():
    row = SampleSecret.objects.create(tenant_id="acme", secret="gone soon", label="x")
    services.destroy_tenant_keys(tenant_id="acme")
    loaded = SampleSecret.objects.get(pk=row.pk)
    assert loaded.label == "x"
    with pytest.raises(KeyDestroyedError):
        loaded.secret  # noqa: B018
    loaded.delete()


def test_the_registry_lists_every_encrypted_column_of_installed_models():
    labels = [column.label for column in encrypted_columns()]
    assert "keys.SampleSecret.secret" in labels
    assert "keys.SampleSecret.details" in labels
    assert "keys.PlatformSecret.secret" in labels


def test_a_model_without_a_uuid_primary_key_fails_the_system_check():
    from django.db import models

    from apps.keys.fields import EncryptedTextField

    class BadSecret(models.Model):
        secret = EncryptedTextField()

        class Meta:
            app_label = "keys"
            db_table = "keys_test_bad_" + uuid.uuid4().hex[:8]

        def __str__(self):
            return "bad"

    try:
        ids = [error.id for error in BadSecret._meta.get_field("secret").check()]
        assert "keys.E001" in ids
    finally:
        from django.apps import apps

        apps.all_models["keys"].pop("badsecret", None)
        apps.clear_cache()
