"""Idempotency-Keys compared byte for byte, claims fenced, records linked to their object.

The unique index moves from ``(merchant_id, key)``, whose MariaDB collation
(``utf8mb4_unicode_ci``) made ``Order-1-aBc`` and ``order-1-AbC`` one key, to
``(merchant_id, key_digest)``, the SHA-256 of the key's bytes. Existing records get their
digest, so keys already stored keep replaying.
"""

import hashlib

from django.db import migrations, models


def fill_key_digest(apps, schema_editor):
    IdempotencyRecord = apps.get_model("payflow", "IdempotencyRecord")
    for record in IdempotencyRecord.objects.only("pk", "key").iterator(chunk_size=1000):
        digest = hashlib.sha256(record.key.encode("utf-8", "surrogatepass")).hexdigest()
        IdempotencyRecord.objects.filter(pk=record.pk).update(key_digest=digest)


class Migration(migrations.Migration):
    dependencies = [
        ("payflow", "0004_job_pause"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencyrecord",
            name="key_digest",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(fill_key_digest, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="idempotencyrecord",
            name="idempotency_unique_key",
        ),
        migrations.AddConstraint(
            model_name="idempotencyrecord",
            constraint=models.UniqueConstraint(
                fields=("merchant_id", "key_digest"), name="idempotency_unique_key_digest"
            ),
        ),
        migrations.AddField(
            model_name="idempotencyrecord",
            name="fence",
            field=models.PositiveIntegerField(default=1),
        ),
        migrations.AddField(
            model_name="idempotencyrecord",
            name="object_kind",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.AddField(
            model_name="idempotencyrecord",
            name="object_id",
            field=models.UUIDField(blank=True, null=True),
        ),
    ]
