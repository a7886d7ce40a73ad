"""Platform accounts unique on MariaDB too: an ``owner`` column under a plain unique index.

The conditional ``UniqueConstraint`` on platform accounts (``merchant IS NULL``) was silently
skipped on MariaDB, which has no partial indexes, so concurrent first payments in a currency
created several ``acquirer_clearing`` accounts for it. This migration:

1. adds ``owner`` (the merchant's id, or ``"platform"``) and fills it in;
2. merges duplicate platform accounts into the oldest one (lowest id) of each kind and
   currency: their journal lines are moved to it, so every entry still balances and every
   balance keeps its total (platform accounts keep no running balance), and each merge is
   recorded in the audit trail as ``account.merged`` (actor ``migration:ledger.0002``), with
   the lines it moved, since the audit rows of those journal entries name the old account;
3. replaces both old unique constraints with one on ``(owner, kind, currency)``.

The merge step is its own transaction (``payflow.platform.db.atomic``: the audit rows are written
with it), hence ``atomic = False``. On a new database there is nothing to merge.
"""

from django.db import migrations, models

MIGRATION_ACTOR = "migration:ledger.0002"


def fill_owner_and_merge_duplicates(apps, schema_editor):
    Account = apps.get_model("ledger", "Account")
    for account in Account.objects.exclude(merchant=None).only("pk", "merchant_id"):
        Account.objects.filter(pk=account.pk).update(owner=str(account.merchant_id))
    Account.objects.filter(merchant=None).update(owner="platform")
    duplicates = (
        Account.objects.filter(merchant=None)
        .values("kind", "currency")
        .annotate(n=models.Count("id"))
        .filter(n__gt=1)
    )
    groups = [(row["kind"], row["currency"]) for row in duplicates]
    if not groups:
        return
    alias = schema_editor.connection.alias
    if alias != "default":
        raise RuntimeError(
            f"duplicate platform accounts {groups} must be merged on the default database "
            "(the audit trail records the merge there); run this migration there"
        )
    _merge(apps, groups)


def _merge(apps, groups):
    # The merge was recorded in the lane-based audit trail, which the transparency log
    # (audit 0007) replaced; its code is gone. Databases that had duplicates ran this
    # migration with the release that had it.
    raise RuntimeError(
        f"duplicate platform accounts {groups} must be merged by this migration as PayFlow "
        "commit 0233949 shipped it (its audit trail code is gone): migrate to ledger 0002 "
        "with that release first, then upgrade"
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("ledger", "0001_initial"),
        # The merge writes audit rows (and their outbox mirror): those tables must exist.
        ("audit", "0006_archiving_and_retention"),
        ("outbox", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="account",
            name="owner",
            field=models.CharField(default="", editable=False, max_length=36),
            preserve_default=False,
        ),
        migrations.RunPython(fill_owner_and_merge_duplicates, migrations.RunPython.noop),
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
