from django.core.management.base import BaseCommand, CommandError

from audit.verify import incremental_starts, verify_all


class Command(BaseCommand):
    help = (
        "Verify the audit hash chain lane by lane; exit status 1 and the first break per "
        "lane (seq and kind) if anything was altered, removed, inserted or reordered."
    )

    def add_arguments(self, parser):
        parser.add_argument("--lane", type=int, action="append", help="only these lanes")
        parser.add_argument(
            "--incremental",
            action="store_true",
            help="start from the last checkpoint a successful run verified",
        )

    def handle(self, *args, lane=None, incremental=False, **options):
        starts, since = incremental_starts() if incremental else ({}, None)
        if incremental:
            self.stdout.write(
                f"incremental from checkpoint {since}"
                if since
                else "no verified checkpoint yet: verifying in full"
            )
        report = verify_all(lanes=lane, starts=starts)
        for result in report.lanes:
            if result.ok:
                self.stdout.write(
                    f"lane {result.lane:>3}: OK  {result.rows} rows, head {result.head_seq} "
                    f"{result.head_hash[:16]}…"
                )
            else:
                self.stdout.write(
                    f"lane {result.lane:>3}: BREAK at seq {result.break_seq}: "
                    f"{result.break_kind} ({result.detail})"
                )
        if not report.ok:
            raise CommandError(f"audit chain broken in {len(report.breaks)} lane(s)")
        self.stdout.write(f"audit chain OK: {report.rows} rows in {len(report.lanes)} lanes")
