"""The auditors' offline verifier, ``tools/verify_evidence.py``, run as its own process on
evidence the application exported (``audit.evidence.evidence_export``) and on archive segment
files the archiver wrote (``audit.archive.audit_archive``), ``docs/audit-formats.md`` §5, §7.

It accepts genuine bundles and segment files and names every forgery by its kind; whatever
the input (truncated, a bit flipped, wrong types, a directory), it answers with exit status
0, 1 or 2 and never a traceback. It runs in isolated mode (``-I``) from an empty directory:
it needs nothing of the project.
"""

from __future__ import annotations

import ast
import base64
import copy
import datetime
import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from audit import merkle, tlog
from audit.archive import audit_archive
from audit.evidence import evidence_export
from audit.models import ArchiveSegment, AuditEntry, Checkpoint
from ledger.services.refunds import refund_create
from payflow.platform import trail
from tests.audit.chainseed import seed_chain
from tests.audit.conftest import TEST_SIGNER_KEY, sequence
from tests.ledger.conftest import pay

pytestmark = pytest.mark.django_db(transaction=True)

TOOL = Path(__file__).resolve().parents[2] / "tools" / "verify_evidence.py"
ORIGIN = "payflow.test/audit"
KINDS = {
    "bad_signature",
    "too_few_cosignatures",
    "bad_checkpoint",
    "hash_mismatch",
    "not_canonical",
    "bad_inclusion",
    "chain_broken",
    "bad_consistency",
    "malformed",
    "segment_altered",
}


# --- running the tool -------------------------------------------------------------------------


