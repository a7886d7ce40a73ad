"""The auditors' dashboard lists segments with their status; an auditor checks one segment
on demand; retention records download as signed JSON."""

import datetime

import pytest
from django.utils import timezone

from audit.archive import audit_archive
from audit.checkpoints import audit_checkpoint_create
from audit.models import ArchiveSegment, RetentionPurge
from audit.retention import audit_retention_purge
from tests.audit.chainseed import seed_chain
from tests.audit.test_archive import archive_dir  # noqa: F401 - fixture
from tests.audit.test_views import login

pytestmark = pytest.mark.django_db(transaction=True)
YEAR = datetime.timedelta(days=365)


@pytest.fixture
def archived(archive_dir):  # noqa: F811
    now = timezone.now()
    seed_chain(500, start=now - 9 * YEAR, end=now - 8 * YEAR, lanes=[1])
    seed_chain(500, start=now - 2 * YEAR, end=now - YEAR - datetime.timedelta(days=30), lanes=[1])
    audit_checkpoint_create()
    audit_archive(now=now)
    audit_retention_purge(now=now)
    return archive_dir


def test_the_dashboard_lists_segments_with_their_status(client, django_user_model, archived):
    login(client, django_user_model, "alice", group="auditor")
    page = client.get("/audit/").content.decode()
    assert page.count('class="segment-status">archived<') == 1
    assert page.count('class="segment-status">purged<') == 1
    assert "Retention purges" in page
    assert "(signed JSON)" in page


def test_an_auditor_checks_one_segment_and_sees_a_broken_file_named(
    client, django_user_model, archived
):
    login(client, django_user_model, "alice", group="auditor")
    live = ArchiveSegment.objects.get(purged_at__isnull=True)
    response = client.post(f"/audit/segments/{live.id}/check", follow=True)
    assert "checks: 500 rows check" in response.content.decode()
    (archived / live.storage_path).unlink()
    response = client.post(f"/audit/segments/{live.id}/check", follow=True)
    page = response.content.decode()
    assert "DOES NOT CHECK: segment_missing" in page
    assert '<span class="bad">BROKEN</span>' in page


def test_operators_cannot_check_segments_or_read_retention_records(
    client, django_user_model, archived
):
    login(client, django_user_model, "ops", group="operator")
    segment = ArchiveSegment.objects.first()
    assert client.post(f"/audit/segments/{segment.id}/check").status_code == 403
    purge = RetentionPurge.objects.get()
    assert client.get(f"/audit/retention/{purge.id}.json").status_code == 403


def test_an_auditor_downloads_the_signed_retention_record(client, django_user_model, archived):
    login(client, django_user_model, "alice", group="auditor")
    purge = RetentionPurge.objects.get()
    body = client.get(f"/audit/retention/{purge.id}.json").json()
    assert body["body"]["format"] == "payflow-audit-retention/1"
    assert body["algorithm"] == "ed25519"
    assert client.get("/audit/retention/999999.json").status_code == 404


def test_a_record_history_includes_archived_rows_on_request(client, django_user_model, merchant):
    from tests.ledger.conftest import pay

    login(client, django_user_model, "alice", group="auditor")
    payment = pay(merchant)
    audit_checkpoint_create()
    audit_archive(now=timezone.now() + 400 * datetime.timedelta(days=1))
    from ledger.services.refunds import refund_create

    refund_create(payment=payment, amount=100)  # one live row after the archived ones
    url = f"/audit/records/ledger.transaction/{payment.pk}"
    live_only = client.get(url).content.decode()
    assert "Include this object" in live_only
    assert live_only.count("<em>archived</em></td>") == 0
    page = client.get(url + "?archived=1").content.decode()
    assert page.count("<em>archived</em></td>") == 3  # created, authorized, captured
    assert "payment.partially_refunded" in page
    assert "contents ✗" not in page
    assert "link ✗" not in page
