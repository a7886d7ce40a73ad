from django.core.management.base import BaseCommand, CommandError

from audit.archive import audit_archive
from audit.management.commands._clock import as_of
from payflow.platform import context


class Command(BaseCommand):
    help = (
        "Archive audit log entries older than AUDIT_ARCHIVE_AFTER to segment files (write, "
        "read back, verify, then delete the live entries in small batches). Safe to rerun."
    )

    def add_arguments(self, parser):
        parser.add_argument("--as-of", help="act as if it were this moment (ISO 8601, UTC)")

    def handle(self, *args, **options):
        now = as_of(options.get("as_of"))
        with context.replaced(
            context.AuditContext(**context.system_actor("command:audit_archive"))
        ):
            report = audit_archive(now=now)
        if report.skipped:
            raise CommandError(f"not run: {report.skipped}")
        self.stdout.write(
            f"archived {report.rows} entries in {report.segments} segments"
            + (f" (finished {report.resumed} left by an earlier run)" if report.resumed else "")
        )
        for problem in report.refused.values():
            self.stderr.write(f"refused: {problem}")
        if report.refused:
            raise CommandError("the archiver refused to go on (see above); nothing was lost")
