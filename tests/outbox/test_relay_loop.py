"""The relay process's rounds (``outbox.relay.RelayLoop``, ``run_forever``): a partition
that fails or is held back waits on its own, the others go on; a round that cannot run
backs off and does not touch the heartbeat (found by review: one failing partition stopped
every later one for good, and the health check stayed green while the database was
down)."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from outbox import relay


class Partitions:
    def __init__(self, monkeypatch, pending, *, failing=(), held=()):
        self.calls: list[int] = []
        monkeypatch.setattr(relay, "partitions_pending", lambda: list(pending))

        def relay_partition(partition, *, time_budget):
            self.calls.append(partition)
            if partition in failing:
                raise RuntimeError(f"partition {partition} cannot be marked")
            report = relay.RelayReport(partition=partition, claimed=True)
            report.published = 0 if partition in held else 1
            return report

        def relay_round(partitions):  # one go over all; any failure fails the round
            if set(partitions) & set(failing):
                raise RuntimeError("a partition of the round cannot be marked")
            return [relay_partition(partition, time_budget=1.0) for partition in partitions]

        monkeypatch.setattr(relay, "relay_partition", relay_partition)
        monkeypatch.setattr(relay, "relay_round", relay_round)


def test_a_failing_partition_waits_and_the_others_go_on(monkeypatch, caplog):
    partitions = Partitions(monkeypatch, [2, 5, 7], failing={2})
    loop = relay.RelayLoop()
    for _ in range(10):
        assert loop.step() == 2
    assert partitions.calls.count(5) == partitions.calls.count(7) == 10
    assert partitions.calls.count(2) == 1  # then it waits (0.5 s, growing)
    assert loop.failures == {2: 1}
    assert "partition 2 failed" in caplog.text


def test_a_partition_whose_events_are_all_held_back_is_left_alone_for_a_while(monkeypatch):
    partitions = Partitions(monkeypatch, [3, 4], held={3})
    loop = relay.RelayLoop()
    for _ in range(20):
        loop.step()
    assert partitions.calls.count(3) == 1  # not claimed and read every few milliseconds
    assert partitions.calls.count(4) == 20
    assert loop.not_before[3] > 0


def test_a_round_that_cannot_run_backs_off_and_leaves_the_heartbeat_alone(monkeypatch, caplog):
    def database_down():
        raise OperationalError(2003, "Can't connect to MySQL server")

    monkeypatch.setattr(relay, "partitions_pending", database_down)
    waits: list[float] = []
    monkeypatch.setattr(relay, "_sleep_unless", lambda stop, seconds: waits.append(seconds))
    beats: list[int] = []
    rounds = iter(range(6))
    relay.run_forever(
        relay.RelayLoop(),
        stop=lambda: next(rounds, None) is None,
        heartbeat=lambda: beats.append(1),
    )
    assert beats == []
    assert waits == sorted(waits)
    assert waits[0] == pytest.approx(1.0)
    assert waits[-1] > waits[0]
    failures_logged = [r for r in caplog.records if "round failed" in r.getMessage()]
    assert len(failures_logged) == 3  # the 1st, 2nd and 4th of 6, not every one
