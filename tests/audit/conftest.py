import contextlib
import importlib
import json

import pytest
from django.db import connection

from ledger.services.merchants import merchant_create

triggers = importlib.import_module("audit.migrations.0002_lanes_and_immutability_triggers")
signed_record_triggers = importlib.import_module("audit.migrations.0007_checkpoint_triggers")


@pytest.fixture
def merchant(db):
    return merchant_create(name="Audited Shop")


@contextlib.contextmanager
def triggers_dropped():
    """What an attacker with DBA rights does first. Restored afterwards."""
    with connection.cursor() as cursor:
        for statement in triggers.DROP:
            cursor.execute(statement)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for statement in triggers.MARIADB:
                cursor.execute(statement)


@contextlib.contextmanager
def signed_record_triggers_dropped():
    """A DBA dropping the triggers of checkpoints and retention records. Restored after."""
    with connection.cursor() as cursor:
        for statement in signed_record_triggers.DROP:
            cursor.execute(statement)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for statement in signed_record_triggers.mariadb_statements():
                cursor.execute(statement)


def raw(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def recompute_chain_after_edit(target, change):
    """As an attacker with DBA rights: edit ``target``'s new_values with ``change`` and
    recompute every later hash of its lane and the lane head, so the chain alone is
    consistent again. Triggers are dropped for the edit and restored."""
    from audit.chain import canonical_bytes, entry_hash, row_fields
    from audit.models import AuditEntry

    lane = target.lane
    with triggers_dropped():
        prev = AuditEntry.objects.get(lane=lane, seq=target.seq - 1).hash
        for row in AuditEntry.objects.filter(lane=lane, seq__gte=target.seq).order_by("seq"):
            fields = row_fields(row)
            if row.id == target.id:
                fields["new_values"] = dict(fields["new_values"], **change)
            digest = entry_hash(prev, canonical_bytes(fields))
            raw(
                "UPDATE audit_auditentry SET new_values = %s, prev_hash = %s, hash = %s "
                "WHERE id = %s",
                [json.dumps(fields["new_values"]), prev, digest, row.id],
            )
            prev = digest
        raw("UPDATE audit_lanehead SET hash = %s WHERE lane = %s", [prev, lane])
