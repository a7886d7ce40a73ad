"""Test and live mode as separate worlds: ``livemode`` on transactions, card tokens,
accounts and journal entries, and accounts unique per (owner, mode, kind, currency).

Before this migration an API key's mode was only a label, so every existing row is
classified as test mode (``livemode`` False): no live acquirer was ever configured, so
no existing money was live. The new unique constraint is added before the old one is
dropped, so accounts are never without one.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0003_acquirer_commands_and_simulator"),
    ]

    operations = [
        *(
            migrations.AddField(
                model_name=model, name="livemode", field=models.BooleanField(default=False)
            )
            for model in ("account", "cardtoken", "journalentry", "transaction")
        ),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.UniqueConstraint(
                fields=("owner", "livemode", "kind", "currency"),
                name="account_unique_per_owner_mode",
            ),
        ),
        migrations.RemoveConstraint(model_name="account", name="account_unique_per_owner"),
        migrations.AddIndex(
            model_name="transaction",
            index=models.Index(
                fields=["merchant", "livemode", "type", "initiated_at"],
                name="txn_merchant_mode_type",
            ),
        ),
        migrations.RemoveIndex(model_name="transaction", name="txn_merchant_type"),
    ]
