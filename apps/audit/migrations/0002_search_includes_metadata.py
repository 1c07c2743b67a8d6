import django.contrib.postgres.indexes
import django.contrib.postgres.search
import django.db.models.expressions
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="auditevent", name="audit_event_search"),
        migrations.RemoveField(model_name="auditevent", name="search"),
        migrations.AddField(
            model_name="auditevent",
            name="search",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.db.models.expressions.RawSQL(
                    "to_tsvector('simple'::regconfig, action || ' ' || resource_type || ' ' || resource_id || ' ' || "
                    "actor_label || ' ' || user_agent || ' ' || ip || ' ' || result) || "
                    "jsonb_to_tsvector('simple'::regconfig, metadata, '[\"string\", \"numeric\"]'::jsonb)",
                    [],
                ),
                output_field=django.contrib.postgres.search.SearchVectorField(),
            ),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=django.contrib.postgres.indexes.GinIndex(fields=["search"], name="audit_event_search"),
        ),
    ]