def run_tool(cwd: Path, *arguments: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """The tool as an auditor runs it: its own process, isolated mode, an empty directory.
    Whatever happens, the answer is 0, 1 or 2 and never a traceback."""
    result = subprocess.run(
        [sys.executable, "-I", str(TOOL), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode in (0, 1, 2), (result.returncode, output)
    assert "Traceback" not in output, output
    assert "internal error" not in result.stderr, result.stderr
    if result.returncode == 2:
        assert result.stdout == "", result.stdout
        assert result.stderr.startswith("verify_evidence: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr  # one sentence
    return result


class Verifier:
    """Runs the tool on bundles (dicts, text or bytes) written to a scratch directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "auditor"
        self.dir.mkdir()
        self.count = 0

    def file(self, content: str | bytes, suffix: str = ".json") -> Path:
        self.count += 1
        path = self.dir / f"f{self.count}{suffix}"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def bundle_file(self, bundle: Any) -> Path:
        if isinstance(bundle, dict):
            return self.file(json.dumps(bundle, indent=1))
        return self.file(bundle)

    def __call__(
        self, bundle: Any, *extra: str, key: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        path = self.bundle_file(bundle)
        return run_tool(
            self.dir, str(path), "--public-key", key or settings.AUDIT_PUBLIC_KEY, *extra
        )

    def report(self, bundle: Any, *extra: str, key: str | None = None) -> tuple[int, dict]:
        result = self(bundle, "--json", *extra, key=key)
        assert result.returncode in (0, 1), result.stderr
        report = json.loads(result.stdout)
        assert report["verified"] is (result.returncode == 0)
        assert {problem["kind"] for problem in report["problems"]} <= KINDS
        return result.returncode, report


def kinds(report: dict) -> set[str]:
    return {problem["kind"] for problem in report["problems"]}


def rejected_as(verifier: Verifier, bundle: Any, kind: str, *extra: str, **options: Any) -> dict:
    code, report = verifier.report(bundle, *extra, **options)
    assert code == 1, report
    assert kind in kinds(report), report["problems"]
    human = verifier(bundle, *extra, **options)
    assert human.returncode == 1
    assert human.stdout.startswith("REJECTED evidence bundle ")
    assert f"  {kind}" in human.stdout, human.stdout
    return report


@pytest.fixture
def verify(tmp_path) -> Verifier:
    return Verifier(tmp_path)


# --- evidence the application exports --------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


@pytest.fixture
def history(merchant):
    """A payment captured and refunded twice, sealed by two checkpoints (the second one
    sealing the second refund and another payment)."""
    payment = pay(merchant, amount=9000)
    refund_create(payment=payment, amount=100)
    sequence()
    refund_create(payment=payment, amount=200)
    pay(merchant, amount=500)
    sequence()
    assert Checkpoint.objects.count() == 2
    return payment


def longest_object() -> tuple[str, str]:
    """The object with the most entries (its chain has a middle to remove)."""
    counts: dict[tuple[str, str], int] = {}
    for key in AuditEntry.objects.values_list("object_type", "object_id"):
        counts[key] = counts.get(key, 0) + 1
    return max(counts, key=lambda key: counts[key])


@pytest.fixture
def object_bundle(history) -> dict[str, Any]:
    object_type, object_id = longest_object()
    bundle = evidence_export(object_type=object_type, object_id=object_id)
    assert bundle["complete_objects"] == [[object_type, object_id]]
    assert len(bundle["entries"]) >= 3
    return bundle


def resign(bundle: dict[str, Any], signer_key: str = TEST_SIGNER_KEY, **changes: Any) -> None:
    """Replace the bundle's checkpoint by one signed with ``signer_key`` (``changes``:
    origin, size, root)."""
    signed = tlog.parse_checkpoint(tlog.parse_note(bundle["checkpoint"]).body)
    body = tlog.checkpoint_body(
        changes.get("origin", signed.origin),
        changes.get("size", signed.size),
        changes.get("root", signed.root),
    )
    bundle["checkpoint"] = tlog.sign_note(body, tlog.Signer(signer_key))


def rehash_from(bundle: dict[str, Any], position: int) -> None:
    """Recompute the hashes of the entries from ``position`` on, each linking to the one
    before it in the bundle (what an attacker does after editing an entry)."""
    entries = bundle["entries"]
    for number in range(position, len(entries)):
        entry = entries[number]
        if number > position:
            entry["prev_hash"] = entries[number - 1]["hash"]
        entry["hash"] = trail.entry_hash(entry["prev_hash"], unb64(entry["body"]))


def test_a_bundle_the_application_exported_is_verified(verify, object_bundle):
    checkpoint = Checkpoint.objects.order_by("-size").first()
    object_type, object_id = object_bundle["complete_objects"][0]
    result = verify(object_bundle)
    assert result.returncode == 0, result.stdout
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith("VERIFIED evidence bundle ")
    assert f"log:         {ORIGIN}, signed checkpoint of tree size {checkpoint.size}" in out
    assert b64(bytes.fromhex(checkpoint.root)) in out
    assert f"signed by:   {settings.AUDIT_PUBLIC_KEY.rsplit('+', 1)[0]}" in out
    assert f"entries:     {len(object_bundle['entries'])} (leaf indexes" in out
    assert "complete from genesis: 1" in out
    assert f"{object_type} {object_id}" in out
    assert "witnesses:   none given" in out
    assert "consistency: not checked" in out

    code, report = verify.report(object_bundle)
    assert code == 0
    assert report["problems"] == []
    assert (report["origin"], report["tree_size"]) == (ORIGIN, checkpoint.size)
    assert report["root"] == b64(bytes.fromhex(checkpoint.root))
    assert report["entries"] == len(object_bundle["entries"])
    assert report["indexes"] == [entry["index"] for entry in object_bundle["entries"]]
    assert report["complete_objects"] == [[object_type, object_id]]
    assert [object_type, object_id] in report["objects"]


def test_bundles_of_a_merchant_and_of_a_time_range_are_verified(verify, history, merchant):
    first = AuditEntry.objects.order_by("id").first().created_at
    for query in ({"merchant_id": str(merchant.pk)}, {"since": first}):
        bundle = evidence_export(**query)
        assert "complete_objects" not in bundle
        code, report = verify.report(bundle)
        assert code == 0, report["problems"]
        assert report["entries"] == len(bundle["entries"]) > 3
        assert len(report["objects"]) > 1


def test_the_public_key_may_be_given_as_a_file(verify, object_bundle):
    key_file = verify.file(settings.AUDIT_PUBLIC_KEY + "\n", ".vkey")
    assert verify(object_bundle, key=str(key_file)).returncode == 0
    assert verify(object_bundle, key=f"@{key_file}").returncode == 0


def test_the_order_of_entries_in_the_file_does_not_matter(verify, object_bundle):
    object_bundle["entries"].reverse()
    assert verify(object_bundle).returncode == 0


# --- forgeries ---------------------------------------------------------------------------------


def test_a_flipped_byte_of_an_entry_body_is_a_hash_mismatch(verify, object_bundle):
    entry = object_bundle["entries"][1]
    body = bytearray(unb64(entry["body"]))
    body[len(body) // 2] ^= 0x02
    entry["body"] = b64(bytes(body))
    report = rejected_as(verify, object_bundle, "hash_mismatch")
    assert report["problems"][0]["index"] == entry["index"]


def test_a_changed_hash_is_a_hash_mismatch(verify, object_bundle):
    entry = object_bundle["entries"][0]
    entry["hash"] = ("0" if entry["hash"][0] != "0" else "1") + entry["hash"][1:]
    rejected_as(verify, object_bundle, "hash_mismatch")


def test_an_edited_entry_rehashed_with_its_successors_fails_inclusion(verify, object_bundle):
    # someone with the database but not the signing key edits an amount and recomputes the
    # object's chain from there: the chain links, the signed root does not
    entry = object_bundle["entries"][1]
    fields = json.loads(unb64(entry["body"]))
    fields["reason"] = "nothing to see here"
    fields.pop("v")
    entry["body"] = b64(trail.encode_body(fields))
    entry["entry"] = json.loads(unb64(entry["body"]))
    rehash_from(object_bundle, 1)
    report = rejected_as(verify, object_bundle, "bad_inclusion")
    assert kinds(report) == {"bad_inclusion"}


def test_a_body_that_is_not_canonical_is_rejected_even_with_a_matching_hash(verify, object_bundle):
    entry = object_bundle["entries"][0]
    fields = json.loads(unb64(entry["body"]))
    for body in (
        json.dumps(fields, sort_keys=True, separators=(", ", ":"), ensure_ascii=False).encode(),
        json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        + b" ",
        json.dumps(fields, separators=(",", ":")).encode().replace(b'"v":"2"', b'"v":2'),
        json.dumps({**fields, "extra": "1"}, sort_keys=True, separators=(",", ":")).encode(),
    ):
        forged = copy.deepcopy(object_bundle)
        forged["entries"][0]["body"] = b64(body)
        forged["entries"][0].pop("entry")
        forged["entries"][0]["hash"] = trail.entry_hash(entry["prev_hash"], body)
        rejected_as(verify, forged, "not_canonical")


def test_an_entry_field_that_misstates_the_body_is_rejected(verify, object_bundle):
    entry = object_bundle["entries"][0]
    entry["entry"]["event_type"] = "payment.refunded"
    rejected_as(verify, object_bundle, "malformed")
    # and a missing one is fine: it is only for reading
    del entry["entry"]
    assert verify(object_bundle).returncode == 0


def test_a_swapped_inclusion_proof_node_is_rejected(verify, object_bundle):
    entry = next(e for e in object_bundle["entries"] if len(e["inclusion"]) >= 2)
    entry["inclusion"][0], entry["inclusion"][1] = entry["inclusion"][1], entry["inclusion"][0]
    rejected_as(verify, object_bundle, "bad_inclusion")


def test_another_entrys_proof_or_a_moved_index_is_rejected(verify, object_bundle):
    first, second = copy.deepcopy(object_bundle), copy.deepcopy(object_bundle)
    a, b = first["entries"][0], first["entries"][1]
    a["inclusion"] = b["inclusion"]
    rejected_as(verify, first, "bad_inclusion")
    second["entries"][0]["index"] += 1
    rejected_as(verify, second, "bad_inclusion")


def test_the_wrong_public_key_is_rejected(verify, object_bundle):
    other = tlog.Signer(tlog.generate_signer_key("someone.else/audit")).verifier_key()
    report = rejected_as(verify, object_bundle, "bad_signature", key=other)
    assert "bad_checkpoint" in kinds(report)  # nor is the checkpoint of that key's log


def test_a_key_with_the_logs_name_but_another_key_is_rejected(verify, object_bundle):
    impostor = tlog.Signer(tlog.generate_signer_key(ORIGIN)).verifier_key()
    report = rejected_as(verify, object_bundle, "bad_signature", key=impostor)
    assert "key id" in report["problems"][0]["detail"]


def test_a_checkpoint_signed_by_another_key_with_the_right_name_is_rejected(verify, object_bundle):
    # an attacker's key, named like the log: re-signed, the root of an edited history
    entry = object_bundle["entries"][0]
    body = bytearray(unb64(entry["body"]))
    body[-3] ^= 0x01
    entry["body"] = b64(bytes(body))
    resign(object_bundle, tlog.generate_signer_key(ORIGIN), root=b"\x07" * 32)
    report = rejected_as(verify, object_bundle, "bad_signature")
    assert "no signature of " + settings.AUDIT_PUBLIC_KEY.rsplit("+", 1)[0] in json.dumps(report)


def test_a_signature_line_that_does_not_verify_is_rejected(verify, object_bundle):
    note = object_bundle["checkpoint"]
    cut = note.rindex(" ") + 1
    signature = bytearray(unb64(note[cut:].strip()))
    signature[10] ^= 0x40
    object_bundle["checkpoint"] = note[:cut] + b64(bytes(signature)) + "\n"
    rejected_as(verify, object_bundle, "bad_signature")


def test_a_checkpoint_whose_root_or_size_was_changed_is_rejected(verify, object_bundle):
    lines = object_bundle["checkpoint"].split("\n")
    root = bytearray(unb64(lines[2]))
    root[0] ^= 0x80
    changed = copy.deepcopy(object_bundle)
    changed["checkpoint"] = "\n".join([*lines[:2], b64(bytes(root)), *lines[3:]])
    rejected_as(verify, changed, "bad_signature")
    bigger = copy.deepcopy(object_bundle)
    bigger["tree_size"] += 1
    rejected_as(verify, bigger, "bad_checkpoint")
    # re-signed with the log's own (stolen) key but for another origin
    foreign = copy.deepcopy(object_bundle)
    resign(foreign, origin="payflow.other/audit")
    rejected_as(verify, foreign, "bad_checkpoint")


def test_an_entry_removed_from_a_complete_object_breaks_its_chain(verify, object_bundle):
    middle = copy.deepcopy(object_bundle)
    removed = middle["entries"].pop(1)
    report = rejected_as(verify, middle, "chain_broken")
    assert report["problems"][0]["index"] == object_bundle["entries"][2]["index"]
    assert removed["index"] not in report["indexes"]
    first = copy.deepcopy(object_bundle)
    first["entries"].pop(0)
    rejected_as(verify, first, "chain_broken")
    # and an object claimed complete of which the bundle holds nothing at all
    nothing = copy.deepcopy(object_bundle)
    nothing["complete_objects"].append(["ledger.transaction", "not-in-the-bundle"])
    rejected_as(verify, nothing, "chain_broken")


def reissued(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle's entries as the whole of a log signed with the log's key (the log itself
    signing a broken history): indexes 0.., tree and proofs recomputed, checkpoint re-signed.
    Only the chain checks can catch what is wrong in it."""
    forged = copy.deepcopy(bundle)
    entries = forged["entries"]
    nodes: dict[tuple[int, int], bytes] = {}
    tree = tlog.CompactRange(0, [])
    for level, index, digest in tree.append(
        [merkle.leaf_hash(bytes.fromhex(entry["hash"])) for entry in entries]
    ):
        nodes[(level, index)] = digest

    def get(keys):
        return {key: nodes[key] for key in keys if key in nodes}

    for index, entry in enumerate(entries):
        entry["index"] = index
        entry["inclusion"] = [b64(node) for node in tlog.inclusion_proof(index, len(entries), get)]
    forged["tree_size"] = len(entries)
    resign(forged, size=len(entries), root=tree.root())
    forged.pop("consistency", None)
    return forged


def test_a_reissued_bundle_with_intact_chains_verifies(verify, object_bundle):
    assert verify(reissued(object_bundle)).returncode == 0  # the helper forges faithfully


def test_a_chain_broken_before_it_was_signed_is_still_rejected(verify, object_bundle, merchant):
    # a complete object missing its middle entry, every proof and the signature valid
    middle = copy.deepcopy(object_bundle)
    del middle["entries"][1]
    report = rejected_as(verify, reissued(middle), "chain_broken")
    assert kinds(report) == {"chain_broken"}
    # a merchant's bundle (no complete object): an entry linking to another object's entry
    bundle = evidence_export(merchant_id=str(merchant.pk))
    entries = bundle["entries"]
    owner = [json.loads(unb64(e["body"]))["object_id"] for e in entries]
    later = next(n for n in range(1, len(entries)) if owner[n] != owner[0])
    entries[later]["prev_hash"] = entries[0]["hash"]
    rehash_from(bundle, later)
    bundle["entries"] = entries[: later + 1]
    report = rejected_as(verify, reissued(bundle), "chain_broken")
    assert "of another object" in report["problems"][0]["detail"]
    # two entries of one object claiming the same predecessor: a fork
    fork = copy.deepcopy(object_bundle)
    twin = copy.deepcopy(fork["entries"][1])
    fields = json.loads(unb64(twin["body"]))
    fields["reason"] = "the other branch"
    fields.pop("v")
    twin["body"] = b64(trail.encode_body(fields))
    twin["hash"] = trail.entry_hash(twin["prev_hash"], unb64(twin["body"]))
    twin.pop("entry")
    fork["entries"] = [*fork["entries"][:2], twin]
    del fork["complete_objects"]
    report = rejected_as(verify, reissued(fork), "chain_broken")
    assert "fork" in report["problems"][0]["detail"]


def test_a_duplicated_entry_is_malformed(verify, object_bundle):
    object_bundle["entries"].append(copy.deepcopy(object_bundle["entries"][0]))
    rejected_as(verify, object_bundle, "malformed")


# --- consistency with a checkpoint the auditor trusts ------------------------------------------


@pytest.fixture
def older(history) -> Checkpoint:
    return Checkpoint.objects.order_by("size").first()


def bundle_since(older: Checkpoint, **query: Any) -> dict[str, Any]:
    return evidence_export(
        **(query or {"object_type": longest_object()[0], "object_id": longest_object()[1]}),
        trusted_size=older.size,
        trusted_root=bytes.fromhex(older.root),
    )


def test_a_consistency_proof_from_the_trusted_checkpoint_is_verified(verify, older):
    bundle = bundle_since(older)
    latest = Checkpoint.objects.order_by("-size").first()
    assert bundle["consistency"]["from_size"] == older.size < latest.size
    trusted = verify.file(older.note, ".note")
    result = verify(bundle, "--trusted-checkpoint", str(trusted))
    assert result.returncode == 0, result.stdout
    assert (
        f"consistency: from size {older.size} to {latest.size}, from the trusted checkpoint"
        in result.stdout
    )
    code, report = verify.report(bundle, "--trusted-checkpoint", str(trusted))
    assert code == 0
    assert report["consistency"] == {
        "from_size": older.size,
        "to_size": latest.size,
        "from_trusted_checkpoint": True,
    }
    assert report["trusted_checkpoint"] == {
        "size": older.size,
        "root": b64(bytes.fromhex(older.root)),
    }
    # the latest checkpoint itself, trusted: nothing to prove
    same = verify.file(latest.note, ".note")
    plain = evidence_export(object_type=longest_object()[0], object_id=longest_object()[1])
    assert verify(plain, "--trusted-checkpoint", str(same)).returncode == 0
    # without a trusted checkpoint the proof is still checked, from what the bundle states
    assert "not anchored" not in verify(bundle).stdout
    assert "give --trusted-checkpoint to anchor it" in verify(bundle).stdout


def test_a_bad_consistency_proof_is_rejected(verify, older):
    trusted = str(verify.file(older.note, ".note"))
    bundle = bundle_since(older)
    assert bundle["consistency"]["proof"]
    flipped = copy.deepcopy(bundle)
    node = bytearray(unb64(flipped["consistency"]["proof"][0]))
    node[3] ^= 0x01
    flipped["consistency"]["proof"][0] = b64(bytes(node))
    rejected_as(verify, flipped, "bad_consistency", "--trusted-checkpoint", trusted)
    rejected_as(verify, flipped, "bad_consistency")  # a proof that fails fails anyway
    shortened = copy.deepcopy(bundle)
    shortened["consistency"]["proof"].pop()
    rejected_as(verify, shortened, "bad_consistency", "--trusted-checkpoint", trusted)
    # a proof from somewhere else than the trusted checkpoint
    elsewhere = copy.deepcopy(bundle)
    elsewhere["consistency"]["from_root"] = b64(b"\x01" * 32)
    rejected_as(verify, elsewhere, "bad_consistency", "--trusted-checkpoint", trusted)
    # no proof at all, though the auditor trusts an older checkpoint
    missing = copy.deepcopy(bundle)
    del missing["consistency"]
    rejected_as(verify, missing, "bad_consistency", "--trusted-checkpoint", trusted)


def test_a_forked_history_is_caught_by_the_trusted_checkpoint(verify, older):
    # the auditor trusts a checkpoint of a history the log no longer extends (signed with
    # the log's key, as a thief of the key would sign a fork): no proof links the two
    body = tlog.checkpoint_body(ORIGIN, older.size, hashlib.sha256(b"fork").digest())
    forked = verify.file(tlog.sign_note(body, tlog.Signer(TEST_SIGNER_KEY)), ".note")
    bundle = bundle_since(older)
    rejected_as(verify, bundle, "bad_consistency", "--trusted-checkpoint", str(forked))


def test_a_trusted_checkpoint_that_does_not_verify_stops_the_tool(verify, older):
    bundle = bundle_since(older)
    foreign = tlog.generate_signer_key(ORIGIN)
    body = tlog.checkpoint_body(ORIGIN, older.size, bytes.fromhex(older.root))
    for content in (tlog.sign_note(body, tlog.Signer(foreign)), body, "", "\x00\xff"):
        path = verify.file(content, ".note")
        result = verify(bundle, "--trusted-checkpoint", str(path))
        assert result.returncode == 2, result.stdout
        assert "trusted checkpoint" in result.stderr


# --- witnesses -----------------------------------------------------------------------------------


@pytest.fixture
def witnesses(settings) -> list[tlog.WitnessSigner]:
    signers = [tlog.WitnessSigner(tlog.generate_witness_key(f"witness.test/w{n}")) for n in (1, 2)]
    settings.AUDIT_WITNESS_KEYS = [signer.verifier_key() for signer in signers]
    return signers


def cosign(client, signer: tlog.WitnessSigner, timestamp: int = 1_800_000_000) -> None:
    """The witness's cosignature of the latest checkpoint, sent to the log as a witness does."""
    checkpoint = Checkpoint.objects.order_by("-size").first()
    cosigned = tlog.add_cosignature(checkpoint.note, signer, timestamp)
    answer = client.post("/audit/log/cosignature", cosigned, content_type="text/plain")
    assert answer.status_code == 200, answer.content


def witness_arguments(*signers: tlog.WitnessSigner) -> list[str]:
    return [arg for signer in signers for arg in ("--witness-key", signer.verifier_key())]


def test_a_witness_quorum_that_is_met_is_verified_and_named(verify, history, witnesses, client):
    w1, w2 = witnesses
    cosign(client, w1)
    bundle = evidence_export(object_type=longest_object()[0], object_id=longest_object()[1])
    assert bundle["checkpoint"].count("\n\u2014 ") == 2  # the log's line and w1's
    result = verify(bundle, *witness_arguments(w1, w2), "--quorum", "1")
    assert result.returncode == 0, result.stdout
    assert "witnesses:   1 of 2 given cosigned (quorum 1): witness.test/w1+" in result.stdout
    assert "(2027-01-15T08:00:00Z)" in result.stdout
    code, report = verify.report(bundle, *witness_arguments(w1))  # the default quorum is 1
    assert code == 0
    assert [w["timestamp"] for w in report["witnesses"]] == [1_800_000_000]
    assert report["witnesses"][0]["name"].startswith("witness.test/w1+")
    cosign(client, w2, 1_800_000_100)
    both = evidence_export(object_type=longest_object()[0], object_id=longest_object()[1])
    code, report = verify.report(both, *witness_arguments(w1, w2), "--quorum", "2")
    assert (code, len(report["witnesses"])) == (0, 2)


def test_a_witness_quorum_that_is_not_met_is_rejected(verify, history, witnesses, client):
    w1, w2 = witnesses
    cosign(client, w1)
    bundle = evidence_export(object_type=longest_object()[0], object_id=longest_object()[1])
    rejected_as(verify, bundle, "too_few_cosignatures", *witness_arguments(w1, w2), "--quorum", "2")
    rejected_as(verify, bundle, "too_few_cosignatures", *witness_arguments(w2))
    # a witness named like w1 with another key did not cosign
    impostor = tlog.WitnessSigner(tlog.generate_witness_key("witness.test/w1"))
    rejected_as(verify, bundle, "too_few_cosignatures", *witness_arguments(impostor))
    # a quorum more than the keys given can never be met: a usage error
    result = verify(bundle, *witness_arguments(w1), "--quorum", "2")
    assert result.returncode == 2
    assert "--quorum 2 cannot be met" in result.stderr


def test_a_cosignature_line_that_does_not_verify_is_rejected(verify, history, witnesses, client):
    w1, _ = witnesses
    cosign(client, w1)
    bundle = evidence_export(object_type=longest_object()[0], object_id=longest_object()[1])
    note = bundle["checkpoint"]
    cut = note.rindex(" ") + 1
    blob = bytearray(unb64(note[cut:].strip()))
    blob[6] ^= 0x01  # the timestamp: the signature no longer matches it
    bundle["checkpoint"] = note[:cut] + b64(bytes(blob)) + "\n"
    rejected_as(verify, bundle, "bad_signature", *witness_arguments(w1), "--quorum", "0")
    # lines of keys the auditor did not give are ignored
    assert verify(bundle).returncode == 0


# --- whatever the input: 0, 1 or 2, never a traceback ------------------------------------------


def test_a_bundle_truncated_at_every_nth_byte_is_rejected_never_a_crash(verify, history):
    bundle = evidence_export(object_type=longest_object()[0], object_id=longest_object()[1])
    data = json.dumps(bundle).encode()
    step = max(1, len(data) // 40)
    for cut in range(0, len(data), step):
        result = verify(data[:cut])
        assert result.returncode in (1, 2), (cut, result.stdout)
        if result.returncode == 1:
            assert "malformed" in result.stdout, (cut, result.stdout)


def test_bits_flipped_anywhere_in_a_bundle_are_rejected_never_a_crash(verify, history):
    bundle = evidence_export(object_type=longest_object()[0], object_id=longest_object()[1])
    data = json.dumps(bundle).encode()
    # (a flip inside the member name "complete_objects" only drops a claim: not sampled)
    claim = data.index(b'"complete_objects"')
    positions = [p for p in range(3, len(data), len(data) // 12) if not claim <= p < claim + 18]
    for position in positions:
        for bit in (0, 3, 5, 7):
            altered = bytearray(data)
            altered[position] ^= 1 << bit
            result = verify(bytes(altered))
            assert result.returncode == 1, (position, bit, chr(data[position]), result.stdout)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"[]",
        b"null",
        b"\xef\xbb\xbf{}",
        b"\xff\xfe{}",
        b'{"format": "payflow-audit-bundle/2"}',
        b'{"format": "payflow-audit-bundle/1", "entries": []}',
        b'{"format": "payflow-audit-bundle/2", "format": "payflow-audit-bundle/2"}',
        b'{"format": "payflow-audit-bundle/2", "tree_size": NaN}',
        b'{"format": "payflow-audit-bundle/2", "tree_size": 1e400, "entries": [1, null, {}]}',
        b'{"format": "payflow-audit-bundle/2", "checkpoint": 5, "origin": [], "entries": "x",'
        b' "tree_size": "3", "complete_objects": {"a": 1}, "consistency": []}',
        b'{"format": "payflow-audit-bundle/2", "checkpoint": "a\\n\\n\\u2014 x AAAA\\n",'
        b' "entries": [{"index": true}, {"index": -1}, {"index": 1, "prev_hash": 5,'
        b' "hash": "", "body": "@@", "inclusion": [1]}, {"index": 99999999999999999999999}]}',
        b'{"format": "payflow-audit-bundle/2", "tree_size": 1' + b"0" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"format": "payflow-audit-bundle/2", "entries": [{"index": 0, "body": "AA"}]}',
    ],
)
def test_malformed_bundles_are_rejected_never_a_crash(verify, content):
    code, report = verify.report(content)
    assert code == 1
    assert "malformed" in kinds(report) or "bad_checkpoint" in kinds(report), report


def test_wrong_types_inside_an_exported_bundle_are_rejected(verify, object_bundle):
    entry_keys = ["index", "prev_hash", "hash", "body", "inclusion"]
    for where, key in [("bundle", k) for k in ("checkpoint", "tree_size", "origin", "entries")] + [
        ("entry", k) for k in entry_keys
    ]:
        for value in (None, 1.5, "x", [], True):
            forged = copy.deepcopy(object_bundle)
            target = forged if where == "bundle" else forged["entries"][0]
            target[key] = value
            assert verify.report(forged)[0] == 1, (where, key, value)
        forged = copy.deepcopy(object_bundle)
        del (forged if where == "bundle" else forged["entries"][0])[key]
        assert verify.report(forged)[0] == 1, (where, key)
    truncated = copy.deepcopy(object_bundle)
    truncated["entries"][0]["inclusion"][0] = truncated["entries"][0]["inclusion"][0][:-3]
    assert verify.report(truncated)[0] == 1
    truncated["entries"][0]["body"] = truncated["entries"][0]["body"][:-1]
    assert verify.report(truncated)[0] == 1


def test_usage_errors_and_unreadable_inputs_exit_2_with_one_sentence(verify, object_bundle):
    bundle = str(verify.bundle_file(object_bundle))
    key = settings.AUDIT_PUBLIC_KEY
    name, key_hex, key_b64 = key.split("+", 2)
    witness_as_log = tlog.WitnessSigner(tlog.generate_witness_key(ORIGIN)).verifier_key()
    cases = [
        ([], "give a BUNDLE"),
        ([bundle], "--public-key is required"),
        ([str(verify.dir / "missing.json"), "--public-key", key], "cannot read the bundle"),
        ([str(verify.dir), "--public-key", key], "is a directory"),
        ([bundle, "--public-key", "not-a-key"], "--public-key"),
        ([bundle, "--public-key", f"{name}+{key_hex}+{key_b64[:-4]}"], "30 bytes, not 33"),
        ([bundle, "--public-key", f"{name}+00000000+{key_b64}"], "key id"),
        ([bundle, "--public-key", witness_as_log], "not an Ed25519 log key"),
        ([bundle, "--public-key", f"@{verify.dir}"], "is a directory"),
        ([bundle, "--public-key", key, "--witness-key", key], "not a cosignature/v1 key"),
        ([bundle, "--public-key", key, "--quorum", "many"], "invalid int value"),
        ([bundle, "--public-key", key, "--quorum", "-1"], "must not be negative"),
        ([bundle, "--public-key", key, "--trusted-checkpoint", str(verify.dir)], "directory"),
        ([bundle, "--public-key", key, "--digest", "ab" * 32], "for --segment"),
        ([bundle, "--public-key", key, "--segment", bundle], "not both"),
        ([bundle, "--public-key", key, "--no-such-option"], "unrecognized arguments"),
    ]
    for arguments, message in cases:
        result = run_tool(verify.dir, *arguments)
        assert result.returncode == 2, (arguments, result.stdout)
        assert message in result.stderr, (arguments, result.stderr)


def test_the_tool_imports_only_the_standard_library_and_cryptography():
    tree = ast.parse(TOOL.read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    outside = {name for name in imported if name not in sys.stdlib_module_names}
    assert outside == {"cryptography"}
    assert "__future__" in imported
    assert not {"django", "audit", "payflow", "ledger", "tests"} & imported


# --- archive segment files -----------------------------------------------------------------------


@pytest.fixture
def archive_dir(settings, tmp_path) -> Path:
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "archive")},
        },
    }
    settings.AUDIT_SEGMENT_MAX_ROWS = 500
    return tmp_path / "archive"


