"""``--as-of``: run a time-based audit job as if it were another moment (a rehearsal)."""

from __future__ import annotations

import datetime

from django.core.management.base import CommandError
from django.utils.dateparse import parse_datetime


def as_of(text: str | None) -> datetime.datetime | None:
    if text is None:
        return None
    try:
        moment = parse_datetime(text)
    except ValueError:  # well formed but not a time (month 13)
        moment = None
    if moment is None:  # what was typed is not repeated: it could be anything
        raise CommandError(
            "--as-of must be an ISO 8601 date and time, e.g. 2027-01-01T00:00:00+00:00"
        )
    if moment.tzinfo is None:
        raise CommandError("--as-of needs a UTC offset, e.g. 2027-01-01T00:00:00+00:00")
    return moment
