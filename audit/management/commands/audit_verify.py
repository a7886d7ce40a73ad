from django.core.management.base import BaseCommand, CommandError

from audit.runs import incremental_start
from audit.verify import verify_log


class Command(BaseCommand):
    help = (
        "Verify the audit log in log order (every entry's bytes, hash, object chain and leaf; "
        "the tree against every signed checkpoint) and reconcile the ledger against it; exit "
        "status 1 and every break, by kind and object, if anything was altered, removed, "
        "inserted or reordered."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--incremental",
            action="store_true",
            help="start from the checkpoint the last successful run verified (no reconciliation)",
        )
        parser.add_argument(
            "--no-reconcile", action="store_true", help="check the log only, not the ledger rows"
        )

    def handle(self, *args, incremental=False, no_reconcile=False, **options):
        start = incremental_start() if incremental else 0
        if incremental:
            self.stdout.write(
                f"incremental from log size {start}" if start else "no verified run yet: in full"
            )
        report = verify_log(start=start, reconcile=not no_reconcile)
        for item in report.breaks_as_dicts():
            where = f" at index {item['index']}" if item["index"] is not None else ""
            who = item["public_id"] or f"{item['object_type']} {item['object_id']}".strip()
            self.stdout.write(
                f"BREAK {item['kind']}{where}: {who or '(the log)'}: {item['detail']}"
            )
        if not report.ok:
            more = " (more not shown)" if report.truncated else ""
            raise CommandError(f"audit log verification failed: {len(report.breaks)} breaks{more}")
        self.stdout.write(
            f"audit log OK: {report.entries} entries, size {report.size}, "
            f"{report.checkpoints} signed checkpoints (latest at {report.checkpoint_size}), "
            f"{report.rows_reconciled} rows reconciled"
        )
