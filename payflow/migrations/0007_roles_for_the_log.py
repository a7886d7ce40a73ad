"""Auditors read the log's checkpoints and cosignatures (audit 0008); the lane tables are gone."""

from django.db import migrations


def roles_sync(apps, schema_editor):
    from payflow.roles import roles_apply

    roles_apply(apps)


class Migration(migrations.Migration):
    dependencies = [("payflow", "0006_livemode"), ("audit", "0008_transparency_log")]

    operations = [migrations.RunPython(roles_sync, migrations.RunPython.noop)]
