import contextlib
import importlib
import json

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from ledger.services.merchants import merchant_create
from payflow.platform import trail

log_migration = importlib.import_module("audit.migrations.0008_transparency_log")

#: The signer key of the test log (its verifier key is AUDIT_PUBLIC_KEY in tests/settings.py).
#: Production gives the signer key to the sequencer process alone.
TEST_SIGNER_KEY = (
    "PRIVATE+KEY+payflow.test/audit+fe41b70c+ATB6Xy3s9OTpfv8TsixXGBBFFnuj+f/yGAViFa/fS3ee"
)


@pytest.fixture
def merchant(db):
    return merchant_create(name="Audited Shop")


def test_sequencer(**overrides):
    """A sequencer with the test key that seals at every step (no waiting for the interval)
    and does not publish unless asked."""
    from audit import tlog
    from audit.sequencer import Sequencer

    options = {"interval": 0.0, "publish": False, "settle_seconds": 0.0}
    options.update(overrides)
    return Sequencer(signer=tlog.Signer(TEST_SIGNER_KEY), **options)


test_sequencer.__test__ = False  # a helper, not a test


def sequence(**overrides):
    """Append every committed entry to the log and sign a checkpoint; returns the sequencer."""
    sequencer = test_sequencer(**overrides)
    assert sequencer.claim()
    sequencer.load()
    while sequencer.step().appended:
        pass
    sequencer.step()  # seals what the last append left unsealed
    sequencer.release()
    return sequencer


@contextlib.contextmanager
def triggers_dropped():
    """What an attacker with DBA rights does first. Restored afterwards."""
    with connection.cursor() as cursor:
        for name in log_migration.trigger_names():
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for statement in log_migration._mariadb_triggers():
                cursor.execute(statement)


def raw(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def edit_entry(entry, reason="edited"):
    """As a DBA would: rewrite one entry's ``reason`` in its stored bytes, triggers dropped
    (its hash is left as it was, so verification sees the bytes no longer match)."""

    fields = entry.fields
    fields["reason"] = reason
    fields.pop("v")
    with triggers_dropped():
        raw(
            "UPDATE audit_auditentry SET body = %s WHERE id = %s",
            [trail.encode_body(fields), entry.id],
        )


@pytest.fixture
def auditor(client, django_user_model):
    """A logged-in member of the auditor group (the test client)."""

    user = django_user_model.objects.create_user("alice", password="pw-for-tests-1")
    user.groups.add(Group.objects.get_or_create(name="auditor")[0])
    client.force_login(user)
    return user


def rewrite_chain(object_type, object_id, change, *, from_position=1):
    """As an attacker with DBA rights: edit the ``new`` values of one object's entry (its
    ``from_position``-th, 0-based) with ``change`` and re-hash every later entry of that
    object, and the row's ``audit_hash``, so the object's chain alone is consistent again.
    Triggers are dropped for the edit and restored. Returns the edited entry's id."""
    from audit.models import AuditEntry

    entries = list(
        AuditEntry.objects.filter(object_type=object_type, object_id=object_id).order_by("id")
    )
    target = entries[from_position]
    prev = entries[from_position - 1].hash if from_position else trail.GENESIS_HASH
    with triggers_dropped():
        for entry in entries[from_position:]:
            fields = json.loads(bytes(entry.body))
            if entry.id == target.id:
                fields["new"] = dict(fields["new"], **change)
            fields.pop("v")
            body = trail.encode_body(fields)
            digest = trail.entry_hash(prev, body)
            raw(
                "UPDATE audit_auditentry SET body = %s, prev_hash = %s, hash = %s WHERE id = %s",
                [body, prev, digest, entry.id],
            )
            prev = digest
        table = {"ledger.transaction": "ledger_transaction", "ledger.merchant": "ledger_merchant"}
        if object_type in table:
            raw(
                f"UPDATE {table[object_type]} SET audit_hash = %s WHERE id = %s",  # noqa: S608
                [prev, object_id.replace("-", "")],
            )
    return target.id
