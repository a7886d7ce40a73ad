"""Reconciliation: the ledger's current state against the replay of the audit log.

After the log pass (``audit.verify``), which knows each object's latest entry hash:

- ``row_unaudited``: an audited row whose ``audit_hash`` is no entry of it (inserted or
  changed behind the services' back, e.g. by raw SQL);
- ``row_mismatch``: its audited fields differ from the ``new`` of its latest entry;
- ``row_deleted``: an object with entries whose row is gone;
- ``lines_mismatch``: a journal entry's stored lines differ from those its entry recorded
  (a line added, removed or changed);
- ``balance_mismatch``: a tracked account's balance differs from the sum of its lines.

Reads every audited row once, in chunks, and the latest entry of each by its unique hash.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from django.apps import apps

from audit.models import AuditEntry, LogLeaf
from audit.report import Break, VerificationReport
from ledger.models import Account, JournalLine
from ledger.models.journal import TRACKED_KINDS
from ledger.selectors import account_balance_of_lines, lines_totals
from payflow.platform import personal, trail

AUDITED_MODELS = (
    "ledger.Merchant",
    "ledger.ApiKey",
    "ledger.VaultKey",
    "ledger.CardToken",
    "ledger.Transaction",
    "ledger.AcquirerCommand",
    "ledger.JournalEntry",
)
CHUNK = 2000


def reconcile_rows(report: VerificationReport, tips: dict[tuple[str, str], str]) -> None:
    """Add reconciliation breaks to ``report``; ``tips``: (type, id) → latest entry hash."""
    seen: set[tuple[str, str]] = set()
    for label in AUDITED_MODELS:
        model = apps.get_model(label)
        object_type = model._meta.label_lower
        rows = model.objects.order_by("pk")
        chunk: list[Any] = []
        for row in rows.iterator(chunk_size=CHUNK):
            chunk.append(row)
            if len(chunk) >= CHUNK:
                _reconcile_chunk(report, object_type, chunk, tips, seen)
                chunk = []
        if chunk:
            _reconcile_chunk(report, object_type, chunk, tips, seen)
    audited_types = {apps.get_model(label)._meta.label_lower for label in AUDITED_MODELS}
    for object_type, object_id in tips:
        if object_type in audited_types and (object_type, object_id) not in seen:
            report.add(Break("row_deleted", object_type, object_id, None, "the row is gone"))
    _reconcile_balances(report)


def _reconcile_chunk(
    report: VerificationReport,
    object_type: str,
    rows: list[Any],
    tips: dict[tuple[str, str], str],
    seen: set[tuple[str, str]],
) -> None:
    found = {
        digest: (entry_id, object_id, body)
        for digest, entry_id, object_id, body in AuditEntry.objects.filter(
            hash__in=[row.audit_hash for row in rows if row.audit_hash], object_type=object_type
        ).values_list("hash", "id", "object_id", "body")
    }
    recorded_values = {
        digest: json.loads(bytes(body))["new"] or {} for digest, (_, _, body) in found.items()
    }
    personal.prefetch_keys(recorded_values.values())  # one read for the chunk's subjects
    # Entries committed after the log pass read their leaves are not in `tips` yet: a row
    # whose latest entry is one of those is pending, not unaudited (an entry that stays
    # unsequenced is reported as `unsequenced`).
    sequenced = set(
        LogLeaf.objects.filter(
            entry_id__in=[entry_id for entry_id, _, _ in found.values()]
        ).values_list("entry_id", flat=True)
    )
    lines = _journal_lines(rows) if object_type == "ledger.journalentry" else {}
    for row in rows:
        object_id = str(row.pk)
        key = (object_type, object_id)
        seen.add(key)
        report.rows_reconciled += 1
        entry = found.get(row.audit_hash)
        pending = entry is not None and entry[1] == object_id and entry[0] not in sequenced
        if not row.audit_hash or (tips.get(key) != row.audit_hash and not pending):
            report.add(
                Break(
                    "row_unaudited",
                    object_type,
                    object_id,
                    None,
                    "its audit_hash is not its latest entry",
                )
            )
            continue
        values = recorded_values.get(row.audit_hash)
        if values is None:
            continue  # the latest entry is archived: its hash matched, its values are in the file
        recorded = dict(personal.reveal_values(object_type, object_id, values))
        current = trail.canonical_values(row.snapshot())
        recorded_lines = recorded.pop("lines", None)
        changed = sorted(
            name
            for name in set(current) | set(recorded)
            # a value sealed for a subject erased since cannot be compared: it is gone
            if current.get(name) != recorded.get(name) and recorded.get(name) != personal.ERASED
        )
        if changed:
            report.add(
                Break(
                    "row_mismatch",
                    object_type,
                    object_id,
                    None,
                    f"fields differ: {', '.join(changed)}",
                )
            )
        if object_type == "ledger.journalentry" and lines.get(row.pk, []) != recorded_lines:
            report.add(
                Break(
                    "lines_mismatch",
                    object_type,
                    object_id,
                    None,
                    "the stored lines are not the posted ones",
                )
            )


def _journal_lines(rows: list[Any]) -> dict[Any, list[dict[str, str]]]:
    found: dict[Any, list[dict[str, str]]] = defaultdict(list)
    query = (
        JournalLine.objects.filter(entry_id__in=[row.pk for row in rows])
        .order_by("id")
        .values_list("entry_id", "account_id", "account__kind", "amount", "currency")
    )
    for entry_id, account_id, kind, amount, currency in query:
        found[entry_id].append(
            trail.canonical_values(
                {"account": account_id, "kind": kind, "amount": amount, "currency": currency}
            )
        )
    return found


def _reconcile_balances(report: VerificationReport) -> None:
    sums = lines_totals()
    for account in Account.objects.filter(kind__in=TRACKED_KINDS):
        derived = account_balance_of_lines(account, sums.get(account.pk, 0))
        if account.balance != derived:
            report.add(
                Break(
                    "balance_mismatch",
                    "ledger.account",
                    str(account.pk),
                    None,
                    f"holds {account.balance}, its lines sum to {derived}",
                )
            )
