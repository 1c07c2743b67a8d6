"""Models that exist only for the keys tests: one tenant-owned and one platform-owned row type
with encrypted fields, registered under the keys app so the re-encryption job finds them."""

import uuid

from django.db import models

from apps.keys.fields import EncryptedJSONField, EncryptedTextField


class SampleSecret(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    tenant_id = models.CharField(max_length=63, null=True, blank=True)
    label = models.CharField(max_length=100, blank=True)
    secret = EncryptedTextField(null=True, blank=True)
    details = EncryptedJSONField(null=True, blank=True)

    class Meta:
        app_label = "keys"
        db_table = "keys_test_sample_secret"

    def __str__(self):
        return self.label


class PlatformSecret(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    secret = EncryptedTextField(tenant_attr=None)

    class Meta:
        app_label = "keys"
        db_table = "keys_test_platform_secret"

    def __str__(self):
        return str(self.pk)


SAMPLE_MODELS = [SampleSecret, PlatformSecret]
