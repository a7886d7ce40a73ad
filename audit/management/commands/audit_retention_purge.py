from django.core.management.base import BaseCommand, CommandError

from audit.management.commands._clock import as_of
from audit.retention import audit_retention_purge
from payflow.platform import context


class Command(BaseCommand):
    help = (
        "Purge archive segments older than AUDIT_RETENTION, leaving a signed record and an "
        "audit row; segments holding rows under legal hold stay. Safe to rerun."
    )

    def add_arguments(self, parser):
        parser.add_argument("--as-of", help="act as if it were this moment (ISO 8601, UTC)")

    def handle(self, *args, **options):
        now = as_of(options.get("as_of"))
        actor = context.system_actor("command:audit_retention_purge")
        with context.replaced(context.AuditContext(**actor)):
            report = audit_retention_purge(now=now)
        if report.skipped:
            raise CommandError(f"not run: {report.skipped}")
        self.stdout.write(
            f"purged {report.segments} segments ({report.rows} rows)"
            + (f", record {report.purge_id}" if report.purge_id else "")
            + f"; {report.files_removed} files removed"
        )
        for held in report.held:
            self.stdout.write(f"kept (legal hold): {held}")
        for problem in report.problems:
            self.stderr.write(f"not purged: {problem}")
        if report.problems:
            raise CommandError(f"{len(report.problems)} segment(s) did not check")
