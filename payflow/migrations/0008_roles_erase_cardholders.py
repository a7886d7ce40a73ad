"""Operators may erase a cardholder (``change`` on card tokens: the admin's "Erase
cardholder data"); the data subjects' keys (audit 0009) exist."""

from django.db import migrations


def roles_sync(apps, schema_editor):
    from payflow.roles import roles_apply  # the roles as the code says (a data migration)

    roles_apply(apps)


class Migration(migrations.Migration):
    dependencies = [("payflow", "0007_roles_for_the_log"), ("audit", "0009_data_subject_keys")]

    operations = [migrations.RunPython(roles_sync, migrations.RunPython.noop)]
