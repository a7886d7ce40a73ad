"""``livemode`` on outbox events (the transaction's mode), and the merchant's event
listing indexed per mode. Existing events are test mode (see ``ledger.0004_livemode``)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboxevent",
            name="livemode",
            field=models.BooleanField(default=False),
        ),
        migrations.AddIndex(
            model_name="outboxevent",
            index=models.Index(
                fields=["merchant_id", "livemode", "id"], name="outbox_merchant_mode"
            ),
        ),
        migrations.RemoveIndex(model_name="outboxevent", name="outbox_merchant"),
    ]
