"""The usage log as a table partitioned by month on created_at, with the partitions around now."""

from django.db import migrations

CREATE = """
CREATE TABLE IF NOT EXISTS gateway_usagerecord (
    request_id varchar(128) NOT NULL,
    created_at timestamptz NOT NULL,
    tenant_id varchar(63) NOT NULL,
    api_key_id uuid NULL,
    user_id bigint NULL,
    department_id bigint NULL,
    project_id bigint NULL,
    model varchar(100) NOT NULL,
    deployment_id uuid NULL,
    region_id varchar(63) NOT NULL DEFAULT '',
    endpoint varchar(32) NOT NULL DEFAULT 'generate',
    stream boolean NOT NULL DEFAULT false,
    status varchar(20) NOT NULL,
    status_code smallint NOT NULL,
    error_code varchar(64) NOT NULL DEFAULT '',
    prompt_tokens integer NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens integer NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    cost numeric(18, 8) NULL,
    currency varchar(3) NOT NULL DEFAULT '',
    unpriced boolean NOT NULL DEFAULT false,
    latency_ms double precision NOT NULL,
    ttft_ms double precision NULL,
    attempts smallint NOT NULL DEFAULT 0,
    tags jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (request_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX IF NOT EXISTS gateway_usagerecord_tenant_time ON gateway_usagerecord (tenant_id, created_at);
CREATE INDEX IF NOT EXISTS gateway_usagerecord_key_time ON gateway_usagerecord (api_key_id, created_at);
"""


def create_partitions(apps, schema_editor):
    from apps.gateway.partitions import ensure_partitions_sql

    with schema_editor.connection.cursor() as cursor:
        for statement in ensure_partitions_sql(months_back=1, months_ahead=2):
            cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("gateway", "0001_initial")]

    operations = [
        migrations.RunSQL(CREATE, reverse_sql="DROP TABLE IF EXISTS gateway_usagerecord CASCADE;"),
        migrations.RunPython(create_partitions, migrations.RunPython.noop),
    ]
