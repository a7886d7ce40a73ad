"""Tampering with segment files is detected and named: a byte flipped, a file deleted, a
file replaced by a re-computed one (with or without its recorded digest changed too, and
with the stored leaves rewritten as well: then the signed checkpoints catch it)."""

import base64
import contextlib
import gzip
import hashlib
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit import tlog
from audit.archive import audit_archive
from audit.models import ArchiveSegment
from audit.report import MAX_BREAKS
from audit.segments import check_segment, parse_segment
from audit.verify import verify_log
from payflow.platform import trail
from tests.audit.conftest import raw, triggers_dropped
from tests.audit.test_archive import archive_dir, old_and_recent  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)
EDITED = 200  # a leaf inside the middle segment (150..299), of the object seed-8


@pytest.fixture
def archived(archive_dir, settings):  # noqa: F811
    # Segments smaller than MAX_BREAKS, so every consequence of a damaged one is reported
    # with it (see the xfail below for a larger one).
    settings.AUDIT_SEGMENT_MAX_ROWS = 150
    now = old_and_recent(450, 30)  # three segments of 150, then live entries 450..479
    assert audit_archive(now=now).segments == 3
    assert verify_log().ok
    middle = ArchiveSegment.objects.order_by("first_index")[1]
    assert (middle.first_index, middle.last_index) == (150, 299)
    return archive_dir / middle.storage_path, middle


def failed():
    report = verify_log()
    assert not report.ok
    return report


def of_kind(report, kind):
    return [b for b in report.breaks if b.kind == kind]


def replace(path, data):
    path.chmod(0o640)
    path.write_bytes(data)


