"""``manage.py audit_legal_hold``: place, release or list legal holds.

The object is named by its public id (``pay_…``, ``acct_…``, ``tok_…``) or as
``<app>.<model> <id>``; ``--by`` names who orders it, recorded as the actor
(``command:<by>``) of the hold's audit entry.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.models import AuditEntry, LegalHold
from audit.objects import from_public_id, row_exists
from audit.retention import legal_hold_place, legal_hold_release
from payflow.platform import context


class Command(BaseCommand):
    help = (
        "Place, release or list legal holds: a held object's audit rows (or, for a merchant, "
        "the rows of everything it owns) are never purged at the end of retention."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        place = actions.add_parser("place", help="place a hold")
        target = place.add_mutually_exclusive_group(required=True)
        target.add_argument("--merchant", help="a merchant (acct_…): everything it owns")
        target.add_argument(
            "--object",
            nargs="+",
            metavar="ID",
            help="a public id (pay_…, re_…, tok_…) or TYPE ID, e.g. ledger.transaction <uuid>",
        )
        place.add_argument("--reason", required=True)
        place.add_argument("--by", required=True, help="who orders the hold (name or case)")
        release = actions.add_parser("release", help="release a hold")
        release.add_argument("hold_id", type=int)
        release.add_argument("--by", required=True)
        actions.add_parser("list", help="list the holds in force")

    def handle(self, *args, action, **options):
        by = (options.get("by") or "").strip()
        if action != "list" and not by:
            raise CommandError("--by must name who orders it")
        actor = context.AuditContext(**context.system_actor(f"command:{by[:50]}"))
        with context.replaced(actor):
            self._handle(action, by, options)

    def _handle(self, action: str, by: str, options: dict) -> None:
        if action == "place":
            object_type, object_id = self._target(options["merchant"], options["object"])
            try:
                hold = legal_hold_place(
                    object_type=object_type,
                    object_id=object_id,
                    reason=options["reason"],
                    placed_by=by,
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"hold {hold.id} placed on {hold.object_type} {hold.object_id}")
        elif action == "release":
            try:
                hold = legal_hold_release(hold_id=options["hold_id"], released_by=by)
            except LegalHold.DoesNotExist as exc:
                raise CommandError(f"no hold {options['hold_id']} in force") from exc
            self.stdout.write(f"hold {hold.id} released")
        else:
            for hold in LegalHold.objects.filter(released_at__isnull=True).order_by("id"):
                self.stdout.write(
                    f"{hold.id}\t{hold.object_type}\t{hold.object_id}\t{hold.placed_by}\t"
                    f"{hold.placed_at:%Y-%m-%d}\t{hold.reason}"
                )

    def _target(self, merchant: str | None, named: list[str] | None) -> tuple[str, str]:
        words = [merchant] if merchant else list(named or [])
        if len(words) == 1:
            found = from_public_id(words[0])
            if found is None or (merchant and found[0] != "ledger.merchant"):
                expected = (
                    "a merchant id (acct_…)" if merchant else "a public id (pay_…, acct_…, tok_…)"
                )
                raise CommandError(f"no object has that id: give {expected} or TYPE ID")
            words = list(found)
        if len(words) != 2:
            raise CommandError("--object takes a public id, or a type and an id")
        object_type, object_id = words
        if not _recorded(object_type, object_id):
            raise CommandError("nothing is recorded of that object: check its type and id")
        return object_type, object_id


def _recorded(object_type: str, object_id: str) -> bool:
    """Whether the object has entries in the live table or its row exists."""
    live = AuditEntry.objects.filter(object_type=object_type, object_id=object_id).exists()
    return live or row_exists(object_type, object_id)
