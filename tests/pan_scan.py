"""Find card numbers anywhere in the test database: every column of every table.

``find_pans_in_database(pans)`` reads every row of every table of the connection (found
through ``connection.introspection``, so tables added later are covered without changing
this file) and looks for each PAN in every value: text, JSON, blobs (as bytes) and
numbers alike, since a PAN fits in a BIGINT. Each PAN is looked for in plain digits, in
groups of four separated by spaces and by dashes, and (for blobs) in ASCII and UTF-16.
A ciphertext column is scanned too: the plaintext PAN must not be in it either.

``find_pans_in_text(text, pans)`` does the same for captured log output or query logs.

``card_numbers_in_text`` and ``find_card_numbers_in_database`` look for *any* card number
(a Luhn-valid 13-19 digit run, as the log filter defines it), not only the known ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import connections

from payflow.logging import redact_pans


@dataclass(frozen=True)
class PanHit:
    table: str
    column: str
    pan_last4: str  # which PAN; never the PAN itself in a test report
    form: str  # "digits", "spaced", "dashed", "utf-16"


def pan_forms(pan: str) -> dict[str, str]:
    groups = [pan[i : i + 4] for i in range(0, len(pan), 4)]
    return {"digits": pan, "spaced": " ".join(groups), "dashed": "-".join(groups)}


def _value_hits(value: object, pan: str) -> list[str]:
    if value is None:
        return []
    forms = pan_forms(pan)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        hits = [form for form, text in forms.items() if text.encode("ascii") in raw]
        hits += ["utf-16"] if pan.encode("utf-16-le") in raw else []
        return hits
    text = str(value)
    return [form for form, needle in forms.items() if needle in text]


def find_pans_in_text(text: str, pans: Iterable[str]) -> list[tuple[str, str]]:
    """(last4, form) for each PAN form found in ``text``."""
    return [(pan[-4:], form) for pan in pans for form in _value_hits(text, pan)]


def every_stored_value(using: str = "default") -> Iterator[tuple[str, str, object]]:
    """(table, column, value) for every non-NULL value of every row of every table."""
    connection = connections[using]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            columns = [
                column.name
                for column in connection.introspection.get_table_description(cursor, table)
            ]
            selected = ", ".join(quote(column) for column in columns)
            cursor.execute(f"SELECT {selected} FROM {quote(table)}")  # noqa: S608
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if value is not None:
                        yield table, column, value


def find_pans_in_database(pans: Iterable[str], *, using: str = "default") -> list[PanHit]:
    """Every (table, column, PAN, form) where one of ``pans`` is stored, in any form."""
    pans = list(pans)
    hits = {
        PanHit(table, column, pan[-4:], form)
        for table, column, value in every_stored_value(using)
        for pan in pans
        for form in _value_hits(value, pan)
    }
    return sorted(hits, key=lambda hit: (hit.table, hit.column, hit.pan_last4, hit.form))


#: The public test cards the suite charges (approvals and every simulated decline).
TEST_CARD_NUMBERS = [
    "4242424242424242",
    "4000000000000002",
    "4000000000009995",
    "4000000000000069",
    "4000000000000127",
    "4000000000000119",
    "5555555555554444",
    "378282246310005",
]


# --- any card number, not only the known ones ------------------------------------------

#: Digests and encodings whose digits are not card data: long hex (hashes, fingerprints,
#: HMACs) and base64 (signatures, ciphertexts). A card number hides in neither by chance
#: alone, and masking their digit runs is what produced false alarms.
_NOT_CARD_DATA = re.compile(r"[0-9a-fA-F]{32,}|[A-Za-z0-9+/_-]{40,}={0,2}")


def card_numbers_in_text(text: str) -> list[str]:
    """Every PAN-shaped run in ``text`` (a Luhn-valid 13-19 digit run, spaces or dashes
    allowed; the log filter's rule), shown masked to its last four digits."""
    cleaned = _NOT_CARD_DATA.sub("#", text)
    masked = redact_pans(cleaned)
    if masked == cleaned:
        return []
    return sorted(set(_MASKED.findall(masked)))


_MASKED = re.compile(r"\*[*\s-]*[0-9]{4}")


def find_card_numbers_in_database(*, using: str = "default") -> list[tuple[str, str, str]]:
    """(table, column, masked number) for every PAN-shaped run stored anywhere: every
    column of every table, blobs read as Latin-1."""
    hits = set()
    for table, column, value in every_stored_value(using):
        if isinstance(value, bytes | bytearray | memoryview):
            text = bytes(value).decode("latin-1")
        else:
            text = str(value)
        hits.update((table, column, found) for found in card_numbers_in_text(text))
    return sorted(hits)
