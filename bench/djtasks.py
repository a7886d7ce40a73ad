"""The benchmark's steps that need Django, each run in its own process by ``bench.run``.

``python -m bench.djtasks <step> [json-args]`` prints one JSON object on its last line.
The environment (database, Kafka address, secrets) comes from the orchestrator.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payflow.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from payflow.platform import context, db  # noqa: E402

BENCH_ACTOR = context.AuditContext(**context.system_actor("command:bench"))
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034}


def seed(args: dict) -> dict:
    """A merchant, an API key and a card token to pay with."""
    from ledger import ids
    from ledger.services.api_keys import api_key_create
    from ledger.services.merchants import merchant_create
    from ledger.services.vault import card_tokenize

    with context.replaced(BENCH_ACTOR):
        merchant = merchant_create(name=args.get("name", "Bench Shop"), default_currency="EUR")
        key = api_key_create(merchant=merchant, name="bench")
        token = card_tokenize(merchant=merchant, **CARD)
    return {"api_key": key.secret, "token": ids.encode("token", token.pk)}


def unique_letters() -> str:
    """The clock in nanoseconds written in letters: unique, and never a run of 13 to 19
    digits, which the API would refuse as a card number in a reference or an
    Idempotency-Key (one in ten such runs passes the Luhn check)."""
    number, letters = time.time_ns(), ""
    while number:
        number, digit = divmod(number, 26)
        letters = chr(ord("a") + digit) + letters
    return letters


def payment_body(token: str, marker: str = "{n}") -> str:
    return json.dumps(
        {
            "amount": 1999,
            "currency": "EUR",
            "token": token,
            "cvc": "123",
            "capture": True,
            "external_reference": f"bench-{marker}",
        },
        separators=(",", ":"),
    )


def capture_sql(args: dict) -> dict:
    """Make payments through the whole Django stack in-process (test client: every
    middleware, authentication, idempotency) and record every SQL statement of the last
    one with its parameters, in order, and which transaction it ran in."""
    client = Client(HTTP_HOST="127.0.0.1")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {args['api_key']}"}
    statements: list[dict[str, Any]] = []

    transactions = [0]  # the number of the current transaction; +1 at every commit

    def record(execute, sql, params, many, ctx):
        statements.append(
            {
                "sql": sql,
                "params": _jsonable(params),
                "many": many,
                "transaction": transactions[0] if connection.in_atomic_block else None,
            }
        )
        return execute(sql, params, many, ctx)

    commit = connection.commit

    def counting_commit():
        transactions[0] += 1
        return commit()

    connection.commit = counting_commit

    for number in range(3):  # warm caches; keep the last payment's statements
        statements.clear()
        body = payment_body(args["token"], f"capture-{unique_letters()}-{number}")
        with connection.execute_wrapper(record):
            response = client.post(
                "/v1/payments",
                body,
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY=f"capture-{unique_letters()}",
                **headers,
            )
        if response.status_code != 201:
            raise RuntimeError(f"payment failed: {response.status_code} {response.content!r}")
    return {"statements": statements, "status": response.json()["status"]}


def _jsonable(params: Any) -> Any:
    if params is None:
        return None
    if isinstance(params, dict):
        return {key: _jsonable_value(value) for key, value in params.items()}
    return [_jsonable(p) if isinstance(p, list | tuple) else _jsonable_value(p) for p in params]


def _jsonable_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, datetime.datetime):
        return {"datetime": value.isoformat()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# --- the relay --------------------------------------------------------------------------


def relay_seed(args: dict) -> dict:
    """A backlog of ``rows`` pending outbox events: copies of the events real payments
    wrote (same topics and payloads), each payment copy under a new aggregate id."""
    import MySQLdb

    from outbox import events
    from outbox.models import EventStatus, OutboxEvent

    OutboxEvent.objects.all().delete()

    source = MySQLdb.connect(**args["source"])
    cursor = source.cursor()
    cursor.execute(
        "SELECT aggregate_id, aggregate_type, sequence, event_type, topic, payload "
        "FROM outbox_outboxevent WHERE aggregate_type='payment' ORDER BY id LIMIT 400"
    )
    by_aggregate: dict[str, list] = {}
    for row in cursor.fetchall():
        by_aggregate.setdefault(row[0], []).append(row)
    source.close()
    templates = [group for group in by_aggregate.values() if len(group) >= 2]
    if not templates:
        raise RuntimeError("no payment events to copy: run the payment load first")
    rows, batch, made = int(args["rows"]), [], 0
    while made < rows:
        for group in templates:
            aggregate_id = str(db.uuid7())
            for _, aggregate_type, sequence, event_type, topic, payload in group:
                if made >= rows:
                    break
                payload = json.loads(payload)
                payload["id"] = aggregate_id
                batch.append(
                    OutboxEvent(
                        aggregate_type=aggregate_type,
                        aggregate_id=aggregate_id,
                        sequence=sequence,
                        event_type=event_type,
                        schema_version=1,
                        topic=topic,
                        key=aggregate_id,
                        payload=payload,
                        status=EventStatus.PENDING,
                        relay_partition=events.relay_partition(aggregate_id),
                    )
                )
                made += 1
            if len(batch) >= 2000:
                OutboxEvent.objects.bulk_create(batch)
                batch = []
            if made >= rows:
                break
    if batch:
        OutboxEvent.objects.bulk_create(batch)
    return {"rows": OutboxEvent.objects.filter(status=EventStatus.PENDING).count()}


def relay_drain(args: dict) -> dict:
    """Publish the whole backlog as the relay process does (``RelayLoop`` rounds: every
    partition's lease and batch, one produce and wait for all, one marking transaction),
    until nothing is pending."""
    from outbox import relay
    from outbox.models import EventStatus, OutboxEvent

    relay.get_producer()  # connect first: the producer's start-up is not throughput
    pending = OutboxEvent.objects.filter(status=EventStatus.PENDING).count()
    started = time.perf_counter()
    published = 0
    loop = relay.RelayLoop()
    while True:
        done = loop.step()
        published += done
        if done == 0:
            break
    elapsed = time.perf_counter() - started
    left = OutboxEvent.objects.filter(status=EventStatus.PENDING).count()
    return {
        "pending_before": pending,
        "published": published,
        "left": left,
        "seconds": elapsed,
        "events_per_second": published / elapsed,
    }


def relay_payloads(args: dict) -> dict:
    """Write the backlog's exact Kafka messages (topic, key, value, headers) to a file, so
    the raw producer sends the same bytes."""
    from outbox import events
    from outbox.models import EventStatus, OutboxEvent

    with open(args["out"], "w") as out:
        for event in OutboxEvent.objects.filter(status=EventStatus.PENDING).order_by("id"):
            value = json.dumps(events.envelope(event), separators=(",", ":"))
            headers = [[name, value_.decode()] for name, value_ in events.kafka_headers(event)]
            out.write(json.dumps([event.topic, event.key, value, headers]) + "\n")
    return {"written": args["out"]}


def relay_reset(args: dict) -> dict:
    """Mark every event pending again (between repeated runs of the same backlog)."""
    from outbox.models import OutboxEvent, RelayLease

    updated = OutboxEvent.objects.update(
        status="pending",
        published_at=None,
        kafka_partition=None,
        kafka_offset=None,
        attempts=0,
    )
    RelayLease.objects.update(owner="", expires_at=None)
    return {"reset": updated}


def outbox_pending(args: dict) -> dict:
    """How many outbox events wait for the relay."""
    from outbox.models import EventStatus, OutboxEvent

    return {"pending": OutboxEvent.objects.filter(status=EventStatus.PENDING).count()}


def relay_lag(args: dict) -> dict:
    """Commit-to-delivery lag of the events created in a time window: ``published_at``
    (written once the delivery report came back) minus ``created_at`` (set at insert,
    just before commit), in milliseconds; and how many were still pending."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT TIMESTAMPDIFF(MICROSECOND, created_at, published_at) / 1000.0 "
            "FROM outbox_outboxevent WHERE created_at >= %s AND created_at < %s "
            "AND published_at IS NOT NULL",
            [args["since"], args["until"]],
        )
        lags = [float(row[0]) for row in cursor.fetchall()]
        cursor.execute(
            "SELECT COUNT(*) FROM outbox_outboxevent WHERE created_at >= %s AND created_at < %s "
            "AND published_at IS NULL",
            [args["since"], args["until"]],
        )
        unpublished = cursor.fetchone()[0]
    return {"lags_ms": lags, "unpublished": unpublished}


