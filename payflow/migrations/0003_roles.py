"""The operator and auditor groups with their permissions (payflow.roles)."""

from django.db import migrations


def roles_sync(apps, schema_editor):
    from payflow.roles import roles_apply

    roles_apply(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("payflow", "0002_jobrun"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("ledger", "0001_initial"),
        ("audit", "0005_incremental_runs"),
        ("outbox", "0001_initial"),
    ]

    operations = [migrations.RunPython(roles_sync, migrations.RunPython.noop)]