def recomputed(path, index_to_edit):
    """The attacker's file: one entry's contents edited and every later entry of that
    object in the file re-hashed onto it; a valid gzip of valid lines, right header.
    Returns the file and the edited entry's new hash."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    header, items = lines[0], [json.loads(line) for line in lines[1:]]
    edited_key, new_tip, edited_hash = None, None, None
    for item in items:
        fields = json.loads(base64.b64decode(item["body"]))
        key = (fields["object_type"], fields["object_id"])
        if item["index"] == index_to_edit:
            fields["reason"] = "nothing to see here"
            edited_key = key
        elif key != edited_key:
            continue
        fields.pop("v")
        body = trail.encode_body(fields)
        prev = new_tip if item["index"] != index_to_edit else item["prev_hash"]
        item["prev_hash"], item["hash"] = prev, trail.entry_hash(prev, body)
        item["body"] = base64.b64encode(body).decode()
        new_tip = item["hash"]
        if item["index"] == index_to_edit:
            edited_hash = item["hash"]
    text = [header] + [json.dumps(item, sort_keys=True, separators=(",", ":")) for item in items]
    return gzip.compress(("\n".join(text) + "\n").encode(), mtime=0), edited_hash


def test_a_flipped_byte_is_segment_altered(archived):
    path, segment = archived
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    replace(path, bytes(data))
    report = failed()
    [found] = of_kind(report, "segment_altered")
    assert found.index == segment.first_index == 150
    assert segment.storage_path in found.detail
    # Its entries are missing from the log (and the next entry of each object no longer
    # follows anything it has): nothing else.
    missing = [b.index for b in of_kind(report, "entry_missing")]
    assert missing == list(range(150, 300))
    assert {b.kind for b in report.breaks} == {"segment_altered", "entry_missing", "chain_broken"}


def test_a_deleted_file_is_segment_missing(archived):
    path, segment = archived
    path.unlink()
    report = failed()
    [found] = of_kind(report, "segment_missing")
    assert found.index == 150
    assert [b.index for b in of_kind(report, "entry_missing")] == list(range(150, 300))
    assert check_segment(segment).startswith("segment_missing")


def test_a_recomputed_file_is_segment_altered_by_its_digest(archived):
    path, segment = archived
    data, _ = recomputed(path, EDITED)
    assert parse_segment(data, 150, 299)  # a well-formed file...
    replace(path, data)
    [found] = of_kind(failed(), "segment_altered")  # ...that is not the recorded one
    assert found.index == 150
    assert "is not the recorded" in found.detail
    assert check_segment(segment).startswith("segment_altered: digest")


def test_a_recomputed_file_with_its_record_rewritten_is_not_the_sequenced_leaf(archived):
    path, segment = archived
    data, _ = recomputed(path, EDITED)
    replace(path, data)
    ArchiveSegment.objects.filter(pk=segment.pk).update(
        file_digest=hashlib.sha256(data).hexdigest()
    )
    segment.refresh_from_db()
    assert check_segment(segment) == ""  # the file and its record agree...
    report = failed()
    # ...but the edited entry is not the one that was sequenced, and the object's next
    # entry after the file (leaf 312, in the next segment) does not follow its rewrite.
    key = ("audit.seed", "seed-8")
    assert [(b.object_type, b.object_id, b.index) for b in of_kind(report, "leaf_mismatch")] == [
        (*key, index) for index in range(EDITED, 300, 16)
    ]
    assert [(b.object_type, b.object_id, b.index) for b in of_kind(report, "chain_broken")] == [
        (*key, 312)
    ]
    assert of_kind(report, "root_mismatch")


def test_a_recomputed_file_and_rewritten_leaves_do_not_match_the_signed_checkpoint(archived):
    """The attacker also rewrites the stored leaf nodes: the tree no longer rebuilds to the
    root the log signed."""
    path, segment = archived
    data, _ = recomputed(path, EDITED)
    replace(path, data)
    ArchiveSegment.objects.filter(pk=segment.pk).update(
        file_digest=hashlib.sha256(data).hexdigest()
    )
    with triggers_dropped():
        for line in gzip.decompress(data).decode().splitlines()[1:]:
            item = json.loads(line)
            leaf = tlog.leaf_hash_of_entry(bytes.fromhex(item["hash"]))
            raw("UPDATE audit_lognode SET hash = %s WHERE `key` = %s", [leaf, item["index"]])
    report = failed()
    assert not of_kind(report, "leaf_mismatch")
    assert of_kind(report, "root_mismatch")
    assert [b.index for b in of_kind(report, "chain_broken")] == [312]


def test_a_damaged_segment_larger_than_the_report_is_still_named(archive_dir):  # noqa: F811
    now = old_and_recent(1500, 30)  # segments of 500
    audit_archive(now=now)
    middle = ArchiveSegment.objects.order_by("first_index")[1]
    assert middle.row_count > MAX_BREAKS
    replace(archive_dir / middle.storage_path, b"not the archive")
    report = failed()
    assert [b.index for b in of_kind(report, "segment_altered")] == [500]


def test_the_command_exits_non_zero_and_names_the_break(archived, capsys):
    path, _ = archived
    path.unlink()
    with pytest.raises(CommandError, match="verification failed"):
        call_command("audit_verify")
    out = capsys.readouterr().out
    assert "BREAK segment_missing at index 150" in out
    assert "BREAK entry_missing at index 150" in out


@pytest.fixture
def small_segment(archive_dir, settings):  # noqa: F811
    settings.AUDIT_SEGMENT_MAX_ROWS = 3
    now = old_and_recent(3, 1, objects=2)
    audit_archive(now=now)
    segment = ArchiveSegment.objects.get()
    assert (segment.first_index, segment.last_index) == (0, 2)
    return archive_dir / segment.storage_path, segment


def test_every_bit_flipped_in_a_small_segment_file_is_named_never_a_crash(small_segment):
    """Issue 15: a bit flipped inside the gzip data raised an uncaught ``zlib.error`` in
    ``manage.py audit_verify`` (about 1 in 5 flips). Every flip is named by the digest
    check, and the parser itself answers ``ValueError`` or the entries, never anything else.

    (Its counterpart in ``tools/verify_evidence.py`` is left to that tool's own tests: the
    tool is being changed elsewhere.)"""
    path, segment = small_segment
    original = path.read_bytes()
    assert check_segment(segment) == ""
    entries = parse_segment(original, 0, 2)
    flips = parsed = 0
    for position in range(len(original)):
        for bit in range(8):
            altered = bytearray(original)
            altered[position] ^= 1 << bit
            path.write_bytes(bytes(altered))
            # The digest catches every flip.
            problem = check_segment(segment)
            assert problem.startswith("segment_altered"), (position, bit, problem)
            # Without the digest: rejected by the parser, or (a flip in the gzip header's
            # flags or mtime) the same entries.
            with contextlib.suppress(ValueError):
                assert parse_segment(bytes(altered), 0, 2) == entries, (position, bit)
                parsed += 1
            flips += 1
    path.write_bytes(original)
    assert flips == 8 * len(original)
    assert parsed < flips
    assert verify_log().ok