# --- the audit trail ----------------------------------------------------------------------


def audit_templates(source: dict, limit: int = 400) -> list[list[dict]]:
    """The entries real payments wrote through the API (``source``: the payment database),
    parsed, grouped per payment (its request id), in the order they were written. Only
    entries whose hash checks: the raw-SQL replays copied one payment's bodies under
    random hashes, and the seed's setup entries have no request id."""
    import MySQLdb

    from payflow.platform import trail

    connection = MySQLdb.connect(**source)
    try:
        cursor = connection.cursor()
        cursor.execute(
            "SELECT prev_hash, hash, body, request_id FROM audit_auditentry "
            "WHERE request_id <> '' AND object_type IN ('ledger.transaction', "
            "'ledger.journalentry') ORDER BY id LIMIT %s",
            [limit * 10],
        )
        rows = cursor.fetchall()
    finally:
        connection.close()
    groups: dict[str, list[dict]] = {}
    for prev_hash, digest, body, request_id in rows:
        body = bytes(body)
        if trail.entry_hash(prev_hash, body) == digest:
            groups.setdefault(request_id, []).append(json.loads(body))
    templates = [group for group in groups.values() if len(group) >= 2][:limit]
    if not templates:
        raise RuntimeError("no payment audit entries to copy: run the payment load first")
    return templates


