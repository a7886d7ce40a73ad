"""The drill's history checker: what the clients were told against what the database, the
audit log and Kafka hold afterwards. In the spirit of Jepsen's Elle: not "did requests
succeed" but "is every answer consistent with one history of the ledger".

Run by the drill (``python -m tests.drill.check HISTORY CONSUMED``) with Django on the
production settings, reading a Galera node that did not take the writes, as root. Prints
one JSON object:

- per operation: ``acknowledged`` (a 2xx) found in the ledger exactly once, in the state
  answered, with its journal entry (else ``lost``); more than one row for its unique
  amount is ``duplicated``; a definite refusal (a 4xx) left no money moved; an operation
  that got no definite answer left nothing or exactly one effect, resolved (never left in
  flight); ``recovered``: it met an error or no answer first, and ends consistent;
- the bank invariants (``ledger_check_invariants``): every entry and the whole journal
  balance per currency, balances equal their lines, refunds ≤ captures, nothing in flight;
- the audit log: every entry sequenced, the log verifies and reconciles with the ledger;
- Kafka: every outbox event published and seen by the drill's consumer, every log index
  on ``audit.events``, and the newest checkpoint on ``audit.checkpoints``.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections import Counter
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payflow.settings")
django.setup()

from django.conf import settings  # noqa: E402 - after django.setup()
from django.core.management import CommandError, call_command  # noqa: E402
from django.db.models import Count  # noqa: E402

from audit.models import AuditEntry, Checkpoint, LogLeaf  # noqa: E402
from ledger import ids  # noqa: E402
from ledger.models import JournalEntry, Merchant, Transaction  # noqa: E402
from ledger.selectors import ledger_check_invariants  # noqa: E402
from outbox.models import OutboxEvent  # noqa: E402

# What a 2xx said, and the states consistent with it later (a captured payment may have
# been refunded or settled since; a payout in transit may have been paid).
ANSWERED_STATES = {
    "payment": {"captured", "settled", "refunded"},
    "authorize_capture": {"captured", "settled", "refunded"},
    "refund": {"pending", "refunded", "settled"},
    "payout": {"pending", "settled"},
}
IN_FLIGHT = {"initiated"}
_PREFIX = {"payment": "payment", "authorize_capture": "payment", "refund": "refund"}
_PREFIX["payout"] = "payout"


def _rows(operation: dict, merchants: list[Merchant]) -> list[Transaction]:
    merchant = merchants[operation["merchant"]]
    kind = operation["kind"]
    query = Transaction.objects.filter(merchant=merchant, amount=operation["amount"])
    if kind in ("payment", "authorize_capture"):
        query = query.filter(type="payment")
    elif kind == "refund":
        parent = ids.decode("payment", operation["payment_id"])
        query = query.filter(type="refund", parent_id=parent)
    else:
        query = query.filter(type="payout")
    return list(query)


def check_operation(operation: dict, merchants: list[Merchant]) -> dict:
    rows = _rows(operation, merchants)
    outcome = operation["outcome"]
    troubled = any(
        attempt["status"] is None or attempt["status"] >= 409 for attempt in operation["attempts"]
    )
    verdict = {"lost": 0, "duplicated": 0, "wrong": 0, "recovered": 0, "problem": ""}
    if len(rows) > 1:
        verdict["duplicated"] = 1
        verdict["problem"] = f"{len(rows)} rows for one operation"
    elif outcome == "ok":
        if not rows:
            verdict["lost"] = 1
            verdict["problem"] = "acknowledged, not in the ledger"
        elif rows[0].status not in ANSWERED_STATES[operation["kind"]]:
            verdict["wrong"] = 1
            verdict["problem"] = f"acknowledged, but {rows[0].status}"
        elif operation["object_id"] != ids.encode(_PREFIX[operation["kind"]], rows[0].pk):
            verdict["wrong"] = 1
            verdict["problem"] = f"answered {operation['object_id']}, the ledger has another"
        elif not JournalEntry.objects.filter(transaction=rows[0]).exists():
            verdict["lost"] = 1
            verdict["problem"] = "acknowledged, no journal entry"
    elif outcome == "refused" and rows:
        # A capture refused after its authorization: the payment stays authorized.
        authorized = operation["kind"] == "authorize_capture" and rows[0].status == "authorized"
        moved = JournalEntry.objects.filter(transaction=rows[0]).exists()
        if rows[0].status not in ("failed", "cancelled") and not authorized:
            verdict["wrong"] = 1
            verdict["problem"] = f"refused ({operation['status']}), but {rows[0].status}"
        elif moved and not authorized:
            verdict["wrong"] = 1
            verdict["problem"] = f"refused ({operation['status']}), but money moved"
    elif rows and rows[0].status in IN_FLIGHT:  # unanswered
        verdict["wrong"] = 1
        verdict["problem"] = "no answer, and still in flight after recovery"
    if troubled and not any(verdict[k] for k in ("lost", "duplicated", "wrong")):
        verdict["recovered"] = 1
    return verdict


def main(argv: list[str]) -> int:
    history = [json.loads(line) for line in Path(argv[1]).read_text().splitlines() if line]
    consumed = [json.loads(line) for line in Path(argv[2]).read_text().splitlines() if line]
    merchants = list(Merchant.objects.filter(name__startswith="drill-").order_by("name"))
    operations = {}
    for operation in history:
        operations[operation["op"]] = check_operation(operation, merchants)

    settings.IN_FLIGHT_ALARM_SECONDS = 0  # after recovery, nothing may still be in flight
    invariants = ledger_check_invariants().problems
    # Balanced and equal to the balances is not enough: a movement booked twice is both.
    # Each transaction has at most one journal entry of each kind.
    twice = (
        JournalEntry.objects.values("transaction", "kind").annotate(n=Count("id")).filter(n__gt=1)
    )
    invariants += [
        f"transaction {row['transaction']} has {row['n']} '{row['kind']}' entries"
        for row in twice[:100]
    ]

    entries, leaves = AuditEntry.objects.count(), LogLeaf.objects.count()
    output = io.StringIO()
    try:
        call_command("audit_verify", stdout=output, stderr=output)
        verified, verify_text = True, output.getvalue()
    except CommandError as exc:
        verified, verify_text = False, f"{exc}\n{output.getvalue()}"
    except Exception as exc:  # reported, with its text, as a failed check
        verified, verify_text = False, f"{type(exc).__name__}: {exc}\n{output.getvalue()}"

    by_topic: dict[str, Counter] = {}
    truncated: dict[str, int] = Counter()  # messages aged out of the broker, per topic
    for record in consumed:
        if "aged_out" in record:
            truncated[record["topic"]] += record["aged_out"]
            continue
        by_topic.setdefault(record["topic"], Counter())[record["id"]] += 1
    transaction_topics = [t for t in by_topic if t.startswith("transactions.")]
    delivered = Counter()
    for topic in transaction_topics:
        delivered.update(by_topic[topic])
    outbox_ids = {str(i) for i in OutboxEvent.objects.values_list("id", flat=True)}
    unpublished = OutboxEvent.objects.exclude(status="published").count()
    log_indexes = {int(i) for i in by_topic.get("audit.events", Counter())}
    first_kept = min(log_indexes, default=0)  # audit.events is one partition, in log order
    newest = Checkpoint.objects.order_by("-size").values_list("size", flat=True).first() or 0
    checkpoint_sizes = {int(i) for i in by_topic.get("audit.checkpoints", Counter())}
    result = {
        "operations": operations,
        "invariants": invariants,
        "audit": {
            "entries": entries,
            "sequenced": leaves,
            "verified": verified,
            "verify_tail": verify_text[-1500:],
            "newest_checkpoint": newest,
        },
        "kafka": {
            "outbox_events": len(outbox_ids),
            "unpublished": unpublished,
            # Not seen, where nothing aged out of the broker (else unverifiable, reported).
            "not_delivered": 0
            if any(truncated[t] for t in transaction_topics)
            else len(outbox_ids - set(delivered)),
            "unverifiable_aged_out": dict(truncated),
            "redelivered": sum(count - 1 for count in delivered.values()),
            "audit_events_missing": len(
                set(range(first_kept if truncated["audit.events"] else 0, leaves)) - log_indexes
            ),
            "newest_checkpoint_published": newest in checkpoint_sizes,
        },
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
