"""Idempotency-Keys scoped by mode: a test key and a live key of one merchant may use the
same Idempotency-Key without meeting. Existing records are test mode (see
``ledger.0004_livemode``); the new unique constraint exists before the old one goes."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("payflow", "0005_idempotency_fence_and_digest"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencyrecord",
            name="livemode",
            field=models.BooleanField(default=False),
        ),
        migrations.AddConstraint(
            model_name="idempotencyrecord",
            constraint=models.UniqueConstraint(
                fields=("merchant_id", "livemode", "key_digest"),
                name="idempotency_unique_mode_key",
            ),
        ),
        migrations.RemoveConstraint(
            model_name="idempotencyrecord", name="idempotency_unique_key_digest"
        ),
    ]