def audit_seed(args: dict) -> dict:
    """``rows`` valid audit entries copied from the entries real payments wrote (same
    event types and bodies, so the same sizes: a transaction's insert and two updates, its
    journal entry), each copy under new object ids, request id and times, chained per
    object and inserted in bulk as the recorder writes them; then sequenced into the log
    and sealed by a signed checkpoint by the real sequencer (its key from
    ``AUDIT_SIGNING_KEY_FILE``, as in production)."""
    from audit.models import AuditEntry, LogLeaf
    from audit.sequencer import Sequencer, signing_key_from_environment
    from payflow.platform import trail

    rows = int(args["rows"])
    templates = audit_templates(args["source"])
    base = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    if AuditEntry.objects.exists() or LogLeaf.objects.exists():
        raise RuntimeError("audit seeding needs an empty audit log (entries and leaves)")
    signer = signing_key_from_environment()
    batch: list[AuditEntry] = []
    made = body_bytes = copies = 0
    while made < rows:
        group = templates[copies % len(templates)]
        copies += 1
        renamed = {fields["object_id"]: str(db.uuid7()) for fields in group}
        request_id = f"{copies:032x}"
        tips: dict[str, str] = {}
        for fields in group:
            if made >= rows:
                break
            text = json.dumps(fields)
            for old, new in renamed.items():
                text = text.replace(old, new)
            copy = json.loads(text)
            created = base + datetime.timedelta(microseconds=made * 1000)
            copy.update(created_at=created, request_id=request_id)
            body = trail.encode_body(copy)
            object_id = copy["object_id"]
            prev = tips.get(object_id, trail.GENESIS_HASH)
            digest = trail.entry_hash(prev, body)
            tips[object_id] = digest
            batch.append(AuditEntry(
                prev_hash=prev, hash=digest, body=body, object_type=copy["object_type"],
                object_id=object_id, action=copy["action"], event_type=copy["event_type"],
                actor_type=copy["actor"]["type"], actor_id=copy["actor"]["id"],
                request_id=request_id, created_at=created,
            ))  # fmt: skip
            made += 1
            body_bytes += len(body)
        if len(batch) >= 5000:
            AuditEntry.objects.bulk_create(batch)
            batch = []
    if batch:
        AuditEntry.objects.bulk_create(batch)
    sequencer = Sequencer(signer=signer, interval=0.0, publish=False, settle_seconds=0.0)
    if not sequencer.claim():
        raise RuntimeError("another audit sequencer holds the lease")
    started = time.perf_counter()
    sequencer.load()
    while sequencer.step().appended:
        pass
    sequencer.step()  # seals what the last append left unsealed
    sequence_seconds = time.perf_counter() - started
    sequencer.release()
    return {
        "rows": rows,
        "templates": len(templates),
        "body_bytes_mean": body_bytes / max(rows, 1),
        "log_size": sequencer.size,
        "checkpoint_size": sequencer.checkpoint_size,
        "sequence_seconds": sequence_seconds,
        "sequenced_per_second": rows / sequence_seconds,
    }


def audit_log_state(args: dict) -> dict:
    """How far the sequencer got with the entries the payments wrote: entries, leaves,
    the newest checkpoint's size, entries not in the log yet, and the sequencer's lag."""
    from django.db.models import Exists, OuterRef

    from audit.models import AuditEntry, Checkpoint, LogLeaf
    from audit.sequencer import sequencer_lag_seconds

    in_log = LogLeaf.objects.filter(entry_id=OuterRef("id"))
    return {
        "entries": AuditEntry.objects.count(),
        "leaves": LogLeaf.objects.count(),
        "checkpoints": Checkpoint.objects.count(),
        "checkpoint_size": Checkpoint.objects.order_by("-size")
        .values_list("size", flat=True)
        .first()
        or 0,
        "unsequenced": AuditEntry.objects.exclude(Exists(in_log)).count(),
        "lag_seconds": sequencer_lag_seconds(),
    }


