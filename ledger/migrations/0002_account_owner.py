"""Platform accounts unique on MariaDB too: an ``owner`` column under a plain unique index.

The conditional ``UniqueConstraint`` on platform accounts (``merchant IS NULL``) was silently
skipped on MariaDB, which has no partial indexes, so concurrent first payments in a currency
created several ``acquirer_clearing`` accounts for it. This migration:

1. refuses, before it changes anything, when duplicate platform accounts exist: the
   release that shipped it (commit 0233949) merged them into the oldest of each kind and
   currency and recorded each merge (``account.merged``, actor ``migration:ledger.0002``)
   in the lane-based audit trail, whose code the transparency log (audit 0008) replaced.
   A database with duplicates migrates to ledger 0002 with that release first;
2. adds ``owner`` (the merchant's id, or ``"platform"``) and fills it in;
3. replaces both old unique constraints with one on ``(owner, kind, currency)``.

``atomic = False`` as shipped (MariaDB's DDL is not transactional anyway): the refusal runs
first so that a refused run leaves the schema as it was. On a new database there is nothing
to refuse.
"""

from django.db import migrations, models

MIGRATION_ACTOR = "migration:ledger.0002"


def refuse_duplicate_platform_accounts(apps, schema_editor):
    """Before any schema change: duplicates make this migration refuse, leaving the
    database as it found it (the merge that a release recorded in its audit trail is gone;
    see the module docstring)."""
    Account = apps.get_model("ledger", "Account")
    duplicates = (
        Account.objects.using(schema_editor.connection.alias)
        .filter(merchant=None)
        .values("kind", "currency")
        .annotate(n=models.Count("id"))
        .filter(n__gt=1)
        .order_by("kind", "currency")
    )
    groups = [(row["kind"], row["currency"]) for row in duplicates]
    if groups:
        raise RuntimeError(
            f"duplicate platform accounts {groups} must be merged by this migration as "
            "PayFlow commit 0233949 shipped it (its audit trail code is gone): migrate to "
            "ledger 0002 with that release first, then upgrade"
        )


def fill_owner(apps, schema_editor):
    Account = apps.get_model("ledger", "Account")
    accounts = Account.objects.using(schema_editor.connection.alias)
    for account in accounts.exclude(merchant=None).only("pk", "merchant_id"):
        accounts.filter(pk=account.pk).update(owner=str(account.merchant_id))
    accounts.filter(merchant=None).update(owner="platform")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("ledger", "0001_initial"),
        # As shipped: the merge that release ran wrote audit rows (and their outbox mirror).
        ("audit", "0006_archiving_and_retention"),
        ("outbox", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(refuse_duplicate_platform_accounts, migrations.RunPython.noop),
        migrations.AddField(
            model_name="account",
            name="owner",
            field=models.CharField(default="", editable=False, max_length=36),
            preserve_default=False,
        ),
        migrations.RunPython(fill_owner, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="account",
            name="account_unique_per_merchant",
        ),
        migrations.RemoveConstraint(
            model_name="account",
            name="account_unique_platform",
        ),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.UniqueConstraint(
                fields=("owner", "kind", "currency"), name="account_unique_per_owner"
            ),
        ),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("merchant__isnull", True), ("owner", "platform")),
                    models.Q(
                        ("merchant__isnull", False), models.Q(("owner", "platform"), _negated=True)
                    ),
                    _connector="OR",
                ),
                name="account_owner_matches_merchant",
            ),
        ),
    ]
