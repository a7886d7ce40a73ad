"""Operators can pause a scheduled job; the operator group may (payflow.roles)."""

from django.db import migrations, models


def roles_sync(apps, schema_editor):
    from payflow.roles import roles_apply

    roles_apply(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("payflow", "0003_roles"),
    ]

    operations = [
        migrations.AddField(
            model_name="jobrun",
            name="pause_reason",
            field=models.CharField(blank=True, default="", max_length=500),
        ),
        migrations.AddField(
            model_name="jobrun",
            name="paused_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="jobrun",
            name="paused_by",
            field=models.CharField(blank=True, default="", max_length=150),
        ),
        migrations.RunPython(roles_sync, migrations.RunPython.noop),
    ]