def archived_segment(archive_dir: Path, total: int, objects: int) -> tuple[Path, ArchiveSegment]:
    """``total`` old entries of ``objects`` objects, sealed and archived into one segment
    file by the application's archiver."""
    now = timezone.now()
    day = datetime.timedelta(days=1)
    seed_chain(total, start=now - 700 * day, end=now - 400 * day, objects=objects)
    seed_chain(2, start=now - 2 * day, end=now - day, objects=objects)  # stays live
    sequence()
    assert audit_archive(now=now).rows == total
    segment = ArchiveSegment.objects.get()
    return archive_dir / segment.storage_path, segment


def segment_arguments(segment: ArchiveSegment, digest: str | None = None) -> list[str]:
    return [
        "--digest",
        digest or segment.file_digest,
        "--first-index",
        str(segment.first_index),
        "--last-index",
        str(segment.last_index),
    ]


def check_segment(cwd: Path, files: list[Path], arguments: list[str]) -> dict:
    result = run_tool(cwd, "--segment", *map(str, files), *arguments, "--json")
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert report["verified"] is (result.returncode == 0)
    return report


def test_a_segment_file_the_archiver_wrote_is_verified(archive_dir, tmp_path):
    path, segment = archived_segment(archive_dir, 40, objects=4)
    result = run_tool(tmp_path, "--segment", str(path), *segment_arguments(segment))
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(f"VERIFIED segment file {path} (payflow-audit-segment/2)")
    assert f"leaf indexes {segment.first_index}..{segment.last_index}" in result.stdout
    assert "40 entries of 4 objects" in result.stdout
    report = check_segment(tmp_path, [path], segment_arguments(segment))
    assert report["files"] == [
        {
            "file": str(path),
            "verified": True,
            "entries": 40,
            "objects": 4,
            "problems": [],
            "more_problems": 0,
        }
    ]


