"""Fixtures of the keys tests: tables for the sample encrypted models, a clean key cache."""

import pytest
from django.db import connection

from apps.keys.services import clear_key_cache

from .sample_models import SAMPLE_MODELS


@pytest.fixture(scope="session", autouse=True)
def sample_tables(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        existing = set(connection.introspection.table_names())
        with connection.schema_editor() as editor:
            for model in SAMPLE_MODELS:
                if model._meta.db_table not in existing:
                    editor.create_model(model)
    yield


@pytest.fixture(autouse=True)
def fresh_key_cache():
    # Each test's keys vanish with its transaction; a cached key must not outlive them.
    clear_key_cache()
    yield
    clear_key_cache()
