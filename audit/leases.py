"""Named leases: who runs a singleton job (the archiver, the retention purge), until when.

A lease is a row of ``ArchiveLease`` claimed by a committed conditional ``UPDATE`` (free,
expired or already ours), so two runs at once never do the same work: the second finds
the lease taken and does nothing. A holder renews by claiming again; a crashed holder's
lease expires after ``AUDIT_ARCHIVE_LEASE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import uuid
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from audit.models import ArchiveLease
from payflow.platform import db


def lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@db.atomic
def lease_claim(name: str, owner: str, *, seconds: float | None = None) -> bool:
    """Take (or renew) the named lease if it is free, expired or ours, for ``seconds``
    (default ``AUDIT_ARCHIVE_LEASE_SECONDS``). Committed."""
    now = timezone.now()
    ArchiveLease.objects.get_or_create(name=name)
    claimable = Q(owner="") | Q(owner=owner) | Q(expires_at__lt=now) | Q(expires_at__isnull=True)
    until = now + datetime.timedelta(
        seconds=settings.AUDIT_ARCHIVE_LEASE_SECONDS if seconds is None else seconds
    )
    return bool(
        ArchiveLease.objects.filter(claimable, name=name).update(owner=owner, expires_at=until)
    )


@db.atomic
def lease_release(name: str, owner: str) -> None:
    ArchiveLease.objects.filter(name=name, owner=owner).update(owner="", expires_at=None)


@contextlib.contextmanager
def leased(name: str) -> Iterator[str | None]:
    """Hold the named lease for the block: yields the owner, or None when another run
    holds it (the block then does nothing). Released at the end, also on error."""
    owner = lease_owner()
    if not lease_claim(name, owner):
        yield None
        return
    try:
        yield owner
    finally:
        lease_release(name, owner)