def altered_segment(
    path: Path, tmp_path: Path, change, name: str = "altered.jsonl.gz"
) -> tuple[Path, str]:
    """A copy of the segment with its lines changed by ``change`` (a list of lines in, a
    list out), gzip'd again; and the new file's digest (an attacker who edits the record)."""
    lines = gzip.decompress(path.read_bytes()).decode().split("\n")[:-1]
    data = gzip.compress(("\n".join(change(lines)) + "\n").encode(), mtime=0)
    target = tmp_path / name
    target.write_bytes(data)
    return target, hashlib.sha256(data).hexdigest()


def test_a_segment_with_a_wrong_digest_range_or_entries_is_altered(archive_dir, tmp_path):
    path, segment = archived_segment(archive_dir, 6, objects=2)
    first, last = segment.first_index, segment.last_index

    def problems(files, arguments):
        report = check_segment(tmp_path, files, arguments)
        assert not report["verified"]
        found = [p for f in report["files"] for p in f["problems"]]
        assert found
        assert {p["kind"] for p in found} == {"segment_altered"}
        return " / ".join(p["detail"] for p in found)

    assert "not the recorded" in problems([path], segment_arguments(segment, "0" * 64))
    for wrong in (["--first-index", str(first + 1)], ["--last-index", str(last + 1)]):
        arguments = segment_arguments(segment)
        arguments[arguments.index(wrong[0]) + 1] = wrong[1]
        assert "header" in problems([path], arguments)

    def edit_body(lines):
        row = json.loads(lines[2])
        fields = json.loads(unb64(row["body"]))
        fields["reason"] = "nothing to see here"
        fields.pop("v")
        row["body"] = b64(trail.encode_body(fields))
        lines[2] = json.dumps(row, sort_keys=True, separators=(",", ":"))
        return lines

    edited, digest = altered_segment(path, tmp_path, edit_body)
    assert "does not match its body" in problems([edited], segment_arguments(segment, digest))
    dropped, digest = altered_segment(path, tmp_path, lambda lines: lines[:-1], "dropped.gz")
    assert "entry lines" in problems([dropped], segment_arguments(segment, digest))
    spaced, digest = altered_segment(
        path, tmp_path, lambda lines: [lines[0]] + [line.replace(",", ", ") for line in lines[1:]]
    )
    assert "keys sorted, no whitespace" in problems([spaced], segment_arguments(segment, digest))
    not_gzip = tmp_path / "plain.jsonl"
    not_gzip.write_bytes(gzip.decompress(path.read_bytes()))
    digest = hashlib.sha256(not_gzip.read_bytes()).hexdigest()
    assert "gzip" in problems([not_gzip], segment_arguments(segment, digest))
    # exit status 1 and a named problem for people too
    result = run_tool(tmp_path, "--segment", str(edited), *segment_arguments(segment))
    assert result.returncode == 1
    assert result.stdout.startswith(f"REJECTED segment file {edited}")
    assert "  segment_altered" in result.stdout


