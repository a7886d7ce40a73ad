from django.core.management.base import BaseCommand, CommandError

from audit.models import LegalHold
from audit.retention import legal_hold_place, legal_hold_release


class Command(BaseCommand):
    help = (
        "Place, release or list legal holds: a held object's audit rows (or, for a merchant, "
        "the rows of everything it owns) are never purged at the end of retention."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        place = actions.add_parser("place", help="place a hold")
        target = place.add_mutually_exclusive_group(required=True)
        target.add_argument("--merchant", help="a merchant id: everything it owns")
        target.add_argument(
            "--object", nargs=2, metavar=("TYPE", "ID"), help="e.g. ledger.transaction <uuid>"
        )
        place.add_argument("--reason", required=True)
        place.add_argument("--by", required=True, help="who orders the hold (name or case)")
        release = actions.add_parser("release", help="release a hold")
        release.add_argument("hold_id", type=int)
        release.add_argument("--by", required=True)
        actions.add_parser("list", help="list the holds in force")

    def handle(self, *args, action, **options):
        if action == "place":
            object_type, object_id = (
                ("ledger.merchant", options["merchant"])
                if options["merchant"]
                else options["object"]
            )
            try:
                hold = legal_hold_place(
                    object_type=object_type,
                    object_id=object_id,
                    reason=options["reason"],
                    placed_by=options["by"],
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"hold {hold.id} placed on {hold.object_type} {hold.object_id}")
        elif action == "release":
            try:
                hold = legal_hold_release(hold_id=options["hold_id"], released_by=options["by"])
            except LegalHold.DoesNotExist as exc:
                raise CommandError(f"no hold {options['hold_id']} in force") from exc
            self.stdout.write(f"hold {hold.id} released")
        else:
            for hold in LegalHold.objects.filter(released_at__isnull=True).order_by("id"):
                self.stdout.write(
                    f"{hold.id}\t{hold.object_type}\t{hold.object_id}\t{hold.placed_by}\t"
                    f"{hold.placed_at:%Y-%m-%d}\t{hold.reason}"
                )
