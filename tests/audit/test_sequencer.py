"""The sequencer: committed entries into one Merkle log, sealed by signed C2SP checkpoints,
exactly once, under a lease, published to Kafka in log order (issue 15)."""

from __future__ import annotations

import base64
import datetime
import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection

from audit import merkle, tlog
from audit.models import AuditEntry, Checkpoint, LogLeaf, LogNode
from audit.sequencer import (
    SigningKeyMissing,
    log_size,
    sequencer_lag_seconds,
    signing_key_from_environment,
)
from audit.verify import verify_log
from ledger.services.refunds import refund_create
from tests.audit.chainseed import seed_chain
from tests.audit.conftest import TEST_SIGNER_KEY, sequence, test_sequencer
from tests.ledger.conftest import pay

pytestmark = pytest.mark.django_db(transaction=True)


def stored_nodes(keys):
    wanted = {tlog.node_key(level, index): (level, index) for level, index in keys}
    rows = LogNode.objects.filter(key__in=list(wanted)).values_list("key", "hash")
    return {wanted[key]: bytes(digest) for key, digest in rows}


def test_every_committed_entry_becomes_one_leaf_and_the_checkpoint_signs_the_root(merchant):
    payment = pay(merchant, amount=5000)
    refund_create(payment=payment, amount=100)
    sequencer = sequence()
    entries = list(AuditEntry.objects.order_by("id").values_list("id", "hash"))
    leaves = list(LogLeaf.objects.order_by("index").values_list("entry_id", flat=True))
    assert leaves == [entry_id for entry_id, _ in entries]
    assert sequencer.size == log_size() == len(entries)
    checkpoint = Checkpoint.objects.get()
    signed = tlog.verify_note(checkpoint.note, tlog.Verifier(settings.AUDIT_PUBLIC_KEY))
    expected_root = merkle.merkle_root(bytes.fromhex(digest) for _, digest in entries)
    assert (signed.origin, signed.size, signed.root) == (
        "payflow.test/audit",
        len(entries),
        expected_root,
    )
    assert checkpoint.note.startswith(
        f"payflow.test/audit\n{len(entries)}\n{base64.b64encode(expected_root).decode()}\n"
        "\n— payflow.test/audit "
    )
    assert verify_log().ok


def test_inclusion_and_consistency_proofs_come_from_stored_nodes_and_verify(merchant):
    for amount in (100, 200, 300):
        pay(merchant, amount=amount)
        sequence()
    checkpoints = list(Checkpoint.objects.order_by("size"))
    assert len(checkpoints) == 3
    old, new = checkpoints[0], checkpoints[-1]
    proof = tlog.consistency_proof(old.size, new.size, stored_nodes)
    assert merkle.verify_consistency(
        old.size, new.size, bytes.fromhex(old.root), bytes.fromhex(new.root), proof
    )
    for index, entry_id in LogLeaf.objects.order_by("index").values_list("index", "entry_id"):
        digest = AuditEntry.objects.get(pk=entry_id).hash
        path = tlog.inclusion_proof(index, new.size, stored_nodes)
        assert merkle.verify_inclusion(
            bytes.fromhex(digest), index, new.size, path, bytes.fromhex(new.root)
        )


def test_an_entry_committed_late_below_the_head_is_sequenced_exactly_once(merchant):
    """Galera interleaves ids across nodes: an entry may commit after a higher id was
    sequenced. Simulated: ids are left free, later entries sequenced, then an entry with a
    free id below the head commits."""
    pay(merchant)
    sequence()
    top = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first()
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE audit_auditentry AUTO_INCREMENT = {top + 10}")
    pay(merchant, amount=777)
    sequencer = test_sequencer(settle_seconds=3600.0)
    assert sequencer.claim()
    sequencer.load()
    sequencer.step()
    assert sequencer.highest > top + 5
    seed_chain(
        1,
        start=datetime.datetime.now(datetime.UTC),
        end=datetime.datetime.now(datetime.UTC),
        objects=1,
    )
    straggler = AuditEntry.objects.order_by("-id").first()
    with connection.cursor() as cursor:  # the same entry, as if it had been given id top+5
        cursor.execute("SELECT * FROM audit_auditentry WHERE id = %s", [straggler.id])
        row = list(cursor.fetchone())
        names = [column[0] for column in cursor.description]
    from tests.audit.conftest import raw, triggers_dropped

    with triggers_dropped():
        raw("DELETE FROM audit_auditentry WHERE id = %s", [straggler.id])
    row[names.index("id")] = top + 5
    columns, marks = ", ".join(names), ", ".join(["%s"] * len(names))
    raw(f"INSERT INTO audit_auditentry ({columns}) VALUES ({marks})", row)  # noqa: S608
    sequencer.step()
    sequencer.step()
    sequencer.release()
    leaves = list(LogLeaf.objects.values_list("entry_id", flat=True))
    assert leaves.count(top + 5) == 1
    assert sorted(leaves) == sorted(AuditEntry.objects.values_list("id", flat=True))
    assert verify_log(reconcile=False).ok


