"""payflow.platform.db.uuid7, made by ``uuid_utils`` since issue #20: what the hand-written
generator guaranteed and the library must keep (tests/payflow/test_db.py has the rest)."""

import multiprocessing
import threading
import time
import uuid

from payflow.platform import db


def test_uuid7_is_a_plain_standard_library_uuid():
    # Django's UUIDField, pickling and the ids codec expect exactly uuid.UUID.
    assert type(db.uuid7()) is uuid.UUID


def test_uuid7_keeps_to_the_clock_in_a_burst_of_ids():
    # A generator that bumps the timestamp for every id made in one millisecond (the
    # uuid6 package does) runs seconds ahead after a burst; a counter does not.
    values = [db.uuid7() for _ in range(20_000)]
    assert abs(db.uuid7_time_ms(values[-1]) - time.time() * 1000) < 1000


def test_uuid7_made_after_another_thread_finished_sorts_after_its_ids():
    first: list[uuid.UUID] = []
    thread = threading.Thread(target=lambda: first.extend(db.uuid7() for _ in range(1_000)))
    thread.start()
    thread.join()
    assert db.uuid7() > max(first)


def _child_ids(connection) -> None:
    connection.send([db.uuid7() for _ in range(5_000)])
    connection.close()


def test_uuid7_in_a_forked_child_never_repeats_the_parents():
    # Gunicorn and Celery fork their workers: the library's generator state is copied into
    # the child, which must not make the ids the parent makes next.
    db.uuid7()  # the parent's generator has state to copy
    receiver, sender = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_child_ids, args=(sender,))
    child.start()
    parent_ids = [db.uuid7() for _ in range(5_000)]
    assert receiver.poll(30), "the forked child sent no ids within 30 s"
    child_ids = receiver.recv()
    child.join(30)
    assert child.exitcode == 0
    assert len(set(parent_ids) | set(child_ids)) == 10_000
