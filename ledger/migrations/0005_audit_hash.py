"""Every audited row names the hash of its latest audit entry (the transparency log, audit
0007): ``audit_hash``, written by the same statement as each change. Existing rows are
filled in by audit 0008 when it moves the lane-based trail into the log."""

from django.db import migrations, models

AUDITED = [
    "acquirercommand",
    "apikey",
    "cardtoken",
    "journalentry",
    "merchant",
    "transaction",
    "vaultkey",
]


class Migration(migrations.Migration):
    dependencies = [("ledger", "0004_livemode")]

    operations = [
        migrations.AddField(
            model_name=name,
            name="audit_hash",
            field=models.CharField(default="", editable=False, max_length=64),
        )
        for name in AUDITED
    ]
