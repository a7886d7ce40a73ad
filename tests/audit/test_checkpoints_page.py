"""The checkpoints page: the log's size over time, each checkpoint's witnesses, and a fork
alarm in red when the stored checkpoints and the stored tree no longer describe one log.

Reproduced before: the page listed checkpoints only (no chart, no check of any kind), so a
rewritten tree or a re-signed checkpoint looked the same as an honest one."""

import pytest

from audit import views
from audit.models import Checkpoint
from tests.audit.conftest import raw, sequence, triggers_dropped
from tests.ledger.conftest import pay


@pytest.fixture
def three_checkpoints(merchant):
    for amount in (100, 200, 300):
        pay(merchant, amount=amount)
        sequence()
    sizes = list(Checkpoint.objects.order_by("size").values_list("size", flat=True))
    assert len(sizes) >= 3
    return sizes


def test_the_page_charts_the_log_and_checks_every_checkpoint(client, auditor, three_checkpoints):
    page = client.get("/audit/checkpoints").content.decode()
    assert '<svg id="size-chart"' in page
    polyline = page.split('<polyline points="', 1)[1].split('"', 1)[0]
    assert len(polyline.split()) == len(three_checkpoints)  # every one, fewer than 60
    assert f"to\n  {three_checkpoints[-1]} (" in page
    assert "FORK ALARM" not in page
    assert page.count('<span class="ok">✓</span>') == len(three_checkpoints)


@pytest.mark.django_db(transaction=True)  # dropping triggers is DDL: it commits
def test_a_rewritten_tree_raises_the_fork_alarm(client, auditor, three_checkpoints):
    with triggers_dropped():
        raw("UPDATE audit_lognode SET hash = %s", [b"\x00" * 32])
    page = client.get("/audit/checkpoints").content.decode()
    assert 'id="fork-alarm"' in page
    assert (
        f"Checkpoint {three_checkpoints[1]}: no consistency proof from the stored tree links it"
        f" to checkpoint {three_checkpoints[0]}" in page
    )
    assert '<tr class="alarmed">' in page


@pytest.mark.django_db(transaction=True)
def test_a_checkpoint_whose_note_was_changed_raises_the_alarm(client, auditor, three_checkpoints):
    middle = Checkpoint.objects.get(size=three_checkpoints[1])
    forged = middle.note.replace(f"\n{middle.size}\n", f"\n{middle.size + 1}\n", 1)
    with triggers_dropped():
        raw("UPDATE audit_checkpoint SET note = %s WHERE size = %s", [forged, middle.size])
    page = client.get("/audit/checkpoints").content.decode()
    assert f"Checkpoint {middle.size}: its note does not verify" in page


def test_checkpoints_come_a_page_at_a_time(client, auditor, three_checkpoints, monkeypatch):
    monkeypatch.setattr(views, "CHECKPOINT_PAGE", 2)
    page = client.get("/audit/checkpoints").content.decode()
    assert page.count(">checkpoint-") == 2  # two rows
    assert f'href="?before={three_checkpoints[-2]}" rel="next"' in page
    older = client.get("/audit/checkpoints", {"before": three_checkpoints[-2]}).content.decode()
    assert f"<td>{three_checkpoints[0]}</td>" in older
    assert "FORK ALARM" not in older


@pytest.mark.django_db(transaction=True)
def test_a_rewritten_tree_is_caught_with_a_single_checkpoint(client, auditor, merchant):
    pay(merchant)
    sequence()
    assert Checkpoint.objects.count() == 1
    with triggers_dropped():
        raw("UPDATE audit_lognode SET hash = %s", [b"\x00" * 32])
    page = client.get("/audit/checkpoints").content.decode()
    assert "the stored tree&#x27;s root at its size is not its signed root" in page


@pytest.mark.django_db(transaction=True)
def test_missing_nodes_raise_the_alarm_not_a_500(client, auditor, three_checkpoints):
    with triggers_dropped():
        raw("DELETE FROM audit_lognode")
    page = client.get("/audit/checkpoints")
    assert page.status_code == 200
    assert "the stored tree lacks nodes its proofs need" in page.content.decode()


def test_the_page_reads_its_proofs_in_a_bounded_number_of_queries(
    client, auditor, merchant, django_assert_max_num_queries
):
    for amount in range(100, 1300, 100):
        pay(merchant, amount=amount)
        sequence()
    client.get("/audit/checkpoints")  # the chart is kept a minute
    with django_assert_max_num_queries(14):  # session, user, groups, page, nodes, chart key…
        client.get("/audit/checkpoints")


@pytest.mark.parametrize("before", ["²", "1" * 40, "-1", "abc"])
def test_a_malformed_page_marker_is_ignored_not_a_500(client, auditor, three_checkpoints, before):
    assert client.get("/audit/checkpoints", {"before": before}).status_code == 200
