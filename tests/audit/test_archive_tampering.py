"""Tampering with segment files is detected and named: a byte flipped, a file deleted, a
file replaced by a re-computed one (with or without its recorded digest changed too)."""

import contextlib
import gzip
import hashlib
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.archive import audit_archive
from audit.chain import entry_hash
from audit.models import ArchiveSegment
from audit.verify import verify_all
from tests.audit.test_archive import archive_dir, old_and_recent  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def archived(archive_dir):  # noqa: F811
    now = old_and_recent(1500, 30, lanes=[9])  # three segments of 500, then live rows
    audit_archive(now=now)
    assert verify_all().ok
    middle = ArchiveSegment.objects.order_by("first_seq")[1]
    return archive_dir / middle.storage_path, middle


def break_of(lane=9):
    report = verify_all(lanes=[lane])
    assert not report.ok
    return report.breaks[0]


def recomputed(path, seq_to_edit):
    """The attacker's file: one row's contents edited, every later hash of the file
    recomputed, a valid gzip of valid lines."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    header, rows = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    prev = header["first_prev_hash"]
    for row in rows:
        canonical = json.loads(row["canonical"])
        if row["seq"] == seq_to_edit:
            canonical["reason"] = "nothing to see here"
        row["canonical"] = json.dumps(
            canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        row["prev_hash"], row["hash"] = prev, entry_hash(prev, row["canonical"].encode())
        prev = row["hash"]
    header["last_hash"] = prev
    body = [json.dumps(header, sort_keys=True, separators=(",", ":"))]
    body += [json.dumps(row, sort_keys=True, separators=(",", ":")) for row in rows]
    return gzip.compress(("\n".join(body) + "\n").encode(), mtime=0), prev


def test_a_flipped_byte_is_segment_altered(archived):
    path, segment = archived
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.chmod(0o640)
    path.write_bytes(bytes(data))
    found = break_of()
    assert (found.break_kind, found.break_seq) == ("segment_altered", segment.first_seq)
    assert segment.storage_path in found.detail


def test_a_deleted_file_is_segment_missing(archived):
    path, segment = archived
    path.unlink()
    found = break_of()
    assert segment.first_seq == 501
    assert (found.break_kind, found.break_seq) == ("segment_missing", 501)


def test_a_recomputed_file_is_segment_replaced(archived):
    path, _ = archived
    path.chmod(0o640)
    path.write_bytes(recomputed(path, 700)[0])
    assert break_of().break_kind == "segment_replaced"


def test_a_recomputed_file_with_its_record_rewritten_breaks_the_link_to_the_next_segment(
    archived,
):
    path, segment = archived
    data, last_hash = recomputed(path, 700)
    path.chmod(0o640)
    path.write_bytes(data)
    ArchiveSegment.objects.filter(pk=segment.pk).update(
        file_digest=hashlib.sha256(data).hexdigest(), last_hash=last_hash
    )
    found = break_of()
    # The file and its record agree, but the next segment's first row no longer links.
    assert (found.break_kind, found.break_seq) == ("row_inserted_or_reordered", 1001)


def test_the_command_exits_non_zero_and_names_the_break(archived, capsys):
    path, _ = archived
    path.unlink()
    with pytest.raises(CommandError):
        call_command("audit_verify", "--lane", "9")
    assert "segment_missing" in capsys.readouterr().out


@pytest.fixture
def small_segment(archive_dir, settings):  # noqa: F811
    settings.AUDIT_SEGMENT_MAX_ROWS = 3
    now = old_and_recent(3, 1, lanes=[9])
    audit_archive(now=now)
    segment = ArchiveSegment.objects.get()
    return archive_dir / segment.storage_path, segment


def test_every_bit_flipped_in_a_small_segment_file_is_named_never_a_crash(small_segment):
    """Issue 15: a bit flipped inside the gzip data raised an uncaught ``zlib.error`` in
    ``manage.py audit_verify`` and in ``tools/verify_evidence.py`` (about 1 in 5 flips)."""
    import importlib.util
    import pathlib

    from audit.segments import check_segment

    spec = importlib.util.spec_from_file_location(
        "verify_evidence", pathlib.Path(__file__).parents[2] / "tools" / "verify_evidence.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    path, segment = small_segment
    original = path.read_bytes()
    assert check_segment(segment) == ""
    flips = 0
    for position in range(len(original)):
        for bit in range(8):
            altered = bytearray(original)
            altered[position] ^= 1 << bit
            path.write_bytes(bytes(altered))
            # The digest catches every flip; one that leaves the rows intact (gzip header
            # bytes: flags, mtime) is a re-written file, one that does not is altered.
            problem = check_segment(segment)
            assert problem.startswith(("segment_altered", "segment_replaced")), (position, bit)
            # The tool (which has no digest to compare) names it or finds the rows good.
            with contextlib.suppress(tool.Rejected):
                tool.check_segment_file(path, {})
            flips += 1
    path.write_bytes(original)
    assert flips == 8 * len(original)
    assert verify_all(lanes=[9]).ok
