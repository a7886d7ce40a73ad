"""``manage.py audit_erase``: erase a data subject (GDPR art. 17) without breaking the log.

``--card tok_…`` erases a cardholder (``payflow.operations.operator_cardholder_erase``);
``--user NAME`` a person who used the admin (``operator_user_erase``). ``--by`` names who
orders it (the actor, ``command:<by>``) and ``--reason`` why; both are recorded.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ledger import ids
from ledger.exceptions import NotFound
from ledger.models import CardToken
from payflow import operations
from payflow.platform import context


class Command(BaseCommand):
    help = (
        "Erase a cardholder (--card tok_…) or an admin user (--user NAME): their personal "
        "data in rows is emptied and their key destroyed, so what the audit log and the "
        "published events hold of them reads as erased; the log still verifies."
    )

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--card", help="the card token's id (tok_…)")
        target.add_argument("--user", help="the admin user's username")
        parser.add_argument("--reason", required=True, help="why (recorded)")
        parser.add_argument("--by", required=True, help="who orders it (recorded)")

    def handle(self, *args, card, user, reason, by, **options):
        if not by.strip():
            raise CommandError("--by must name who orders the erasure")
        actor = context.AuditContext(**context.system_actor(f"command:{by.strip()[:50]}"))
        with context.replaced(actor):
            try:
                if card:
                    erasure = operations.operator_cardholder_erase(
                        token_id=self._token(card), reason=reason
                    )
                else:
                    erasure = operations.operator_user_erase(
                        user_id=self._user(user), reason=reason
                    )
            except operations.OperatorActionRefused as exc:
                raise CommandError(f"refused: {exc}") from exc
        done = ", ".join(f"{count} {kind}" for kind, count in erasure.anonymised.items())
        self.stdout.write(f"erased {erasure.subject} ({done} anonymised); its key is destroyed")

    def _token(self, public_id: str):
        try:
            token_id = ids.decode("token", public_id.strip())
        except NotFound:
            raise CommandError("--card must be a card token id (tok_…)") from None
        if not CardToken.objects.filter(pk=token_id).exists():
            raise CommandError("no card token has that id")
        return token_id

    def _user(self, username: str):
        found = get_user_model().objects.filter(username=username).values_list("pk", flat=True)
        user_id = found.first()
        if user_id is None:
            raise CommandError("no admin user has that username")
        return user_id
