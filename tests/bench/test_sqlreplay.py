"""The raw-SQL ceiling's replayer (bench/sqlreplay.py) renews what unique keys require."""

from bench import sqlreplay

A = "01a25108-dea2-7606-95c0-88cf97a08571"
B = "01a25108-dea2-7606-95c0-88cf97a08572"
PAYMENT = "01a25108-dea2-7606-95c0-88cf97a08500"


def test_every_row_of_a_multi_row_insert_gets_a_new_id():
    # a transaction's outbox rows are one INSERT: a replay that renewed only the first
    # row's id collided on the second (the quick benchmark's ceiling read 0 payments/s)
    statements = [
        {
            "sql": "INSERT INTO `outbox_outboxevent` (`id`, `aggregate_id`) "
            "VALUES (%s, %s), (%s, %s)",
            "params": [A, PAYMENT, B, PAYMENT],
        },
        {"sql": "SELECT 1 FROM `outbox_outboxevent` WHERE `id` = %s", "params": [A]},
    ]
    assert sqlreplay.new_row_ids(statements) == {A, B}


def test_an_id_first_seen_in_a_read_is_kept():
    statements = [
        {"sql": "SELECT 1 FROM `ledger_account` WHERE `id` = %s", "params": [A]},
        {"sql": "INSERT INTO `ledger_journalline` (`id`, `x`) VALUES (%s, %s)", "params": [A, 1]},
    ]
    assert sqlreplay.new_row_ids(statements) == set()
