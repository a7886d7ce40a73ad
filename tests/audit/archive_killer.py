"""Run the archiver in this process and SIGKILL it at a named step (the kill tests).

    python -m tests.audit.archive_killer <step> <nth> <as-of ISO>

``step`` is one of the archiver's points (``written``, ``verified``, ``deleted_batch``);
the process kills itself, without any cleanup, the ``nth`` time it reaches it. Settings come
from the environment (the test passes the test database and archive directory).
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


archive._step = die_at
with context.replaced(context.AuditContext(**context.system_actor("task:audit.archive"))):
    archive.audit_archive(now=as_of)
sys.exit(3)  # never reached the step: the test fails on this status
