"""One object's history as a person reads it: what each entry changed, field by field, with
money in major units, and whether the entry is proven in the latest signed checkpoint.

The entry's bytes stay the evidence; this module only reads them (``audit.views.record``
shows both). Amounts are integers of minor units in entries (``docs/audit-formats.md``
§1.1); they are shown in the currency's major units, the raw integer kept beside them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from audit import merkle, tlog
from audit.sequencer import batched, stored_nodes
from ledger import ids
from ledger.currencies import EXPONENTS, to_major

#: Audited fields that hold an amount of minor units (of the object's ``currency``).
MONEY_FIELDS = frozenset(
    {"amount", "captured_amount", "refunded_amount", "charged_back_amount", "balance"}
)


#: Audited fields that name another object, shown by its public id (the UUID on hover).
PUBLIC_ID_FIELDS = {"merchant": "merchant", "card_token": "token"}


@dataclass(frozen=True)
class Shown:
    """A value as the page shows it, and the raw value an entry holds (for a hover)."""

    text: str
    raw: str = ""


_ABSENT = Shown("—")


@dataclass(frozen=True)
class Change:
    field: str
    old: Shown | None  # None: the field did not exist before (an insert, a new field)
    new: Shown | None  # None: the field no longer exists (a delete)


def changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Change]:
    """The fields whose value differs between ``old`` and ``new`` (every field of an
    insert or a delete), in field order."""
    old, new = old or {}, new or {}
    currency = str(new.get("currency") or old.get("currency") or "")
    found = []
    for name in sorted(set(old) | set(new)):
        if name in old and name in new and old[name] == new[name]:
            continue
        found.append(
            Change(
                field=name,
                old=shown(name, old[name], currency) if name in old else None,
                new=shown(name, new[name], currency) if name in new else None,
            )
        )
    return found


def describe(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """``changes`` on one line: ``field: old → new; …`` (``—`` for a side where the field
    does not exist: an insert's or a delete's), money in major units."""
    return "; ".join(
        f"{change.field}: {(change.old or _ABSENT).text} → {(change.new or _ABSENT).text}"
        for change in changes(old, new)
    )


def shown(name: str, value: Any, currency: str = "") -> Shown:
    """One field's value for a person: money in major units with its currency, a journal
    entry's lines one per posting, nested values as compact JSON, absent values as ``—``."""
    if value is None:
        return Shown("—")
    if name in MONEY_FIELDS and currency in EXPONENTS and _is_integer(value):
        return Shown(f"{to_major(int(value), currency)} {currency}", f"{value} minor units")
    if name in PUBLIC_ID_FIELDS and isinstance(value, str):
        try:
            return Shown(ids.encode(PUBLIC_ID_FIELDS[name], uuid.UUID(value)), value)
        except ValueError:
            return Shown(value)
    if name == "lines" and isinstance(value, list):
        return Shown("; ".join(_line(line) for line in value), _compact(value))
    if isinstance(value, (dict, list)):
        return Shown(_compact(value))
    if isinstance(value, bool):
        return Shown("yes" if value else "no")
    return Shown(str(value))


def _line(line: Any) -> str:
    if not isinstance(line, dict):
        return _compact(line)
    amount, currency = str(line.get("amount")), str(line.get("currency", ""))
    if _is_integer(amount) and currency in EXPONENTS:
        money = f"{to_major(int(amount), currency)} {currency}"
    else:
        money = f"{amount} {currency}"
    return f"{line.get('kind', '')} account {line.get('account', '')}: {money}"


def _is_integer(value: Any) -> bool:
    text = str(value)
    return text.lstrip("-").isdigit() and text.isascii()


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def proven(entries: Iterable[tuple[int, str]], size: int, root_hex: str) -> dict[int, bool]:
    """For each (log index, entry hash) below ``size``: whether its inclusion proof, built
    from the stored tree (every node read in one query), leads to the signed ``root``. An
    entry whose proof needs a node the log lacks is not proven (False)."""
    root = bytes.fromhex(root_hex)
    wanted = [(index, digest) for index, digest in entries if index < size]
    indexes = [index for index, _ in wanted]
    paths: list[list[bytes] | None]
    try:
        paths = list(batched(lambda get: tlog.inclusion_proofs(indexes, size, get)))
    except LookupError:  # some node is missing: prove each on its own, to name which
        paths = [_path_or_none(index, size) for index in indexes]
    return {
        index: path is not None
        and merkle.verify_inclusion(bytes.fromhex(digest), index, size, path, root)
        for (index, digest), path in zip(wanted, paths, strict=True)
    }


def _path_or_none(index: int, size: int) -> list[bytes] | None:
    try:
        return tlog.inclusion_proof(index, size, stored_nodes)
    except LookupError:
        return None