def test_a_second_sequencer_waits_for_the_lease_and_never_appends(merchant):
    pay(merchant)
    first, second = test_sequencer(), test_sequencer()
    assert first.claim()
    assert not second.claim()
    first.load()
    first.step()
    from audit.sequencer import LeaseLost

    second.load()
    with pytest.raises(LeaseLost):  # even if it tried, its append transaction is fenced
        second._append([(10**12, "0" * 64)])
    first.release()
    assert second.claim()
    second.release()
    assert verify_log(reconcile=False).ok


def test_only_the_sequencer_reads_the_signing_key(monkeypatch):
    monkeypatch.delenv("AUDIT_SIGNING_KEY", raising=False)
    monkeypatch.delenv("AUDIT_SIGNING_KEY_FILE", raising=False)
    with pytest.raises(SigningKeyMissing, match="needs its signing key"):
        signing_key_from_environment()
    monkeypatch.setenv("AUDIT_SIGNING_KEY", tlog.generate_signer_key("payflow.test/audit"))
    with pytest.raises(SigningKeyMissing, match="does not match AUDIT_PUBLIC_KEY"):
        signing_key_from_environment()
    monkeypatch.setenv("AUDIT_SIGNING_KEY", TEST_SIGNER_KEY)
    assert signing_key_from_environment().name == "payflow.test/audit"
    assert not hasattr(settings, "AUDIT_SIGNING_KEY")


def test_the_lag_reports_entries_waiting_to_be_sealed(merchant):
    pay(merchant)
    assert sequencer_lag_seconds() >= 0.0
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
    assert sequencer_lag_seconds(later) > 29
    sequence()
    assert sequencer_lag_seconds(later) == 0.0


def test_the_sequencer_process_seals_within_two_seconds_and_stops_on_sigterm(merchant, tmp_path):
    key = tmp_path / "signing.key"
    key.write_text(TEST_SIGNER_KEY)
    env = {
        **os.environ,
        "AUDIT_SIGNING_KEY_FILE": str(key),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    env["DATABASE_URL"] = _database_url()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "audit_sequencer", "--no-publish"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        pay(merchant)
        written = AuditEntry.objects.count()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if Checkpoint.objects.filter(size__gte=written).exists():
                break
            time.sleep(0.1)
        assert Checkpoint.objects.filter(size__gte=written).exists()
        started = time.monotonic()
        pay(merchant, amount=4321)
        written = AuditEntry.objects.count()
        while not Checkpoint.objects.filter(size__gte=written).exists():
            assert time.monotonic() - started < 2.0, "not sealed within 2 s"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0, output
    assert verify_log().ok


def _database_url():
    name = connection.settings_dict["NAME"]
    return f"mysql://root@127.0.0.1:3306/{name}"


def test_an_entry_the_sequencer_left_out_is_unsequenced_however_the_counts_fall(merchant, settings):
    # Verification counts the old live entries it read from the log against the table
    # (one COUNT) and looks for the missing ones only when the numbers differ: a payment
    # sequenced, then one whose entries never reach the log.
    sequenced = pay(merchant, amount=1000)
    sequence()
    left_out = pay(merchant, amount=2000)
    settings.AUDIT_SEQUENCER_MAX_LAG_SECONDS = 0
    report = verify_log(reconcile=False)
    found = {(b.kind, b.object_id) for b in report.breaks if b.kind == "unsequenced"}
    assert ("unsequenced", str(left_out.pk)) in found
    assert all(object_id != str(sequenced.pk) for _, object_id in found)
    sequence()
    report = verify_log(reconcile=False)
    assert report.ok, [b.as_dict() for b in report.breaks]


def test_the_sequencer_process_outlives_a_lost_database_connection(merchant, tmp_path):
    """Reproduced by the drills (issue 19): when the writer Galera node was killed, the
    sequencer exited with ``OperationalError (2013, 'Lost connection to server during
    query')`` and the log stopped growing until someone restarted it. Here its connection
    is cut from the server side (``KILL``), twice, while entries keep coming."""
    key = tmp_path / "signing.key"
    key.write_text(TEST_SIGNER_KEY)
    env = {**os.environ, "AUDIT_SIGNING_KEY_FILE": str(key)}
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", DATABASE_URL=_database_url())
    process = subprocess.Popen(
        [sys.executable, "manage.py", "audit_sequencer", "--no-publish"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    name = connection.settings_dict["NAME"]

    def sealed_within(seconds: float) -> bool:
        written = AuditEntry.objects.count()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if Checkpoint.objects.filter(size__gte=written).exists():
                return True
            time.sleep(0.1)
        return False

    try:
        pay(merchant)
        assert sealed_within(20)
        for round_ in range(2):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT id FROM information_schema.PROCESSLIST WHERE DB = %s AND id <> "
                    "CONNECTION_ID()",
                    [name],
                )
                for (thread,) in cursor.fetchall():
                    cursor.execute(f"KILL CONNECTION {int(thread)}")
            pay(merchant, amount=5000 + round_)
            assert sealed_within(20), f"not sealed after the connection was cut ({round_})"
            assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0, output
    assert "the database is unavailable" in output
    assert verify_log().ok
