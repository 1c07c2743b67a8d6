"""Model fields whose attribute is plaintext and whose column is a ciphertext bound to the row,
and the registry of every such column in the project (what the re-encryption job walks)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django import forms
from django.apps import apps as django_apps
from django.core import checks
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models, router
from django.db.models import Q
from django.db.models.query_utils import DeferredAttribute

from . import crypto, services

logger = logging.getLogger(__name__)


class Sealed(str):
    """A ciphertext token as it sits in the column (what the database returned)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<Sealed ciphertext>"


class EncryptedAttribute(DeferredAttribute):
    """Opens the column's token on first read (so loading a row costs no decryption) and keeps
    whatever the code assigns; the field seals it again on save."""

    def __get__(self, instance, cls=None):
        if instance is None:
            return self
        name = self.field.attname
        if name not in instance.__dict__:
            super().__get__(instance, cls)
        value = instance.__dict__.get(name)
        if isinstance(value, Sealed):
            value = self.field.open(instance, value)
            instance.__dict__[name] = value
        return value

    def __set__(self, instance, value):
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """`secret = EncryptedTextField()`: reads and writes text; stores AES-256-GCM under the
    tenant's data key, bound to tenant, table, row (the pk, set before save) and field.

    `tenant_attr` names the attribute holding the tenant id (dots follow relations); a None
    value, or tenant_attr=None, uses the platform keyring."""

    descriptor_class = EncryptedAttribute
    description = "Text encrypted with the tenant's data key"

    def __init__(self, *args, tenant_attr: str | None = "tenant_id", **kwargs):
        self.tenant_attr = tenant_attr
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if self.tenant_attr != "tenant_id":
            kwargs["tenant_attr"] = self.tenant_attr
        return name, path, args, kwargs

    def check(self, **kwargs):
        errors = super().check(**kwargs)
        pk = getattr(getattr(self, "model", None), "_meta", None) and self.model._meta.pk
        if pk is not None and not (isinstance(pk, models.UUIDField) and pk.has_default()):
            errors.append(checks.Error(
                "A model with an encrypted field needs a UUID primary key with a default (uuid.uuid4): "
                "the row id is bound into the ciphertext and must exist before the row is saved.",
                obj=self, id="keys.E001",
            ))
        return errors

    # Plaintext <-> bytes; the JSON field overrides these two.
    def plaintext_bytes(self, value) -> bytes:
        return str(value).encode()

    def from_plaintext_bytes(self, raw: bytes):
        return raw.decode()

    def tenant_of(self, instance) -> str | None:
        if self.tenant_attr is None:
            return None
        value = instance
        for part in self.tenant_attr.split("."):
            value = getattr(value, part, None)
            if value is None:
                return None
        return str(value.pk) if isinstance(value, models.Model) else str(value)

    def _binding(self, instance) -> dict:
        if instance.pk is None:
            raise ValueError(
                f"{self.model._meta.label}.{self.name} needs the row's primary key before it is encrypted: "
                "give the model a UUID primary key with default=uuid.uuid4"
            )
        return {"tenant_id": self.tenant_of(instance), "table": self.model._meta.db_table,
                "row": str(instance.pk), "field": self.name}

    def open(self, instance, token: str):
        return self.from_plaintext_bytes(services.decrypt(token=token, **self._binding(instance)))

    def seal(self, instance, value) -> Sealed:
        return Sealed(services.encrypt(plaintext=self.plaintext_bytes(value), **self._binding(instance)))

    def from_db_value(self, value, expression, connection):
        return None if value is None else Sealed(value)

    def to_python(self, value):
        return value

    def pre_save(self, model_instance, add):
        value = model_instance.__dict__.get(self.attname)
        if value is None or isinstance(value, Sealed):
            return value
        return self.seal(model_instance, value)

    def get_prep_value(self, value):
        if value is None:
            return None
        if isinstance(value, Sealed):
            return str(value)
        # bulk_update(), QuerySet.update() and lookups bypass pre_save; storing or comparing
        # plaintext there would put it in the column or the query log.
        raise TypeError(
            f"{getattr(self, 'model', None) and self.model._meta.label}.{self.name} is encrypted: write it with "
            "Model.save() (which seals it for its row); it cannot be updated in bulk or filtered by value"
        )

    def value_to_string(self, obj):
        value = obj.__dict__.get(self.attname)
        return str(value) if isinstance(value, Sealed) else None


