"""``manage.py audit_sequencer``: the one process that appends to the audit log and signs it."""

import logging

from django.core.management.base import BaseCommand, CommandError

from audit.sequencer import Sequencer, SigningKeyMissing, run_forever, signing_key_from_environment
from payflow.platform import context, lifecycle

logger = logging.getLogger("audit.sequencer")


class Command(BaseCommand):
    help = (
        "Run the audit log sequencer: append committed audit entries to the Merkle log, sign "
        "a checkpoint at least every AUDIT_CHECKPOINT_INTERVAL seconds while it grows, and "
        "publish entries and checkpoints to Kafka. Reads the signing key from "
        "AUDIT_SIGNING_KEY_FILE (or AUDIT_SIGNING_KEY). A second copy waits for the lease."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--once", action="store_true", help="one step, then exit (tests, drills)"
        )
        parser.add_argument(
            "--no-publish", action="store_true", help="do not publish to Kafka (the log only)"
        )

    def handle(self, *args, once=False, no_publish=False, **options):
        try:
            signer = signing_key_from_environment()
        except (SigningKeyMissing, ValueError, OSError) as exc:
            raise CommandError(str(exc)) from None
        sequencer = Sequencer(signer=signer, publish=not no_publish)
        with context.replaced(context.AuditContext(**context.system_actor("audit-sequencer"))):
            if once:
                if not sequencer.claim():
                    raise CommandError("another audit sequencer holds the lease")
                sequencer.load()
                sequencer.interval = 0
                report = sequencer.step()
                sequencer.release()
                self.stdout.write(
                    f"appended {report.appended}, checkpoint {report.checkpoint}, "
                    f"log size {sequencer.size}"
                )
                return
            stopping = lifecycle.stop_on_signals()
            self.stdout.write(f"audit sequencer for {signer.name}, waiting for the lease")
            run_forever(sequencer, stop=stopping)
