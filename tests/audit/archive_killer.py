"""Run the archiver in this process and SIGKILL it at a named step (the kill tests).

    python -m tests.audit.archive_killer <step> <nth> <as-of ISO>

``step`` is one of the archiver's points (``written``: a segment file is in storage, not yet
read back; ``verified``: the segment is marked verified, no entry deleted; ``deleted_batch``:
one batch of a segment's live entries is deleted); the process SIGKILLs itself, without any
cleanup (the lease stays taken), the ``nth`` time it reaches it. Settings come from the
environment (the test passes the test database, the archive directory and the sizes).
"""

import os
import signal
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from django.utils.dateparse import parse_datetime  # noqa: E402

from audit import archive  # noqa: E402
from payflow.platform import context  # noqa: E402

target, nth, as_of = sys.argv[1], int(sys.argv[2]), parse_datetime(sys.argv[3])
reached = 0


def die_at(name: str) -> None:
    global reached
    if name == target:
        reached += 1
        if reached == nth:
            os.kill(os.getpid(), signal.SIGKILL)


if target not in {"written", "verified", "deleted_batch"}:
    sys.exit(f"unknown step {target!r}")
archive._step = die_at
with context.replaced(context.AuditContext(**context.system_actor("task:audit.archive"))):
    archive.audit_archive(now=as_of)
sys.exit(3)  # never reached the step: the test fails on this status