class EncryptedJSONField(EncryptedTextField):
    """Like EncryptedTextField for any JSON-serialisable value (dicts, lists, numbers)."""

    description = "JSON encrypted with the tenant's data key"

    def __init__(self, *args, encoder=DjangoJSONEncoder, **kwargs):
        self.encoder = encoder
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if self.encoder is not DjangoJSONEncoder:
            kwargs["encoder"] = self.encoder
        return name, path, args, kwargs

    def plaintext_bytes(self, value) -> bytes:
        return json.dumps(value, cls=self.encoder, separators=(",", ":")).encode()

    def from_plaintext_bytes(self, raw: bytes):
        return json.loads(raw)

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": forms.JSONField, "encoder": self.encoder, **kwargs})


@dataclass(frozen=True)
class EncryptedColumn:
    """One column of one concrete model holding tokens, with the queries the re-encryption job
    needs. `reencrypt=False` marks a column whose rows must keep their token (e.g. a hash
    chain covers it): its rows are counted, so the versions they use never retire."""

    model: type[models.Model]
    field_name: str
    attname: str
    tenant_attr: str | None
    reencrypt: bool = True

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.field_name}"

    def tenant_filter(self, ring_id: str) -> Q | None:
        """Rows of this keyring, or None when this column can hold none of them."""
        if self.tenant_attr is None:
            return Q() if ring_id == "" else None
        lookup = self.tenant_attr.replace(".", "__")
        if ring_id == "":
            return Q(**{f"{lookup}__isnull": True}) | Q(**{lookup: ""})
        return Q(**{lookup: ring_id})

    def rows(self, ring_id: str):
        scope = self.tenant_filter(ring_id)
        manager = self.model._base_manager
        if scope is None:
            return manager.none()
        return manager.filter(scope).filter(**{f"{self.attname}__isnull": False})

    def rows_off_version(self, ring_id: str, version: int, *, after=None):
        """(pk, token) of rows not sealed by `version`, in pk order after the cursor."""
        rows = self.rows(ring_id).exclude(**{f"{self.attname}__startswith": crypto.version_prefix(version)})
        if after is not None:
            rows = rows.filter(pk__gt=after)
        return rows.order_by("pk").values_list("pk", self.attname)

    def swap(self, changes: list[tuple[object, str, str]]) -> int:
        """Write each (pk, old token, new token) in one statement, only where the row still holds
        the old token (a row rewritten meanwhile by the application keeps its newer value)."""
        if not changes:
            return 0
        conn = connections[router.db_for_write(self.model)]
        quote = conn.ops.quote_name
        opts = self.model._meta
        column = quote(opts.get_field(self.field_name).column)
        pk_column, pk_type = quote(opts.pk.column), opts.pk.rel_db_type(conn)
        rows = ", ".join(["(%s, %s, %s)"] * len(changes))
        # Identifiers come from model metadata and are quoted; every value is a parameter.
        sql = (
            f"UPDATE {quote(opts.db_table)} AS t SET {column} = v.new "  # noqa: S608
            f"FROM (VALUES {rows}) AS v(pk, old, new) "
            f"WHERE t.{pk_column} = v.pk::{pk_type} AND t.{column} = v.old"
        )
        params = [str(value) for change in changes for value in change]
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount


# Columns that hold tokens written with services.encrypt() directly rather than through an
# encrypted field: (model label, field name, tenant attribute, re-encrypt?).
_registered: dict[tuple[str, str], tuple[str | None, bool]] = {}


def register_encrypted_column(model_label: str, field_name: str, *, tenant_attr: str | None = "tenant_id",
                              reencrypt: bool = True) -> None:
    """Declare a plain text column that holds tokens (sealed with table = db_table, row = pk,
    field = field_name), so rotation counts it and, if `reencrypt`, moves it. Call it from the
    owning app's AppConfig.ready()."""
    _registered[(model_label, field_name)] = (tenant_attr, reencrypt)


def encrypted_columns() -> list[EncryptedColumn]:
    """Every encrypted column of every installed model whose table exists, in a stable order."""
    found = []
    tables: dict[str, set[str]] = {}
    for model in django_apps.get_models():
        opts = model._meta
        if opts.proxy or opts.abstract:
            continue
        columns = [
            EncryptedColumn(model, f.name, f.attname, f.tenant_attr)
            for f in opts.concrete_fields if isinstance(f, EncryptedTextField)
        ]
        for (label, name), (tenant_attr, reencrypt) in _registered.items():
            if label == opts.label:
                field = opts.get_field(name)
                columns.append(EncryptedColumn(model, field.name, field.attname, tenant_attr, reencrypt))
        if not columns:
            continue
        alias = router.db_for_write(model)
        if alias not in tables:
            with connections[alias].cursor() as cursor:
                tables[alias] = set(connections[alias].introspection.table_names(cursor))
        if opts.db_table not in tables[alias]:
            logger.warning("encrypted model has no table yet; skipped", extra={"model": opts.label})
            continue
        found.extend(columns)
    return sorted(found, key=lambda column: column.label)
