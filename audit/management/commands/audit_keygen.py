"""``manage.py audit_keygen NAME``: a new Ed25519 key pair in the signed-note key formats."""

from django.core.management.base import BaseCommand, CommandError

from audit import tlog


class Command(BaseCommand):
    help = (
        "Print a new key pair for the audit log (--log: the sequencer's; its name is the log's "
        "origin) or for a witness (--witness): the signer key (secret: give it to that process "
        "alone) and the verifier key (public: AUDIT_PUBLIC_KEY or AUDIT_WITNESS_KEYS)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="key name, e.g. payflow.example.com/audit")
        kind = parser.add_mutually_exclusive_group()
        kind.add_argument("--log", action="store_true", default=True)
        kind.add_argument("--witness", action="store_true")

    def handle(self, *args, name, witness=False, **options):
        try:
            if witness:
                signer_text = tlog.generate_witness_key(name)
                verifier = tlog.WitnessSigner(signer_text).verifier_key()
            else:
                signer_text = tlog.generate_signer_key(name)
                verifier = tlog.Signer(signer_text).verifier_key()
        except ValueError as exc:
            raise CommandError(f"{name!r} cannot name a key: {exc}") from None
        self.stdout.write(f"signer key (secret):  {signer_text}")
        self.stdout.write(f"verifier key (public): {verifier}")
