import contextlib
import importlib

import pytest
from django.db import connection

from ledger.services.merchants import merchant_create

triggers = importlib.import_module("audit.migrations.0002_lanes_and_immutability_triggers")


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


def raw(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
