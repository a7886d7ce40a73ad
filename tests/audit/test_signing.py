"""Signed checkpoints: canonical bodies, what they cover, Ed25519 signatures, the chain.

No database: ``Trail`` below simulates lanes of hash-chained entries in memory, following
the rule the database side uses, and makes checkpoints of them with ``audit.signing``.
``tests/audit/test_offline_verifier.py`` builds its evidence bundles with it too.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from django.conf import settings

from audit.merkle import EMPTY_ROOT, MerkleTree, merkle_root, verify_inclusion
from audit.signing import (
    CheckpointError,
    build_checkpoint_body,
    canonical_json,
    check_extends,
    checkpoint_digest,
    entry_proof,
    evidence_bundle,
    leaf_index,
    public_key_from_seed,
    public_key_pem,
    sign_checkpoint,
    validate_checkpoint_body,
    verify_checkpoint,
    verify_extends,
)

SEED = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")  # RFC 8032
PUBLIC_KEY = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
OTHER_SEED = hashlib.sha256(b"not the audit signing key").digest()
KEY_ID = "audit-test-1"
ZERO_HASH = "0" * 64
ENTRY_TAG = b"payflow-audit-entry/1\x00"


# --- an in-memory audit trail -----------------------------------------------------------


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """The entry hash rule the database side follows."""
    return hashlib.sha256(ENTRY_TAG + bytes.fromhex(prev_hash) + canonical).hexdigest()


@dataclass
class Entry:
    lane: int
    seq: int
    prev_hash: str
    hash: str
    canonical: bytes

    def as_input(self) -> dict[str, Any]:
        return {
            "lane": self.lane,
            "seq": self.seq,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "canonical": self.canonical,
        }


class Trail:
    """Lanes of hash-chained entries and the signed checkpoints made over them."""

    def __init__(self, lanes: int = 3, *, seed: bytes = SEED, key_id: str = KEY_ID) -> None:
        self.lanes: dict[int, list[Entry]] = {lane: [] for lane in range(lanes)}
        self.checkpoints: list[dict[str, Any]] = []
        self.seed, self.key_id = seed, key_id
        self.clock = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)

    def append(self, lane: int, note: str = "", *, prev_hash: str | None = None) -> Entry:
        chain = self.lanes[lane]
        seq = len(chain) + 1
        if prev_hash is None:
            prev_hash = chain[-1].hash if chain else ZERO_HASH
        row = {"lane": str(lane), "seq": str(seq), "note": note or f"change {lane}/{seq}"}
        canonical = json.dumps(row, sort_keys=True, separators=(",", ":")).encode()
        entry = Entry(lane, seq, prev_hash, chain_hash(prev_hash, canonical), canonical)
        chain.append(entry)
        return entry

    def write(self, counts: dict[int, int]) -> None:
        for lane, count in counts.items():
            for _ in range(count):
                self.append(lane)

    def entry(self, lane: int, seq: int) -> Entry:
        return self.lanes[lane][seq - 1]

    def heads(self) -> dict[int, tuple[int, str]]:
        return {
            lane: (len(chain), chain[-1].hash if chain else ZERO_HASH)
            for lane, chain in self.lanes.items()
        }

    def covered(self, body: dict[str, Any]) -> list[Entry]:
        return [
            self.entry(item["lane"], seq)
            for item in body["tree"]["ranges"]
            for seq in range(item["first_seq"], item["last_seq"] + 1)
        ]

    def next_body(self) -> dict[str, Any]:
        previous = self.checkpoints[-1]["body"] if self.checkpoints else None
        old = (
            {head["lane"]: head["seq"] for head in previous["lanes"]}
            if previous
            else dict.fromkeys(self.lanes, 0)
        )
        new_entries = [
            (entry.lane, entry.seq, entry.hash)
            for lane, chain in sorted(self.lanes.items())
            for entry in chain[old[lane] :]
        ]
        self.clock += timedelta(minutes=5)
        return build_checkpoint_body(
            key_id=self.key_id,
            created_at=self.clock,
            heads=self.heads(),
            entries=new_entries,
            previous=previous,
        )

    def checkpoint(self) -> dict[str, Any]:
        signed = sign_checkpoint(self.next_body(), self.seed, self.key_id)
        self.checkpoints.append(signed)
        return signed

    def tree(self, body: dict[str, Any]) -> MerkleTree:
        return MerkleTree(bytes.fromhex(entry.hash) for entry in self.covered(body))

    def bundle(
        self,
        checkpoints: list[dict[str, Any]] | None = None,
        entry_ranges: list[tuple[int, int, int]] | None = None,
    ) -> dict[str, Any]:
        """An evidence bundle; by default every checkpoint and every entry they cover."""
        checkpoints = self.checkpoints if checkpoints is None else checkpoints
        if entry_ranges is None:
            spans: dict[int, list[int]] = {}
            for signed in checkpoints:
                for item in signed["body"]["tree"]["ranges"]:
                    spans.setdefault(item["lane"], []).extend([item["first_seq"], item["last_seq"]])
            entry_ranges = [(lane, min(s), max(s)) for lane, s in sorted(spans.items())]
        entries = [
            self.entry(lane, seq).as_input()
            for lane, first, last in entry_ranges
            for seq in range(first, last + 1)
        ]
        trees = {signed["body"]["number"]: self.tree(signed["body"]) for signed in checkpoints}
        return evidence_bundle(
            checkpoints=checkpoints,
            entry_ranges=entry_ranges,
            entries=entries,
            trees=trees,
            description="test evidence",
            exported_at=self.clock,
        )


def flip_hex(text: str, position: int = 0) -> str:
    """The same hex string with the lowest bit of one digit flipped."""
    digit = format(int(text[position], 16) ^ 1, "x")
    return text[:position] + digit + text[position + 1 :]


# --- canonical encoding and digest ------------------------------------------------------


def test_the_canonical_encoding_is_sorted_compact_json():
    value = {"tree": {"size": 2, "root": "ab"}, "previous": None, "lanes": [{"seq": 1}]}
    assert (
        canonical_json(value)
        == b'{"lanes":[{"seq":1}],"previous":null,"tree":{"root":"ab","size":2}}'
    )


@pytest.mark.parametrize(
    "value",
    [1.0, True, b"raw", "caf\u00e9", 'say "hi"', "back\\slash", "new\nline", {1: "x"}],
)
def test_the_canonical_encoding_refuses_anything_that_could_be_written_two_ways(value):
    with pytest.raises(CheckpointError):
        canonical_json({"member": value})


def test_the_digest_is_sha256_of_the_domain_tag_and_the_canonical_bytes():
    trail = Trail()
    trail.write({0: 2})
    body = trail.checkpoint()["body"]
    encoded = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert (
        checkpoint_digest(body) == hashlib.sha256(b"payflow-checkpoint\x00" + encoded).hexdigest()
    )


# --- what a checkpoint covers -----------------------------------------------------------


def test_the_first_checkpoint_covers_every_entry_from_seq_1_in_lane_order():
    # given lanes 0 and 1 with entries, lane 2 still empty
    trail = Trail()
    trail.write({1: 2, 0: 3})
    # when
    body = trail.checkpoint()["body"]
    # then
    leaves = [bytes.fromhex(trail.entry(lane, seq).hash) for lane, seq in ((0, 1), (0, 2), (0, 3))]
    leaves += [bytes.fromhex(trail.entry(1, seq).hash) for seq in (1, 2)]
    assert body == {
        "format": "payflow-audit-checkpoint/1",
        "number": 1,
        "previous": None,
        "key_id": KEY_ID,
        "created_at": "2026-03-01T09:05:00.123456Z",
        "lanes": [
            {"lane": 0, "seq": 3, "hash": trail.entry(0, 3).hash},
            {"lane": 1, "seq": 2, "hash": trail.entry(1, 2).hash},
            {"lane": 2, "seq": 0, "hash": ZERO_HASH},
        ],
        "tree": {
            "size": 5,
            "root": merkle_root(leaves).hex(),
            "ranges": [
                {"lane": 0, "first_seq": 1, "last_seq": 3},
                {"lane": 1, "first_seq": 1, "last_seq": 2},
            ],
        },
    }


def test_a_later_checkpoint_covers_only_the_entries_after_the_previous_heads():
    trail = Trail()
    trail.write({0: 3, 1: 2})
    first = trail.checkpoint()["body"]
    trail.write({0: 1, 2: 2})
    second = trail.checkpoint()["body"]
    assert (second["number"], second["previous"]) == (2, checkpoint_digest(first))
    assert second["tree"]["ranges"] == [
        {"lane": 0, "first_seq": 4, "last_seq": 4},
        {"lane": 2, "first_seq": 1, "last_seq": 2},
    ]
    leaves = [bytes.fromhex(trail.entry(lane, seq).hash) for lane, seq in ((0, 4), (2, 1), (2, 2))]
    assert (second["tree"]["size"], second["tree"]["root"]) == (3, merkle_root(leaves).hex())
    assert [head["seq"] for head in second["lanes"]] == [4, 2, 2]
    check_extends(first, second)


def test_a_checkpoint_with_nothing_new_has_the_empty_tree_and_the_same_heads():
    trail = Trail()
    trail.write({0: 1})
    first = trail.checkpoint()["body"]
    second = trail.checkpoint()["body"]
    assert second["tree"] == {"size": 0, "root": EMPTY_ROOT.hex(), "ranges": []}
    assert second["lanes"] == first["lanes"]
    assert verify_extends(first, second)


def test_each_entry_has_one_leaf_index_and_its_proof_verifies_against_the_signed_root():
    trail = Trail()
    trail.write({0: 2, 1: 1})
    trail.checkpoint()
    trail.write({0: 3, 2: 4, 1: 2})
    body = trail.checkpoint()["body"]
    tree = trail.tree(body)
    for index, entry in enumerate(trail.covered(body)):
        assert leaf_index(body, entry.lane, entry.seq) == index
        proof = entry_proof(body, tree, entry.lane, entry.seq)
        assert (proof["checkpoint"], proof["leaf_index"]) == (2, index)
        path = [bytes.fromhex(node) for node in proof["path"]]
        root = bytes.fromhex(body["tree"]["root"])
        assert verify_inclusion(bytes.fromhex(entry.hash), index, tree.size, path, root)
    assert leaf_index(body, 0, 2) is None  # covered by checkpoint 1
    with pytest.raises(CheckpointError, match="does not cover"):
        entry_proof(body, tree, 0, 2)
    with pytest.raises(CheckpointError, match="not checkpoint 2's tree"):
        entry_proof(body, MerkleTree([b"x"]), 0, 3)


def test_building_refuses_entries_with_a_gap_a_wrong_order_an_extra_one_or_a_wrong_head():
    trail = Trail()
    trail.write({0: 3, 1: 1})
    heads = trail.heads()
    good = [(e.lane, e.seq, e.hash) for lane in (0, 1) for e in trail.lanes[lane]]
    wrong_head = (0, 3, trail.entry(0, 2).hash)
    for entries, problem in [
        ([good[0], good[2], good[3]], "where"),
        ([good[1], good[0], good[2], good[3]], "where"),
        ([good[3], *good[:3]], "where"),
        ([*good, (1, 2, good[3][2])], "where"),
        (good[:3], "missing"),
        ([good[0], good[1], wrong_head, good[3]], "head"),
    ]:
        with pytest.raises(CheckpointError, match=problem):
            build_checkpoint_body(
                key_id=KEY_ID,
                created_at=trail.clock,
                heads=heads,
                entries=entries,
                previous=None,
            )


def test_building_refuses_a_lane_that_went_back_or_a_changed_set_of_lanes():
    trail = Trail()
    trail.write({0: 3})
    previous = trail.checkpoint()["body"]
    fewer = {0: (2, trail.entry(0, 2).hash), 1: (0, ZERO_HASH), 2: (0, ZERO_HASH)}
    other_lanes = {**trail.heads(), 3: (0, ZERO_HASH)}
    for heads, problem in [(fewer, "went back"), (other_lanes, "set of lanes")]:
        with pytest.raises(CheckpointError, match=problem):
            build_checkpoint_body(
                key_id=KEY_ID, created_at=trail.clock, heads=heads, entries=[], previous=previous
            )


def test_checkpoint_time_is_utc_with_microseconds_and_never_goes_back():
    trail = Trail()
    trail.write({0: 1})
    first = trail.checkpoint()["body"]
    paris = timezone(timedelta(hours=1))
    later = build_checkpoint_body(
        key_id=KEY_ID,
        created_at=datetime(2026, 3, 1, 11, 0, tzinfo=paris),
        heads=trail.heads(),
        entries=[],
        previous=first,
    )
    assert later["created_at"] == "2026-03-01T10:00:00.000000Z"
    behind = build_checkpoint_body(
        key_id=KEY_ID,
        created_at=datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
        heads=trail.heads(),
        entries=[],
        previous=first,
    )
    assert behind["created_at"] == first["created_at"] == "2026-03-01T09:05:00.123456Z"
    with pytest.raises(CheckpointError, match="timezone-aware"):
        build_checkpoint_body(
            key_id=KEY_ID,
            created_at=datetime(2026, 3, 1, 9, 0),
            heads=trail.heads(),
            entries=[],
            previous=first,
        )


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("number", True),
        ("number", 0),
        ("previous", "AB" * 32),
        ("key_id", "audit key"),
        ("created_at", "2026-03-01T09:05:00Z"),
        ("format", "payflow-audit-checkpoint/2"),
        ("extra", 1),
    ],
)
def test_a_malformed_body_is_refused(member, value):
    trail = Trail()
    trail.write({0: 1})
    body = copy.deepcopy(trail.checkpoint()["body"])
    body[member] = value
    with pytest.raises(CheckpointError):
        validate_checkpoint_body(body)


# --- signatures -------------------------------------------------------------------------


def test_the_public_key_of_the_rfc8032_test_seed_is_the_published_one():
    assert public_key_from_seed(SEED) == PUBLIC_KEY


def test_a_signed_checkpoint_verifies_with_the_signing_keys_public_key_only():
    trail = Trail()
    trail.write({0: 2, 2: 1})
    signed = trail.checkpoint()
    assert set(signed) == {"algorithm", "key_id", "body", "signature"}
    assert (signed["algorithm"], signed["key_id"], len(signed["signature"])) == (
        "ed25519",
        KEY_ID,
        128,
    )
    assert verify_checkpoint(signed, PUBLIC_KEY)
    assert not verify_checkpoint(signed, public_key_from_seed(OTHER_SEED))
    assert not verify_checkpoint(signed, b"\x00" * 31)


def test_the_signature_is_ed25519_over_the_tagged_canonical_bytes():
    trail = Trail()
    trail.write({1: 1})
    signed = trail.checkpoint()
    encoded = json.dumps(signed["body"], sort_keys=True, separators=(",", ":")).encode()
    Ed25519PublicKey.from_public_bytes(PUBLIC_KEY).verify(
        bytes.fromhex(signed["signature"]), b"payflow-checkpoint\x00" + encoded
    )


def test_flipping_one_bit_anywhere_in_the_body_breaks_the_signature():
    trail = Trail()
    trail.write({0: 2, 1: 3})
    trail.checkpoint()
    trail.write({0: 1, 1: 1})
    signed = trail.checkpoint()
    body = signed["body"]
    forgeries = [
        ("previous", lambda b: b.update(previous=flip_hex(b["previous"]))),
        ("number", lambda b: b.update(number=b["number"] ^ 1)),
        ("created_at", lambda b: b.update(created_at=b["created_at"].replace("456Z", "457Z"))),
        ("head hash", lambda b: b["lanes"][1].update(hash=flip_hex(b["lanes"][1]["hash"], 63))),
        ("head seq", lambda b: b["lanes"][1].update(seq=b["lanes"][1]["seq"] ^ 1)),
        ("root", lambda b: b["tree"].update(root=flip_hex(b["tree"]["root"], 10))),
        ("range", lambda b: b["tree"]["ranges"][0].update(first_seq=2)),
    ]
    for name, forge in forgeries:
        forged_body = copy.deepcopy(body)
        forge(forged_body)
        assert forged_body != body, name
        assert not verify_checkpoint({**signed, "body": forged_body}, PUBLIC_KEY), name


def test_swapping_two_lane_heads_breaks_the_signature():
    trail = Trail()
    trail.write({0: 2, 1: 2})
    signed = trail.checkpoint()
    forged = copy.deepcopy(signed)
    heads = forged["body"]["lanes"]
    heads[0]["hash"], heads[1]["hash"] = heads[1]["hash"], heads[0]["hash"]
    assert not verify_checkpoint(forged, PUBLIC_KEY)
    reordered = copy.deepcopy(signed)
    lanes = reordered["body"]["lanes"]
    lanes[0]["lane"], lanes[1]["lane"] = lanes[1]["lane"], lanes[0]["lane"]
    assert not verify_checkpoint(reordered, PUBLIC_KEY)


def test_a_changed_signature_key_id_or_algorithm_fails():
    trail = Trail()
    trail.write({0: 1})
    signed = trail.checkpoint()
    assert not verify_checkpoint(
        {**signed, "signature": flip_hex(signed["signature"], 5)}, PUBLIC_KEY
    )
    assert not verify_checkpoint({**signed, "key_id": "audit-test-2"}, PUBLIC_KEY)
    assert not verify_checkpoint({**signed, "algorithm": "ed448"}, PUBLIC_KEY)
    assert not verify_checkpoint({**signed, "extra": 1}, PUBLIC_KEY)


def test_signing_refuses_a_body_naming_another_key_or_a_seed_of_the_wrong_size():
    trail = Trail()
    trail.write({0: 1})
    body = trail.next_body()
    with pytest.raises(CheckpointError, match="another key id"):
        sign_checkpoint(body, SEED, "audit-test-2")
    short_seed = b"secret-seed-material-31-bytes!!"
    with pytest.raises(CheckpointError) as refused:
        sign_checkpoint(body, short_seed, KEY_ID)
    assert "secret" not in str(refused.value)
    assert short_seed.hex() not in str(refused.value)


def test_the_public_key_downloads_as_pem_that_loads_back_as_the_same_key():
    pem = public_key_pem(PUBLIC_KEY)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    key = load_pem_public_key(pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    assert key.public_bytes(Encoding.Raw, PublicFormat.Raw) == PUBLIC_KEY


def test_the_configured_signing_key_signs_checkpoints_its_public_key_verifies():
    trail = Trail(seed=settings.AUDIT_SIGNING_KEY, key_id=settings.AUDIT_SIGNING_KEY_ID)
    trail.write({0: 1})
    signed = trail.checkpoint()
    assert verify_checkpoint(signed, public_key_from_seed(settings.AUDIT_SIGNING_KEY))
    assert not verify_checkpoint(signed, PUBLIC_KEY)


# --- the chain of checkpoints -----------------------------------------------------------


def chain_of_three() -> tuple[Trail, list[dict[str, Any]]]:
    trail = Trail()
    trail.write({0: 2, 1: 1})
    trail.checkpoint()
    trail.write({0: 1, 2: 2})
    trail.checkpoint()
    trail.write({1: 2})
    trail.checkpoint()
    return trail, [signed["body"] for signed in trail.checkpoints]


def test_consecutive_checkpoints_extend_each_other_and_only_in_order():
    _, (first, second, third) = chain_of_three()
    assert verify_extends(first, second)
    assert verify_extends(second, third)
    assert not verify_extends(first, third)  # the one in the middle is missing
    assert not verify_extends(second, first)
    assert not verify_extends(second, second)


def test_a_later_checkpoint_must_name_the_earlier_ones_digest():
    _, (first, second, _) = chain_of_three()
    forged = {**copy.deepcopy(second), "previous": flip_hex(second["previous"])}
    with pytest.raises(CheckpointError, match="as its previous"):
        check_extends(first, forged)


def test_a_later_checkpoint_whose_tree_reaches_back_before_the_earlier_heads_is_refused():
    _, (_, second, third) = chain_of_three()
    forged = copy.deepcopy(third)
    forged["tree"]["ranges"][0]["first_seq"] = 1  # lane 1 again from seq 1, not from 2
    forged["tree"]["size"] += 1
    validate_checkpoint_body(forged)
    with pytest.raises(CheckpointError, match="does not cover lane 1 from seq 2"):
        check_extends(second, forged)


def test_a_lane_going_back_or_changing_in_place_or_time_going_back_is_refused():
    trail, (first, second, _) = chain_of_three()
    went_back = copy.deepcopy(second)
    went_back["lanes"][0].update(seq=1, hash=trail.entry(0, 1).hash)
    went_back["tree"]["ranges"] = went_back["tree"]["ranges"][1:]
    went_back["tree"]["size"] -= 1
    with pytest.raises(CheckpointError, match="went back"):
        check_extends(first, went_back)
    rewritten = copy.deepcopy(second)
    rewritten["lanes"][1]["hash"] = flip_hex(rewritten["lanes"][1]["hash"])
    with pytest.raises(CheckpointError, match="changed without growing"):
        check_extends(first, rewritten)
    older = {**copy.deepcopy(second), "created_at": "2026-03-01T09:00:00.000000Z"}
    with pytest.raises(CheckpointError, match="older"):
        check_extends(first, older)
