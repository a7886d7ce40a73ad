"""The auditors' dashboard lists segments (log index ranges) with their status; an auditor
checks one segment on demand; retention records download as JSON, and say what the log's
own (sealed) purge entry says; a record's history includes its archived entries on request."""

import datetime

import pytest
from django.utils import timezone

from audit.archive import audit_archive
from audit.evidence import evidence_export
from audit.models import ArchiveSegment, AuditEntry, Checkpoint, LogLeaf, RetentionPurge
from audit.retention import audit_retention_purge
from tests.audit.chainseed import seed_chain
from tests.audit.conftest import sequence
from tests.audit.test_archive import archive_dir, verify_bundle  # noqa: F401 - fixture
from tests.audit.test_views import login

DASH = "\N{EN DASH}"  # between the ends of a range on the dashboard

pytestmark = pytest.mark.django_db(transaction=True)
YEAR = datetime.timedelta(days=365)


@pytest.fixture
def archived(archive_dir):  # noqa: F811
    """Leaves 0..499 archived and purged, 500..999 archived; the purge's entry sealed."""
    now = timezone.now()
    seed_chain(500, start=now - 9 * YEAR, end=now - 8 * YEAR)
    seed_chain(500, start=now - 2 * YEAR, end=now - YEAR - datetime.timedelta(days=30))
    sequence()
    assert audit_archive(now=now).segments == 2
    assert audit_retention_purge(now=now).segments == 1
    sequence()
    return archive_dir


def test_the_dashboard_lists_segments_with_their_status(client, django_user_model, archived):
    login(client, django_user_model, "alice", group="auditor")
    page = client.get("/audit/").content.decode()
    assert page.count('class="segment-status">archived<') == 1
    assert page.count('class="segment-status">purged<') == 1
    assert f"<td>0{DASH}499</td><td>500</td>" in page
    assert f"<td>500{DASH}999</td><td>500</td>" in page
    assert "1001 entries in the log (1 live, the rest archived)" in page
    assert "Retention purges" in page
    purge = RetentionPurge.objects.get()
    assert f'href="/audit/retention/{purge.id}.json">#{purge.id} (JSON)</a>' in page
    assert f"<td>0{DASH}499</td><td>1</td><td>500</td>" in page  # range, segments, rows
    # Only the live segment can be checked: the purged one's file is gone by design.
    assert page.count("Check now") == 1


def test_an_auditor_checks_one_segment_and_sees_a_broken_file_named(
    client, django_user_model, archived
):
    login(client, django_user_model, "alice", group="auditor")
    live = ArchiveSegment.objects.get(purged_at__isnull=True)
    response = client.post(f"/audit/segments/{live.id}/check", follow=True)
    page = response.content.decode()
    assert "Segment log 500..999 checks: 500 entries check" in page
    assert '<span class="ok">OK</span>' in page
    (archived / live.storage_path).unlink()
    response = client.post(f"/audit/segments/{live.id}/check", follow=True)
    page = response.content.decode()
    assert "DOES NOT CHECK: segment_missing" in page
    assert '<span class="bad">BROKEN</span>' in page
    live.refresh_from_db()
    assert live.check_ok is False


def test_operators_cannot_check_segments_or_read_retention_records(
    client, django_user_model, archived
):
    login(client, django_user_model, "ops", group="operator")
    segment = ArchiveSegment.objects.first()
    assert client.post(f"/audit/segments/{segment.id}/check").status_code == 403
    purge = RetentionPurge.objects.get()
    assert client.get(f"/audit/retention/{purge.id}.json").status_code == 403
    segment.refresh_from_db()
    assert segment.checked_at is None


def test_an_auditor_downloads_the_retention_record_and_it_is_what_the_log_sealed(
    client, django_user_model, archived
):
    login(client, django_user_model, "alice", group="auditor")
    purge = RetentionPurge.objects.get()
    purged = ArchiveSegment.objects.get(purged_at__isnull=False)
    response = client.get(f"/audit/retention/{purge.id}.json")
    assert response["Content-Disposition"] == f'attachment; filename="retention-{purge.id}.json"'
    body = response.json()
    assert (body["id"], body["first_index"], body["last_index"], body["rows"]) == (
        purge.id,
        0,
        499,
        500,
    )
    assert body["segments"] == [
        {
            "first_index": 0,
            "last_index": 499,
            "row_count": 500,
            "file_digest": purged.file_digest,
            "storage_path": purged.storage_path,
        }
    ]
    # The record's signature, in the log design: its purge entry, sealed by a checkpoint.
    entry = AuditEntry.objects.get(event_type="audit.retention_purged", object_id=str(purge.id))
    new = entry.fields["new"]
    assert (new["first_index"], new["last_index"], new["rows"]) == ("0", "499", "500")
    assert [s["file_digest"] for s in new["segments"]] == [purged.file_digest]
    index = LogLeaf.objects.get(entry_id=entry.id).index
    assert index < Checkpoint.objects.order_by("-size").first().size
    bundle = evidence_export(object_type="audit.retentionpurge", object_id=str(purge.id))
    assert [e["index"] for e in bundle["entries"]] == [index]
    assert verify_bundle(bundle) == []
    assert client.get("/audit/retention/999999.json").status_code == 404


def test_a_record_history_includes_archived_entries_on_request(client, django_user_model, merchant):
    from ledger.services.refunds import refund_create
    from tests.ledger.conftest import pay

    login(client, django_user_model, "alice", group="auditor")
    payment = pay(merchant)
    sequence()
    archived = audit_archive(now=timezone.now() + 400 * datetime.timedelta(days=1))
    assert archived.rows > 0
    assert AuditEntry.objects.count() == 0
    archived_of_payment = 3  # created, authorized, captured

    refund_create(payment=payment, amount=100)  # one live entry after the archived ones
    url = f"/audit/records/ledger.transaction/{payment.pk}"
    live_only = client.get(url).content.decode()
    assert "Include this object's archived entries" in live_only
    assert live_only.count("<em>archived</em></div>") == 0
    assert "payment.partially_refunded" in live_only
    page = client.get(url + "?archived=1").content.decode()
    assert page.count("<em>archived</em></div>") == archived_of_payment
    assert "payment.partially_refunded" in page
    assert "payment.captured" in page
    assert "contents ✗" not in page
    assert "link ✗" not in page
    assert page.count("link ✓") == archived_of_payment + 1  # the live one links on too


def test_a_live_entry_after_archived_ones_is_not_shown_as_a_broken_link(
    client, django_user_model, merchant
):
    from ledger.services.refunds import refund_create
    from tests.ledger.conftest import pay

    login(client, django_user_model, "alice", group="auditor")
    payment = pay(merchant)
    sequence()
    assert audit_archive(now=timezone.now() + 400 * datetime.timedelta(days=1)).rows > 0
    refund_create(payment=payment, amount=100)
    page = client.get(f"/audit/records/ledger.transaction/{payment.pk}").content.decode()
    assert "payment.partially_refunded" in page
    assert "link ✗" not in page
    assert "link archived" in page