def test_every_bit_flipped_in_a_small_segment_file_is_segment_altered(archive_dir, tmp_path):
    path, segment = archived_segment(archive_dir, 2, objects=1)
    original = path.read_bytes()
    flips = tmp_path / "flips"
    flips.mkdir()
    files = []
    for position in range(len(original)):
        for bit in range(8):
            altered = bytearray(original)
            altered[position] ^= 1 << bit
            files.append(flips / f"{position:05d}-{bit}.gz")
            files[-1].write_bytes(bytes(altered))
    assert len(files) == 8 * len(original) > 1000
    assert check_segment(tmp_path, [path], segment_arguments(segment))["verified"]
    for start in range(0, len(files), 1000):
        batch = files[start : start + 1000]
        report = check_segment(flips, batch, segment_arguments(segment))
        assert len(report["files"]) == len(batch)
        for checked in report["files"]:
            assert not checked["verified"], checked["file"]
            assert {p["kind"] for p in checked["problems"]} == {"segment_altered"}
    # one at a time, as an auditor would run it: exit status 1 and the kind
    for altered in files[:: len(files) // 8]:
        result = run_tool(tmp_path, "--segment", str(altered), *segment_arguments(segment))
        assert result.returncode == 1, result.stdout
        assert "segment_altered" in result.stdout


def test_segment_usage_errors_exit_2(archive_dir, tmp_path):
    path, segment = archived_segment(archive_dir, 2, objects=1)
    cases = [
        (["--segment", str(path)], "needs --digest"),
        (["--segment", str(path), *segment_arguments(segment, "xyz")], "64 hex digits"),
        (["--segment", str(tmp_path), *segment_arguments(segment)], "is a directory"),
        (["--segment", str(tmp_path / "nothing.gz"), *segment_arguments(segment)], "cannot read"),
        (
            ["--segment", str(path), "--digest", segment.file_digest, "--first-index", "5",
             "--last-index", "2"],
            "first <= last",
        ),
        (["--segment", str(path), *segment_arguments(segment), "--public-key", "x"], "bundles"),
    ]  # fmt: skip
    for arguments, message in cases:
        result = run_tool(tmp_path, *arguments)
        assert result.returncode == 2, (arguments, result.stdout)
        assert message in result.stderr, (arguments, result.stderr)
