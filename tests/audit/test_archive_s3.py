"""The archive on an S3-compatible bucket with Object Lock, through django-storages.

No cloud object store is reachable from this machine, so the S3 side is moto's server: a
separate process speaking the S3 HTTP protocol (signatures, versioning, Object Lock), not an
in-process mock. The archiver, verification and purge run unchanged against it."""

import datetime
import socket
import subprocess
import sys
import time
import uuid

import pytest
from django.utils import timezone

from audit.archive import audit_archive
from audit.models import ArchiveSegment, AuditEntry
from audit.retention import audit_retention_purge
from audit.segments import check_segment
from audit.verify import verify_log
from payflow import config
from tests.audit.chainseed import seed_chain
from tests.audit.conftest import sequence
from tests.missing import import_or_missing

pytestmark = pytest.mark.django_db(transaction=True)
boto3 = import_or_missing("boto3")
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("moto server did not start")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture
def locked_bucket(s3_server, settings, monkeypatch):
    """A new bucket for each test (compliance-locked versions cannot be removed, and
    Object Lock can only be configured on an empty bucket); its client has ``.bucket``."""
    bucket = f"payflow-audit-archive-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="archiver",
        aws_secret_access_key="archiver-secret",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    client.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
        },
    )
    for name, value in {
        "AUDIT_ARCHIVE_STORAGE": "s3",
        "AUDIT_ARCHIVE_S3_BUCKET": bucket,
        "AUDIT_ARCHIVE_S3_ENDPOINT_URL": s3_server,
        "AUDIT_ARCHIVE_S3_REGION": "us-east-1",
        "AUDIT_ARCHIVE_S3_ACCESS_KEY_ID": "archiver",
        "AUDIT_ARCHIVE_S3_SECRET_ACCESS_KEY": "archiver-secret",
    }.items():
        monkeypatch.setenv(name, value)
    from payflow.settings import env

    settings.STORAGES = {**settings.STORAGES, "audit_archive": config.archive_storage(env, None)}
    # Segments smaller than the report's MAX_BREAKS: a damaged one is named along with its
    # missing entries (tests/audit/test_archive_tampering.py has the larger case).
    settings.AUDIT_SEGMENT_MAX_ROWS = 150
    client.bucket = bucket
    return client  # compliance-locked versions outlive the test; so does nothing else


def test_segments_go_to_a_locked_bucket_and_a_replaced_object_is_caught(locked_bucket):
    bucket = locked_bucket.bucket
    now = timezone.now()
    seed_chain(1000, start=now - 600 * DAY, end=now - 500 * DAY)
    sequence()

    report = audit_archive(now=now)

    assert (report.rows, report.segments, report.refused) == (1000, 7, {})
    assert AuditEntry.objects.count() == 0
    segments = list(ArchiveSegment.objects.order_by("first_index"))
    assert [(s.first_index, s.last_index) for s in segments] == [
        (first, min(first + 149, 999)) for first in range(0, 1000, 150)
    ]
    keys = sorted(o["Key"] for o in locked_bucket.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"audit/{s.storage_path}" for s in segments]
    for key in keys:
        head = locked_bucket.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
    verified = verify_log()
    assert verified.ok, verified.breaks[:5]
    assert verified.entries == 1000  # read back from the bucket
    assert audit_archive(now=now).segments == 0  # a rerun writes nothing twice

    # Someone with write access replaces an object: a new current version.
    original = locked_bucket.get_object(Bucket=bucket, Key=keys[1])
    locked_bucket.put_object(Bucket=bucket, Key=keys[1], Body=b"not the archive")
    assert check_segment(segments[1]).startswith("segment_altered")
    report = verify_log()
    assert not report.ok
    found = [b for b in report.breaks if b.kind == "segment_altered"]
    assert [b.index for b in found] == [150]
    assert keys[1].removeprefix("audit/") in found[0].detail
    missing = [b.index for b in report.breaks if b.kind == "entry_missing"]
    assert missing == list(range(150, 300))
    # ... but the locked original version cannot be deleted, so the evidence survives.
    with pytest.raises(locked_bucket.exceptions.ClientError):
        locked_bucket.delete_object(Bucket=bucket, Key=keys[1], VersionId=original["VersionId"])


def test_a_purge_removes_the_objects_the_bucket_lets_go(locked_bucket, settings):
    """Retention deletes the current object (a delete marker; the locked version stays
    until its own retention ends, as the bucket's policy wants)."""
    bucket = locked_bucket.bucket
    now = timezone.now()
    seed_chain(800, start=now - 9 * 365 * DAY, end=now - 8 * 365 * DAY)
    sequence()
    assert audit_archive(now=now).segments == 6
    keys = [f"audit/{s.storage_path}" for s in ArchiveSegment.objects.order_by("first_index")]
    purged = audit_retention_purge(now=now)
    assert (purged.segments, purged.rows, purged.files_removed, purged.problems) == (6, 800, 6, [])
    assert "Contents" not in locked_bucket.list_objects_v2(Bucket=bucket, Prefix="audit/log/")
    # The locked versions are still in the bucket, behind delete markers.
    versions = locked_bucket.list_object_versions(Bucket=bucket, Prefix="audit/log/")
    assert sorted(v["Key"] for v in versions["Versions"]) == keys
    assert sorted(m["Key"] for m in versions["DeleteMarkers"]) == keys
    sequence()  # seals the purge's own entry
    verified = verify_log()
    assert verified.ok, verified.breaks[:5]
