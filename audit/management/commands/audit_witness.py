"""``manage.py audit_witness``: an auditor's witness of the audit log.

Keeps the last checkpoint it accepted in a state file. For each new checkpoint from the log's
endpoint it checks the log's signature (``--public-key`` only: it never sees a private key of
the log), fetches the consistency proof from the accepted one and verifies it; a consistent
checkpoint is cosigned (``cosignature/v1`` with the witness's own key) and, with
``--submit``, sent back to the log. An inconsistent one — history rewritten, even if the
log's signing key leaked — raises the alarm: an ``ALARM`` log line, the metric
``payflow_audit_witness_alarm 1`` in ``--metrics-file``, and exit status 3. Needs no database.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit import merkle, tlog

logger = logging.getLogger("audit.witness")

ALARM_EXIT = 3


class Fork(Exception):
    """The log showed a checkpoint that is not an extension of the one accepted before."""


def _read_key(text: str) -> str:
    return Path(text[1:]).read_text().strip() if text.startswith("@") else text.strip()


class Witness:
    def __init__(self, base_url: str, log_key: str, witness_key: str, state: Path) -> None:
        self.base = base_url.rstrip("/") + "/"
        self.log = tlog.Verifier(log_key)
        self.signer = tlog.WitnessSigner(witness_key)
        self.state_path = state

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:  # noqa: S310
            return response.read()

    def state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None

    def save(self, size: int, root: bytes, note: str) -> None:
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({"size": size, "root": base64.b64encode(root).decode(), "note": note})
        )
        temporary.replace(self.state_path)

    def check(self) -> tuple[str, int, str | None]:
        """Look at the log's latest checkpoint: ("new"|"same", size, cosigned note)."""
        note = self._get("checkpoint").decode("utf-8")
        try:
            latest = tlog.verify_note(note, self.log)
        except tlog.NoteError as exc:
            raise Fork(f"the log's checkpoint is not signed by its key: {exc}") from None
        accepted = self.state()
        if accepted is not None:
            old_size, old_root = accepted["size"], base64.b64decode(accepted["root"])
            if latest.size < old_size:
                raise Fork(f"the log shrank from {old_size} to {latest.size}")
            if latest.size == old_size:
                if latest.root != old_root:
                    raise Fork(f"two different trees of size {old_size}")
                if self.shows_my_cosignature(note):
                    return "same", latest.size, None
                # Accepted before, but the log shows no cosignature of ours (it refused or
                # never got it): cosign again, for the caller to send again.
                return (
                    "same",
                    latest.size,
                    tlog.add_cosignature(note, self.signer, int(time.time())),
                )
            answer = json.loads(self._get(f"proof/consistency?from={old_size}&to={latest.size}"))
            proof = [base64.b64decode(node) for node in answer["proof"]]
            if not merkle.verify_consistency(old_size, latest.size, old_root, latest.root, proof):
                raise Fork(
                    f"checkpoint {latest.size} is not consistent with the accepted {old_size}"
                )
        cosigned = tlog.add_cosignature(note, self.signer, int(time.time()))
        self.save(latest.size, latest.root, note)
        return "new", latest.size, cosigned

    def shows_my_cosignature(self, note: str) -> bool:
        mine = tlog.WitnessVerifier(self.signer.verifier_key())
        return bool(tlog.verify_cosignatures(note, [mine]).valid)

    def submit(self, cosigned: str) -> None:
        request = urllib.request.Request(  # noqa: S310
            self.base + "cosignature", data=cosigned.encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()


class Command(BaseCommand):
    help = (
        "Witness the audit log: accept each new checkpoint only with a valid consistency "
        "proof from the last accepted one, cosign it, and raise the alarm (exit status 3) on "
        "any inconsistency."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--log-url", required=True, help="e.g. https://payflow.example/audit/log/"
        )
        parser.add_argument("--public-key", required=True, help="the log's verifier key, or @file")
        parser.add_argument(
            "--witness-key", required=True, help="this witness's signer key, or @file"
        )
        parser.add_argument("--state", required=True, help="file keeping the accepted checkpoint")
        parser.add_argument("--submit", action="store_true", help="send cosignatures to the log")
        parser.add_argument("--once", action="store_true", help="check once, then exit")
        parser.add_argument("--interval", type=float, default=1.0)
        parser.add_argument("--metrics-file", help="write Prometheus text-format metrics here")

    def handle(self, *args, **options):
        try:
            witness = Witness(
                options["log_url"],
                _read_key(options["public_key"]),
                _read_key(options["witness_key"]),
                Path(options["state"]),
            )
        except (ValueError, OSError) as exc:
            raise CommandError(f"cannot start the witness: {exc}") from None
        metrics = Path(options["metrics_file"]) if options["metrics_file"] else None
        while True:
            try:
                outcome, size, cosigned = witness.check()
                if cosigned and options["submit"]:
                    witness.submit(cosigned)
                if outcome == "new":
                    self.stdout.write(f"accepted and cosigned checkpoint {size}")
                self._metrics(metrics, alarm=0, size=size)
            except Fork as fork:
                logger.error("ALARM: audit log fork: %s", fork)
                self.stderr.write(f"ALARM: audit log fork: {fork}")
                self._metrics(metrics, alarm=1, size=None)
                raise SystemExit(ALARM_EXIT) from None
            except (
                urllib.error.URLError,
                http.client.HTTPException,
                OSError,
                ValueError,
                KeyError,
            ) as exc:
                logger.warning("audit witness: the log did not answer usefully: %s", exc)
                if options["once"]:
                    raise CommandError(f"the log did not answer usefully: {exc}") from None
            if options["once"]:
                return
            time.sleep(options["interval"])

    @staticmethod
    def _metrics(path: Path | None, *, alarm: int, size: int | None) -> None:
        if path is None:
            return
        lines = [
            "# HELP payflow_audit_witness_alarm 1 when the witness saw an inconsistent log.",
            "# TYPE payflow_audit_witness_alarm gauge",
            f"payflow_audit_witness_alarm {alarm}",
        ]
        if size is not None:
            lines += [
                "# TYPE payflow_audit_witness_accepted_size gauge",
                f"payflow_audit_witness_accepted_size {size}",
            ]
        path.write_text("\n".join(lines) + "\n")
