from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit.archive import audit_archive
from audit.management.commands._clock import as_of
from payflow.platform import context


class Command(BaseCommand):
    help = (
        "Archive audit rows older than AUDIT_ARCHIVE_AFTER to segment files (write, read "
        "back, verify, then delete the live rows in small batches). Safe to rerun."
    )

    def add_arguments(self, parser):
        parser.add_argument("--lane", type=int, action="append", help="only these lanes")
        parser.add_argument("--as-of", help="act as if it were this moment (ISO 8601, UTC)")

    def handle(self, *args, lane=None, **options):
        now = as_of(options.get("as_of"))
        for number in lane or []:
            if not 0 <= number < settings.AUDIT_LANES:
                raise CommandError(f"--lane {number}: lanes are 0..{settings.AUDIT_LANES - 1}")
        with context.replaced(
            context.AuditContext(**context.system_actor("command:audit_archive"))
        ):
            report = audit_archive(now=now, lanes=lane)
        if report.skipped:
            raise CommandError(f"not run: {report.skipped}")
        self.stdout.write(
            f"archived {report.rows} rows in {report.segments} segments"
            + (f" (finished {report.resumed} left by an earlier run)" if report.resumed else "")
        )
        for number, problem in sorted(report.refused.items()):
            self.stderr.write(f"lane {number} refused: {problem}")
        if report.refused:
            raise CommandError(f"{len(report.refused)} lane(s) refused")
