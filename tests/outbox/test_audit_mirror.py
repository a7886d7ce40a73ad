"""Audit rows and checkpoints reach Kafka, where a consumer can re-verify them."""

import pytest
from django.conf import settings
from django.utils.dateparse import parse_datetime

from audit import signing
from audit.chain import canonical_bytes, entry_hash
from audit.checkpoints import audit_checkpoint_create
from audit.models import AuditEntry
from tests.ledger.conftest import pay
from tests.outbox.conftest import envelopes
from tests.waiting import drain_outbox

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def test_audit_rows_and_a_checkpoint_reach_kafka_and_reverify_there(broker, merchant):
    # (broker first: it sets the per-test topic prefix the merchant's events are written with)
    pay(merchant, amount=1234)
    audit_checkpoint_create()
    drain_outbox(60)

    total = AuditEntry.objects.count()
    rows, _ = envelopes(broker, ["audit.events"], expected=total)
    [checkpoint], _ = envelopes(broker, ["audit.checkpoints"], expected=1)
    assert len(rows) == total
    # a consumer rebuilds every lane from the messages and recomputes each hash link
    lanes: dict[int, list[dict]] = {}
    for envelope in rows:
        lanes.setdefault(envelope["payload"]["lane"], []).append(envelope["payload"])
    for lane_rows in lanes.values():
        previous = "0" * 64
        for row in sorted(lane_rows, key=lambda r: r["seq"]):
            assert row["prev_hash"] == previous
            fields = dict(row)
            fields["created_at"] = parse_datetime(row["created_at"])
            assert entry_hash(previous, canonical_bytes(fields)) == row["hash"]
            previous = row["hash"]
    # and checks the signed checkpoint with the public key only
    public_key = signing.public_key_from_seed(settings.AUDIT_SIGNING_KEY)
    assert signing.verify_checkpoint(checkpoint["payload"], public_key)
    heads = {h["lane"]: h["hash"] for h in checkpoint["payload"]["body"]["lanes"] if h["seq"]}
    assert heads == {lane: max(r, key=lambda x: x["seq"])["hash"] for lane, r in lanes.items()}
