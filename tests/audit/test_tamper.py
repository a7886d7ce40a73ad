"""The tamper suite (issue 15): every attack on the trail is named by kind and object.

Each attack is made on MariaDB as a DBA would, dropping the triggers where they would stop
it, after the log was sequenced and signed. The table printed at the end (run with ``-s``)
is the issue's deliverable: attack → detected kind → detected by.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit import tlog
from audit.models import AuditEntry, Checkpoint, LogLeaf, LogNode
from audit.verify import verify_log
from ledger.models import Account, JournalEntry, JournalLine, Transaction
from ledger.models.journal import AccountKind
from ledger.services.refunds import refund_create
from payflow.platform import trail
from tests.audit.conftest import TEST_SIGNER_KEY, raw, rewrite_chain, sequence, triggers_dropped
from tests.ledger.conftest import pay

pytestmark = pytest.mark.django_db(transaction=True)

RESULTS: list[tuple[str, str, str]] = []


@pytest.fixture(scope="module", autouse=True)
def print_the_table():
    yield
    if RESULTS:
        width = max(len(attack) for attack, _, _ in RESULTS)
        print("\n\nattack".ljust(width + 3) + "detected kind".ljust(34) + "detected by")
        for attack, kind, by in RESULTS:
            print(attack.ljust(width + 1) + kind.ljust(34) + by)


@pytest.fixture
def history(merchant):
    """A settled payment with refunds, sequenced and signed: what the attacker changes."""
    payment = pay(merchant, amount=9000)
    for amount in (100, 200):
        refund_create(payment=payment, amount=amount)
    sequence()
    assert verify_log().ok
    return payment


def kinds(report):
    return {(b.kind, b.object_type, b.object_id) for b in report.breaks}


def detected(attack, report, kind, obj=None, by="verification"):
    assert not report.ok, attack
    found = [b for b in report.breaks if b.kind == kind]
    assert found, (attack, [b.as_dict() for b in report.breaks])
    if obj is not None:
        assert any((b.object_type, b.object_id) == obj for b in found), (
            attack,
            [b.as_dict() for b in found],
        )
    RESULTS.append((attack, kind, by))


def available_account(payment):
    from ledger.services.journal import merchant_account

    return merchant_account(
        payment.merchant,
        AccountKind.MERCHANT_AVAILABLE,
        payment.currency,
        livemode=payment.livemode,
    )


def payment_key(payment):
    return ("ledger.transaction", str(payment.pk))


def entries_of(payment):
    return list(AuditEntry.objects.filter(object_id=str(payment.pk)).order_by("id"))


def test_editing_an_entry_is_hash_mismatch(history):
    target = entries_of(history)[2]
    fields = target.fields
    fields["new"]["amount"] = "1"
    fields.pop("v")
    with triggers_dropped():
        raw(
            "UPDATE audit_auditentry SET body = %s WHERE id = %s",
            [trail.encode_body(fields), target.id],
        )
    detected("edit an entry's bytes", verify_log(), "hash_mismatch", payment_key(history))


def test_editing_an_indexed_column_is_column_mismatch(history):
    target = entries_of(history)[1]
    with triggers_dropped():
        raw("UPDATE audit_auditentry SET actor_id = 'someone-else' WHERE id = %s", [target.id])
    detected("edit an indexed column", verify_log(), "column_mismatch", payment_key(history))


def test_deleting_an_entry_is_entry_missing_and_breaks_the_chain(history):
    target = entries_of(history)[1]
    with triggers_dropped():
        raw("DELETE FROM audit_auditentry WHERE id = %s", [target.id])
    report = verify_log()
    detected("delete an entry", report, "entry_missing")
    detected("delete an entry (the next link)", report, "chain_broken", payment_key(history))


def test_inserting_an_entry_for_a_row_is_caught_by_reconciliation(history):
    entries = entries_of(history)
    last = entries[-1]
    fields = last.fields
    fields.pop("v")
    fields["old"], fields["new"] = fields["new"], dict(fields["new"], status="refunded")
    body = trail.encode_body(fields)
    digest = trail.entry_hash(last.hash, body)
    AuditEntry.objects.create(  # INSERT is what the app user may do
        prev_hash=last.hash,
        hash=digest,
        body=body,
        object_type=last.object_type,
        object_id=last.object_id,
        action="update",
        event_type=fields["event_type"],
        actor_type=last.actor_type,
        actor_id=last.actor_id,
        created_at=last.created_at,
    )
    sequence()  # a forged entry is sequenced like any other...
    # ...but the row does not say it: its audit_hash and values are the real latest entry's.
    detected(
        "insert a forged entry",
        verify_log(),
        "row_unaudited",
        payment_key(history),
        "reconciliation",
    )


def test_reordering_leaves_is_leaf_mismatch(history):
    a, b = LogLeaf.objects.order_by("index")[1:3]
    with triggers_dropped():
        raw("UPDATE audit_logleaf SET entry_id = 0 WHERE `index` = %s", [a.index])
        raw("UPDATE audit_logleaf SET entry_id = %s WHERE `index` = %s", [a.entry_id, b.index])
        raw("UPDATE audit_logleaf SET entry_id = %s WHERE `index` = %s", [b.entry_id, a.index])
    report = verify_log()
    detected("reorder two leaves", report, "leaf_mismatch")


def test_rehashing_an_objects_chain_after_an_edit_is_caught_by_the_signed_tree(history):
    rewrite_chain("ledger.transaction", str(history.pk), {"amount": "1"}, from_position=1)
    report = verify_log()
    detected("re-hash an object's chain", report, "leaf_mismatch", payment_key(history))


def test_rehashing_the_tree_too_is_root_mismatch_against_the_signed_checkpoint(history):
    rewrite_chain("ledger.transaction", str(history.pk), {"amount": "1"}, from_position=1)
    _rebuild_tree()  # the stored leaves and nodes now match the edited entries
    report = verify_log()
    detected("re-hash the chain and the tree", report, "root_mismatch")


def test_rehash_and_resign_with_a_stolen_key_is_caught_by_the_witness(
    history, live_server, tmp_path
):
    state, witness_key = tmp_path / "witness.json", tlog.generate_witness_key("witness.test/w1")
    url = live_server.url + "/audit/log/"
    witness = _witness(url, witness_key, state)
    assert witness.check()[0] == "new"  # the witness accepted the honest checkpoint
    rewrite_chain("ledger.transaction", str(history.pk), {"amount": "1"}, from_position=1)
    _rebuild_tree()
    with triggers_dropped():
        raw("DELETE FROM audit_cosignature")
        raw("DELETE FROM audit_checkpoint")
    refund_create(payment=Transaction.objects.get(pk=history.pk), amount=1)  # the log goes on
    _rebuild_tree()
    _sign_latest_with(TEST_SIGNER_KEY)  # the stolen key signs the rewritten history
    assert verify_log(reconcile=False).ok  # the DBA made every stored thing agree...
    from audit.management.commands.audit_witness import Fork

    with pytest.raises(Fork, match=r"not consistent|two different trees"):
        witness.check()  # ...but the witness remembers what it cosigned
    RESULTS.append(("re-hash and re-sign with a stolen key", "fork (inconsistent)", "witness"))


def test_truncating_the_entries_is_entry_missing_everywhere(history):
    raw("TRUNCATE audit_auditentry")  # no trigger fires on TRUNCATE: only grants stop it
    report = verify_log()
    detected("truncate the entries", report, "entry_missing")
    detected(
        "truncate the entries (rows)",
        report,
        "row_unaudited",
        payment_key(history),
        "reconciliation",
    )


def test_deleting_the_checkpoints_is_unsealed(history, settings):
    settings.AUDIT_SEQUENCER_MAX_LAG_SECONDS = 0
    with triggers_dropped():
        raw("DELETE FROM audit_checkpoint")
    detected("delete the checkpoints", verify_log(), "unsealed")


def test_changing_a_ledger_row_without_an_entry_is_row_mismatch(history):
    raw("UPDATE ledger_transaction SET amount = amount + 1 WHERE id = %s", [history.pk.hex])
    detected(
        "change a ledger row without an entry",
        verify_log(),
        "row_mismatch",
        payment_key(history),
        "reconciliation",
    )


def test_money_posted_behind_the_services_back_is_named(history):
    """The issue's attack: a journal entry plus a balance bump of 1,000,000 (then a payout
    of 999,999 would pass ledger_check_invariants): the entry has no audit entry."""
    available = available_account(history)
    platform = Account.objects.filter(merchant=None, currency=available.currency).first()
    forged = JournalEntry(kind="adjustment", merchant=history.merchant, livemode=history.livemode)
    raw(
        "INSERT INTO ledger_journalentry (id, kind, merchant_id, livemode, transaction_id, "
        "description, posted_at, audit_hash) "
        "VALUES (%s, 'adjustment', %s, %s, NULL, '', NOW(6), '')",
        [forged.pk.hex, history.merchant_id.hex, history.livemode],
    )
    for account, amount in ((platform, 1_000_000), (available, -1_000_000)):
        raw(
            "INSERT INTO ledger_journalline (entry_id, account_id, amount, currency) "
            "VALUES (%s, %s, %s, %s)",
            [forged.pk.hex, account.pk, amount, account.currency],
        )
    raw("UPDATE ledger_account SET balance = balance + 1000000 WHERE id = %s", [available.pk])
    report = verify_log()
    detected(
        "post money without an entry",
        report,
        "row_unaudited",
        ("ledger.journalentry", str(forged.pk)),
        "reconciliation",
    )


def test_a_balance_bumped_alone_is_balance_mismatch(history):
    account = available_account(history)
    raw("UPDATE ledger_account SET balance = balance + 1000000 WHERE id = %s", [account.pk])
    detected(
        "bump a balance",
        verify_log(),
        "balance_mismatch",
        ("ledger.account", str(account.pk)),
        "reconciliation",
    )


def test_a_journal_line_changed_is_lines_mismatch(history):
    line = JournalLine.objects.filter(entry__transaction=history).first()
    raw("UPDATE ledger_journalline SET amount = amount + 1 WHERE id = %s", [line.pk])
    detected(
        "change a journal line",
        verify_log(),
        "lines_mismatch",
        ("ledger.journalentry", str(line.entry_id)),
        "reconciliation",
    )


def test_the_command_exits_non_zero_and_names_the_object(history, capsys):
    raw("UPDATE ledger_transaction SET amount = amount + 1 WHERE id = %s", [history.pk.hex])
    with pytest.raises(CommandError, match="verification failed"):
        call_command("audit_verify")
    out = capsys.readouterr().out
    assert "BREAK row_mismatch" in out
    assert "pay_" in out


# --- the attacker's tools -----------------------------------------------------------------


def _rebuild_tree():
    """Rewrite every leaf node and perfect subtree from the current entries (as a DBA)."""
    leaves = list(LogLeaf.objects.order_by("index").values_list("entry_id", flat=True))
    hashes = dict(AuditEntry.objects.values_list("id", "hash"))
    compact = tlog.CompactRange.from_nodes(0, lambda keys: {})
    nodes = compact.append([tlog.leaf_hash_of_entry(bytes.fromhex(hashes[i])) for i in leaves])
    with triggers_dropped():
        raw("DELETE FROM audit_lognode")
        LogNode.objects.bulk_create(
            [
                LogNode(key=tlog.node_key(level, index), hash=digest)
                for level, index, digest in nodes
            ]
        )
    return compact


def _sign_latest_with(signer_key):
    compact = _rebuild_tree()
    body = tlog.checkpoint_body("payflow.test/audit", compact.size, compact.root())
    with triggers_dropped():
        raw("DELETE FROM audit_checkpoint")
    from django.utils import timezone

    Checkpoint.objects.create(
        size=compact.size,
        root=compact.root().hex(),
        note=tlog.sign_note(body, tlog.Signer(signer_key)),
        created_at=timezone.now(),
    )


def _witness(url, witness_key, state):
    from django.conf import settings

    from audit.management.commands.audit_witness import Witness

    return Witness(url, settings.AUDIT_PUBLIC_KEY, witness_key, state)


def test_segment_bit_flips_are_segment_altered(db, settings, tmp_path):
    """Every bit of one small segment file flipped in turn: named, never a crash."""
    import datetime

    from audit.archive import audit_archive
    from audit.models import ArchiveSegment
    from tests.audit.chainseed import seed_chain

    settings.STORAGES = {**settings.STORAGES, "audit_archive": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path)},
    }}  # fmt: skip
    settings.AUDIT_SEGMENT_MAX_ROWS = 3
    now = datetime.datetime.now(datetime.UTC)
    seed_chain(
        3,
        start=now - datetime.timedelta(days=800),
        end=now - datetime.timedelta(days=700),
        objects=1,
    )
    sequence()
    assert audit_archive(now=now).segments == 1
    segment = ArchiveSegment.objects.get()
    path = tmp_path / segment.storage_path
    original = path.read_bytes()
    assert verify_log(reconcile=False).ok
    for position in range(len(original)):
        for bit in range(8):
            altered = bytearray(original)
            altered[position] ^= 1 << bit
            path.write_bytes(bytes(altered))
            report = verify_log(reconcile=False)
            assert "segment_altered" in {b.kind for b in report.breaks}, (position, bit)
    path.write_bytes(original)
    assert verify_log(reconcile=False).ok
    RESULTS.append(
        (f"flip each of {8 * len(original)} bits of a segment", "segment_altered", "verification")
    )
