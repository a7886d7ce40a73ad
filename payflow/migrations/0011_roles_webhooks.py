"""Operators see webhook endpoints and deliveries and may enable an endpoint or resend an
event (``change``); auditors see them."""

from django.db import migrations


def roles_sync(apps, schema_editor):
    from payflow.roles import roles_apply  # the roles as the code says (a data migration)

    roles_apply(apps)


class Migration(migrations.Migration):
    dependencies = [("payflow", "0010_webhooks")]

    operations = [migrations.RunPython(roles_sync, migrations.RunPython.noop)]
