"""The auditor's offline verifier, ``tools/verify_evidence.py``, run as its own process.

It accepts a genuine evidence bundle and rejects every forgery: altered entry bytes, a
broken prev_hash link, a swapped proof node, the wrong public key, a checkpoint or an entry
removed, entries reordered, a checkpoint naming the wrong previous one. Bundles are built
from ``Trail`` (an in-memory audit trail, see test_signing.py) with ``audit.signing``.
No database.
"""

from __future__ import annotations

import ast
import base64
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from audit.signing import public_key_from_seed, public_key_pem, sign_checkpoint
from tests.audit.test_signing import KEY_ID, OTHER_SEED, PUBLIC_KEY, SEED, Trail, chain_hash

VERIFIER = Path(__file__).resolve().parents[2] / "tools" / "verify_evidence.py"


def run_verifier(tmp_path: Path, bundle: Any, *keys: str) -> subprocess.CompletedProcess[str]:
    """The verifier in isolated mode (-I), from an empty directory: it needs no project code."""
    path = tmp_path / "bundle.json"
    path.write_text(bundle if isinstance(bundle, str) else json.dumps(bundle, indent=1))
    arguments = [arg for key in (keys or (PUBLIC_KEY.hex(),)) for arg in ("--public-key", key)]
    return subprocess.run(
        [sys.executable, "-I", str(VERIFIER), str(path), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )


def assert_rejected(result: subprocess.CompletedProcess[str], problem: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("REJECTED ")
    assert problem in result.stderr, result.stderr


@pytest.fixture
def trail() -> Trail:
    """Three lanes, three checkpoints, entries in every lane (lane 2 only later)."""
    trail = Trail()
    trail.write({0: 3, 1: 2})
    trail.checkpoint()
    trail.write({0: 2, 2: 3})
    trail.checkpoint()
    trail.write({1: 3, 2: 1})
    trail.checkpoint()
    return trail


@pytest.fixture
def bundle(trail: Trail) -> dict[str, Any]:
    return trail.bundle()


def entry_at(bundle: dict[str, Any], lane: int, seq: int) -> dict[str, Any]:
    return next(e for e in bundle["entries"] if (e["lane"], e["seq"]) == (lane, seq))


# --- genuine bundles --------------------------------------------------------------------


def test_a_genuine_bundle_of_the_whole_chain_is_verified(tmp_path, bundle):
    result = run_verifier(tmp_path, bundle)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("VERIFIED ")
    assert "checkpoints 1..3 (3)" in result.stdout
    assert "starts at the first checkpoint ever made" in result.stdout
    assert "entries: 14" in result.stdout
    assert "lane 0 seq 1..5; lane 1 seq 1..5; lane 2 seq 1..4" in result.stdout


def test_a_bundle_of_single_entries_from_a_later_part_of_the_chain_is_verified(tmp_path, trail):
    # given the history of one object: a few entries of lane 2, proven in checkpoints 2 and 3
    bundle = trail.bundle(trail.checkpoints[1:], entry_ranges=[(2, 1, 1), (2, 3, 4)])
    # when
    result = run_verifier(tmp_path, bundle)
    # then
    assert result.returncode == 0, result.stderr
    assert "starts at checkpoint 2 (the ones before it are not in the bundle)" in result.stdout
    assert "entries: 3" in result.stdout


def test_the_public_key_may_be_given_as_a_pem_file_or_a_hex_file(tmp_path, bundle):
    pem, hex_file = tmp_path / "audit.pem", tmp_path / "audit.hex"
    pem.write_text(public_key_pem(PUBLIC_KEY))
    hex_file.write_text(PUBLIC_KEY.hex() + "\n")
    assert run_verifier(tmp_path, bundle, str(pem)).returncode == 0
    assert run_verifier(tmp_path, bundle, str(hex_file)).returncode == 0


def test_checkpoints_signed_before_and_after_a_key_rotation_verify_with_both_keys(tmp_path):
    trail = Trail()
    trail.write({0: 1})
    trail.checkpoint()
    trail.seed, trail.key_id = OTHER_SEED, "audit-test-2"
    trail.write({1: 1})
    trail.checkpoint()
    bundle = trail.bundle()
    other_key = public_key_from_seed(OTHER_SEED).hex()
    assert run_verifier(tmp_path, bundle, PUBLIC_KEY.hex(), other_key).returncode == 0
    assert_rejected(run_verifier(tmp_path, bundle), "key id audit-test-2")


# --- forgeries --------------------------------------------------------------------------


def test_altered_entry_bytes_are_rejected(tmp_path, bundle):
    entry = entry_at(bundle, 0, 4)
    canonical = base64.b64decode(entry["canonical"]).replace(b"change", b"chAnge")
    entry["canonical"] = base64.b64encode(canonical).decode()
    assert_rejected(run_verifier(tmp_path, bundle), "(lane 0, seq 4): its hash is not SHA-256")


def test_an_entry_rewritten_with_recomputed_hashes_is_caught_by_the_signed_root(tmp_path, bundle):
    # given someone with write access to the database but not the signing key, who rewrites
    # an entry and recomputes its hash and the next entry's link and hash
    entry, successor = entry_at(bundle, 1, 1), entry_at(bundle, 1, 2)
    canonical = base64.b64decode(entry["canonical"]).replace(b"change", b"forged")
    entry["canonical"] = base64.b64encode(canonical).decode()
    entry["hash"] = chain_hash(entry["prev_hash"], canonical)
    successor["prev_hash"] = entry["hash"]
    successor["hash"] = chain_hash(entry["hash"], base64.b64decode(successor["canonical"]))
    # then
    assert_rejected(
        run_verifier(tmp_path, bundle),
        "(lane 1, seq 1): its inclusion proof does not lead to the signed root of checkpoint 1",
    )


def test_an_altered_prev_hash_link_is_rejected(tmp_path, bundle):
    entry = entry_at(bundle, 0, 3)
    entry["prev_hash"] = entry_at(bundle, 0, 1)["hash"]
    assert_rejected(run_verifier(tmp_path, bundle), "(lane 0, seq 3): its hash is not SHA-256")
    entry["hash"] = chain_hash(entry["prev_hash"], base64.b64decode(entry["canonical"]))
    assert_rejected(
        run_verifier(tmp_path, bundle),
        "(lane 0, seq 3): prev_hash is not the hash of the entry before it",
    )


def test_a_chain_broken_before_it_was_signed_is_still_rejected(tmp_path):
    # given a lane whose third entry does not link to the second, yet was checkpointed
    trail = Trail()
    trail.write({0: 2})
    trail.append(0, prev_hash=trail.entry(0, 1).hash)
    trail.checkpoint()
    # then the signature and the proofs hold, the link does not
    assert_rejected(
        run_verifier(tmp_path, trail.bundle()),
        "(lane 0, seq 3): prev_hash is not the hash of the entry before it",
    )


def test_a_first_entry_that_does_not_start_from_the_genesis_hash_is_rejected(tmp_path):
    trail = Trail()
    trail.append(0, prev_hash="11" * 32)
    trail.checkpoint()
    assert_rejected(run_verifier(tmp_path, trail.bundle()), "must have 64 zeros as prev_hash")


def test_a_swapped_proof_node_is_rejected(tmp_path, bundle):
    path = entry_at(bundle, 0, 2)["proof"]["path"]
    assert len(path) >= 2
    path[0], path[1] = path[1], path[0]
    assert_rejected(
        run_verifier(tmp_path, bundle),
        "(lane 0, seq 2): its inclusion proof does not lead to the signed root of checkpoint 1",
    )


def test_a_proof_naming_another_checkpoint_or_leaf_is_rejected(tmp_path, bundle):
    proof = entry_at(bundle, 2, 2)["proof"]
    proof["leaf_index"] += 1
    assert_rejected(run_verifier(tmp_path, bundle), "but the entry is leaf 3 of checkpoint 2")


def test_the_wrong_public_key_is_rejected(tmp_path, bundle):
    other_key = public_key_from_seed(OTHER_SEED).hex()
    assert_rejected(
        run_verifier(tmp_path, bundle, other_key),
        "checkpoints[0] (checkpoint 1, key id audit-test-1): the signature does not verify",
    )


def test_a_checkpoint_altered_after_signing_is_rejected(tmp_path, bundle):
    head = bundle["checkpoints"][1]["body"]["lanes"][0]
    head["seq"], head["hash"] = 4, entry_at(bundle, 0, 4)["hash"]
    bundle["checkpoints"][1]["body"]["tree"]["ranges"][0]["last_seq"] = 4
    bundle["checkpoints"][1]["body"]["tree"]["size"] -= 1
    assert_rejected(run_verifier(tmp_path, bundle), "checkpoints[1] (checkpoint 2, key id")


def test_a_checkpoint_removed_from_the_middle_is_rejected(tmp_path, trail):
    bundle = trail.bundle()
    del bundle["checkpoints"][1]
    assert_rejected(
        run_verifier(tmp_path, bundle),
        "checkpoint 3 does not name checkpoint 1, the one before it in the bundle",
    )


def test_an_entry_removed_is_rejected(tmp_path, bundle):
    bundle["entries"].remove(entry_at(bundle, 1, 3))
    assert_rejected(
        run_verifier(tmp_path, bundle),
        "(lane 1, seq 4) stands where entry_ranges call for (lane 1, seq 3)",
    )


def test_the_last_entry_removed_is_rejected(tmp_path, bundle):
    bundle["entries"].pop()
    assert_rejected(run_verifier(tmp_path, bundle), "(lane 2, seq 4) promised by entry_ranges")


def test_reordered_entries_are_rejected(tmp_path, bundle):
    entries = bundle["entries"]
    entries[1], entries[2] = entries[2], entries[1]
    assert_rejected(
        run_verifier(tmp_path, bundle),
        "entries[1] (lane 0, seq 3) stands where entry_ranges call for (lane 0, seq 2)",
    )


def test_an_extra_entry_is_rejected(tmp_path, bundle):
    bundle["entries"].append(copy.deepcopy(bundle["entries"][-1]))
    assert_rejected(run_verifier(tmp_path, bundle), "is not in entry_ranges: an extra entry")


def test_a_checkpoint_whose_previous_does_not_match_is_rejected(tmp_path, bundle):
    # given a checkpoint re-signed with the real key but naming another previous one
    forged = copy.deepcopy(bundle["checkpoints"][2]["body"])
    forged["previous"] = bundle["checkpoints"][2]["body"]["previous"][::-1]
    bundle["checkpoints"][2] = sign_checkpoint(forged, SEED, KEY_ID)
    # then the signature holds but the chain does not
    assert_rejected(
        run_verifier(tmp_path, bundle),
        "checkpoint 3 does not name checkpoint 2, the one before it in the bundle",
    )


def test_a_resigned_checkpoint_whose_tree_reaches_into_the_previous_one_is_rejected(
    tmp_path, trail
):
    body = copy.deepcopy(trail.checkpoints[1]["body"])
    body["tree"]["ranges"][0]["first_seq"] = 3  # lane 0 again from seq 3, checkpoint 1's head
    body["tree"]["size"] += 1
    checkpoints = [trail.checkpoints[0], sign_checkpoint(body, SEED, KEY_ID)]
    bundle = trail.bundle(checkpoints, entry_ranges=[(1, 1, 2)])
    assert_rejected(
        run_verifier(tmp_path, bundle),
        "checkpoint 2: its tree does not cover lane 0 right after seq 3",
    )


def test_an_entry_no_checkpoint_in_the_bundle_covers_is_rejected(tmp_path, trail, bundle):
    trail.append(0)
    late = trail.entry(0, 6)
    bundle["entry_ranges"][0]["last_seq"] = 6
    bundle["entries"].insert(
        5,
        {
            "lane": 0,
            "seq": 6,
            "prev_hash": late.prev_hash,
            "hash": late.hash,
            "canonical": base64.b64encode(late.canonical).decode(),
            "proof": {"checkpoint": 3, "leaf_index": 0, "path": []},
        },
    )
    assert_rejected(
        run_verifier(tmp_path, bundle),
        "(lane 0, seq 6) is not covered by any checkpoint in the bundle",
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not valid UTF-8 JSON"),
        ('{"format": "payflow-evidence/1", "format": "x"}', "appears twice"),
        ('{"format": "payflow-evidence/1", "n": NaN}', "not valid UTF-8 JSON"),
        ('{"format": "payflow-evidence/2", "checkpoints": [], "entry_ranges": [], '
         '"entries": []}', "not 'payflow-evidence/1'"),
        ("[]", "the bundle must be a JSON object"),
    ],
)  # fmt: skip
def test_a_malformed_bundle_is_rejected(tmp_path, text, problem):
    assert_rejected(run_verifier(tmp_path, text), problem)


def test_an_unusable_public_key_stops_the_verifier_with_status_2(tmp_path, bundle):
    result = run_verifier(tmp_path, bundle, str(tmp_path / "missing.pem"))
    assert result.returncode == 2
    assert "not 64 hex digits nor a readable file" in result.stderr
    assert result.stdout == ""


# --- independence -----------------------------------------------------------------------


def test_the_verifier_imports_only_the_standard_library_and_cryptography():
    tree = ast.parse(VERIFIER.read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    outside_stdlib = {name for name in imported if name not in sys.stdlib_module_names}
    assert outside_stdlib == {"cryptography"}