def audit_verify(args: dict) -> dict:
    """The real verifier over the log (every entry's hash recomputed from its stored body,
    every chain link, every leaf, the tree against the signed checkpoint; entries read from
    the database), then raw SHA-256 over the same bytes in memory; repeated alternately.
    Reconciliation is left out: the seeded entries are of no ledger row."""
    from audit.models import AuditEntry
    from audit.verify import verify_log
    from payflow.platform import trail

    messages = [
        trail.DOMAIN_TAG + bytes.fromhex(prev_hash) + bytes(body)
        for prev_hash, body in AuditEntry.objects.order_by("id")
        .values_list("prev_hash", "body")
        .iterator(chunk_size=5000)
    ]
    runs = []
    for _ in range(int(args.get("repeats", 3))):
        started = time.perf_counter()
        report = verify_log(reconcile=False)
        verify_seconds = time.perf_counter() - started
        if not report.ok:
            raise RuntimeError(f"verification found breaks: {report.as_dict()['breaks'][:1]}")
        started = time.perf_counter()
        for message in messages:
            hashlib.sha256(message).hexdigest()
        raw_seconds = time.perf_counter() - started
        runs.append(
            {
                "rows": report.entries,
                "verify_seconds": verify_seconds,
                "verify_rows_per_second": report.entries / verify_seconds,
                "raw_seconds": raw_seconds,
                "raw_rows_per_second": len(messages) / raw_seconds,
                "bytes": sum(len(m) for m in messages),
            }
        )
    return {"runs": runs}


def audit_archive(args: dict) -> dict:
    """The real archiver over the seeded entries (sealed by the checkpoint the sequencer
    signed, as it requires), with the clock moved past AUDIT_ARCHIVE_AFTER: segment files
    written to a local directory, read back, verified, live entries deleted. Then the log
    verification again, now reading the segment files."""
    import datetime
    import tempfile

    from django.core.files.storage import storages
    from django.utils import timezone

    from audit.archive import audit_archive as archive
    from audit.verify import verify_log
    from payflow.platform import context

    directory = tempfile.mkdtemp(prefix="payflow-bench-archive-")
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": directory},
        },
    }
    storages.__dict__.pop("backends", None)  # re-read STORAGES
    storages._storages = {}
    with context.replaced(context.AuditContext(**context.system_actor("bench"))):
        started = time.perf_counter()
        report = archive(now=timezone.now() + datetime.timedelta(days=3650))
        archive_seconds = time.perf_counter() - started
    if report.refused or report.skipped or not report.rows:
        raise RuntimeError(f"archive refused: {report.as_dict()}")
    started = time.perf_counter()
    verified = verify_log(reconcile=False)
    verify_seconds = time.perf_counter() - started
    if not verified.ok:
        raise RuntimeError(
            f"verification across segments found breaks: {verified.as_dict()['breaks'][:1]}"
        )
    return {
        "measured": True,
        "rows": report.rows,
        "segments": report.segments,
        "archive_seconds": archive_seconds,
        "archive_rows_per_second": report.rows / archive_seconds,
        "verify_archived_rows_per_second": verified.entries / verify_seconds,
        "note": f"{report.rows / archive_seconds:,.0f} entries/s ({report.rows} entries, "
        f"{report.segments} segments, written, read back, verified, deleted); verification "
        f"then reads them from the files at {verified.entries / verify_seconds:,.0f} entries/s",
    }


STEPS = {
    "seed": seed,
    "capture_sql": capture_sql,
    "relay_seed": relay_seed,
    "relay_drain": relay_drain,
    "relay_payloads": relay_payloads,
    "relay_reset": relay_reset,
    "outbox_pending": outbox_pending,
    "relay_lag": relay_lag,
    "audit_seed": audit_seed,
    "audit_log_state": audit_log_state,
    "audit_verify": audit_verify,
    "audit_archive": audit_archive,
}


def main(argv: list[str]) -> int:
    step = STEPS[argv[1]]
    args = json.loads(argv[2]) if len(argv) > 2 else {}
    with context.replaced(BENCH_ACTOR):
        result = step(args)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
