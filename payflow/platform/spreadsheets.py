"""CSV for spreadsheets: cells that a spreadsheet shows as the text they hold.

A cell starting like a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return) would be
evaluated by Excel, LibreOffice or Google Sheets (CSV injection, OWASP): such a cell is
prefixed with ``'``, unless it is a plain number (``-5``, ``-12.50``), which stays a number.
Used by every CSV PayFlow writes (the auditors' evidence export, the admin's exports).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from typing import Any

_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    """``value`` as a CSV cell a spreadsheet will not evaluate (``None`` is empty)."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    if text[:1] in _FORMULA_STARTS and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_chunks(
    header: Iterable[str], rows: Iterable[Iterable[Any]], every: int = 500
) -> Iterator[str]:
    """RFC 4180 CSV text (CRLF line ends) of ``header`` and ``rows``, every cell through
    ``cell``, ``every`` rows per chunk (for a streaming response)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([cell(name) for name in header])
    for count, row in enumerate(rows, start=1):
        writer.writerow([cell(value) for value in row])
        if count % every == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()
