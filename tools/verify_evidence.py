#!/usr/bin/env python3
"""Verify a PayFlow audit evidence bundle offline, with nothing but the public key.

    python tools/verify_evidence.py bundle.json --public-key audit-public-key.pem
    python tools/verify_evidence.py bundle.json --public-key <64 hex digits>
    python tools/verify_evidence.py --segments lane-003/*.jsonl.gz --public-key KEY \
        [--checkpoint checkpoint-7.json ...] [--retention retention-1.json ...]

This is the auditor's independent tool. It imports nothing from PayFlow or Django: only the
Python standard library (3.11+) and ``cryptography`` (for Ed25519). Everything it checks is
specified below, so it can be reimplemented from this text alone; it deliberately does not
share code with the service whose records it checks.

``--public-key`` takes a PEM file (SubjectPublicKeyInfo), a file holding 64 hex digits, or the
64 hex digits of the raw 32-byte Ed25519 public key. Give it more than once to accept
checkpoints signed by any of several keys (key rotation).

Exit status: 0 everything verified; 1 the bundle is rejected (the first problem is printed
on standard error); 2 the tool could not run (unreadable file, unusable public key).

Evidence bundle, format ``payflow-evidence/1`` (one JSON object, UTF-8)
-----------------------------------------------------------------------
::

    {"format": "payflow-evidence/1",
     "description": "...",            # optional, informational, not verified
     "exported_at": "...",            # optional, informational, not verified
     "checkpoints": [<signed checkpoint>, ...],
     "entry_ranges": [{"lane": 3, "first_seq": 10, "last_seq": 12}, ...],
     "entries": [{"lane": 3, "seq": 10, "prev_hash": "<64 hex>", "hash": "<64 hex>",
                  "canonical": "<base64>",
                  "proof": {"checkpoint": 7, "leaf_index": 4, "path": ["<64 hex>", ...]}},
                 ...]}

No other members are allowed, and no object may repeat a member. Hex is lowercase.

- ``checkpoints``: at least one, consecutive, oldest first (each names the one before it).
- ``entry_ranges``: what the bundle promises to contain in full, ascending by (lane,
  first_seq), ranges of one lane not overlapping. ``entries`` are exactly the entries of
  these ranges, in that order, each once: a missing, extra or reordered entry is rejected.
  (The bundle cannot prove that no other entries exist outside its ranges.)
- ``canonical``: the entry's canonical encoding (standard base64 with padding). The verifier
  does not interpret it; it checks that
  ``hash = SHA-256(b"payflow-audit-entry/1\\x00" ‖ bytes.fromhex(prev_hash) ‖ canonical)``.
- ``prev_hash`` links: 64 zeros when ``seq`` is 1; the previous entry's ``hash`` when the
  entry just before it in the bundle is (same lane, seq - 1); a checkpoint's head hash when
  a checkpoint in the bundle has (lane, seq - 1) as that lane's head. An entry whose seq is
  a checkpoint's head for its lane must have that head's hash.
- ``proof``: the RFC 6962 inclusion proof of the entry in the tree of the checkpoint whose
  range for the entry's lane contains its seq (that checkpoint must be in the bundle).
  ``checkpoint`` is its number, ``leaf_index`` the entry's index in its tree, ``path`` the
  audit path from the leaf's sibling upwards (RFC 9162 section 2.1.3.1).

Signed checkpoint, format ``payflow-audit-checkpoint/1``
--------------------------------------------------------
::

    {"algorithm": "ed25519", "key_id": "<= body.key_id>", "signature": "<128 hex>",
     "body": {"format": "payflow-audit-checkpoint/1",
              "number": 7,                  # 1, 2, 3, ...
              "previous": "<64 hex>",       # digest of checkpoint number - 1; null for number 1
              "key_id": "audit-1",          # [A-Za-z0-9._:-]{1,64}
              "created_at": "2025-06-01T12:00:00.000000Z",
              "lanes": [{"lane": 0, "seq": 12, "hash": "<64 hex>"}, ...],
              "tree": {"size": 5, "root": "<64 hex>",
                       "ranges": [{"lane": 0, "first_seq": 10, "last_seq": 12}, ...]}}}

- ``lanes``: every lane's head, ascending by lane; seq 0 (no entry yet) has 64 zeros as hash.
- ``tree``: the Merkle tree over the entries added since the previous checkpoint. One range
  per lane that grew, ascending by lane, ending at the lane's head; for checkpoint 1 every
  range starts at seq 1, otherwise at the previous checkpoint's head seq + 1. Leaves are
  those entries in (lane, seq) order; a leaf's data is the entry's 32-byte hash (raw).
  ``size`` is the number of leaves; an empty tree's root is SHA-256 of nothing.
- Canonical bytes of a body: JSON, keys sorted, separators "," and ":" without spaces,
  UTF-8. Strings in a body are printable ASCII without '"' or '\\', so nothing is escaped.
- ``M = b"payflow-checkpoint\\x00" ‖ canonical bytes``; the digest is lowercase hex
  SHA-256(M); the signature is Ed25519 (RFC 8032) over M.
- Consecutive checkpoints A, B: ``B.previous = digest(A)``, ``B.number = A.number + 1``, the
  same lanes, ``B.created_at >= A.created_at``, no lane's seq decreases (an unchanged seq
  keeps its hash and has no range), a grown lane's range starts at A's seq + 1.

Archive segment files, format ``payflow-audit-segment/1`` (``--segments``)
-------------------------------------------------------------------------
gzip of UTF-8 JSON lines. Line 1, the header: ``{"format", "lane", "first_seq", "last_seq",
"first_prev_hash", "last_hash", "row_count"}``. Then one line per entry, in seq order:
``{"seq": <int>, "prev_hash": "<64 hex>", "hash": "<64 hex>", "canonical": "<text>"}`` where
``canonical`` is the entry's canonical encoding as a JSON string (its UTF-8 bytes are hashed
as for bundles). Checks: every hash recomputed; seqs contiguous from ``first_seq``; each
``prev_hash`` is the previous entry's hash; the canonical text's ``lane`` and ``seq`` (JSON
strings of digits) equal the header's lane and the line's seq; the header's last seq, last
hash and row count match the entries. Files of one lane, ordered by ``first_seq``, must be
contiguous (the next file's first prev_hash is the previous file's last hash). A lane's
first file starts at seq 1 (prev_hash 64 zeros), or after the boundary of a signed
retention record given with ``--retention`` (format ``payflow-audit-retention/1``, signed
like a checkpoint with the tag ``b"payflow-retention\x00"``: ``body.lanes`` lists
``{"lane", "seq", "hash"}``, the last purged entry of each lane). Every signed checkpoint
given with ``--checkpoint`` whose lane head falls inside a file must name that entry's hash.

Merkle trees (RFC 6962 / RFC 9162): leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖
left ‖ right), a tree of n > 1 leaves splits at the largest power of two below n; inclusion
proofs are verified with RFC 9162 section 2.1.3.2.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import hashlib
import hmac
import itertools
import json
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
except ImportError:  # pragma: no cover - depends on the auditor's machine
    sys.stderr.write(
        "verify_evidence needs the 'cryptography' package (pip install cryptography)\n"
    )
    sys.exit(2)

BUNDLE_FORMAT = "payflow-evidence/1"
CHECKPOINT_FORMAT = "payflow-audit-checkpoint/1"
ENTRY_TAG = b"payflow-audit-entry/1\x00"
CHECKPOINT_TAG = b"payflow-checkpoint\x00"
SEGMENT_FORMAT = "payflow-audit-segment/1"
RETENTION_FORMAT = "payflow-audit-retention/1"
RETENTION_TAG = b"payflow-retention\x00"
ZERO_HASH = "0" * 64
EMPTY_TREE_ROOT = hashlib.sha256(b"").hexdigest()

HEX64 = re.compile(r"[0-9a-f]{64}")
HEX128 = re.compile(r"[0-9a-f]{128}")
KEY_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
PLAIN_TEXT = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")

Json = dict[str, Any]


class Rejected(Exception):
    """The bundle fails verification; the message says where and why."""


class CannotRun(Exception):
    """The verification could not be attempted (input unreadable, key unusable)."""


def reject(message: str) -> NoReturn:
    raise Rejected(message)


# --- small checks -----------------------------------------------------------------------


def members(
    value: Any, where: str, required: set[str], optional: frozenset[str] = frozenset()
) -> Json:
    if not isinstance(value, dict):
        reject(f"{where} must be a JSON object")
    missing, unknown = required - set(value), set(value) - required - optional
    if missing or unknown:
        reject(f"{where}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return value


def integer(value: Any, where: str, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        reject(f"{where} must be an integer >= {minimum}")
    return value


def hex64(value: Any, where: str) -> str:
    if not isinstance(value, str) or not HEX64.fullmatch(value):
        reject(f"{where} must be 64 lowercase hex digits")
    return value


def plain_json(value: Any, where: str) -> None:
    """Only what a checkpoint body may hold: objects, lists, plain ASCII text, integers, null."""
    if isinstance(value, dict):
        for key, item in value.items():
            plain_json(key, f"{where} (a key)")
            plain_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            plain_json(item, f"{where}[{position}]")
    elif isinstance(value, str):
        if not PLAIN_TEXT.fullmatch(value):
            reject(f"{where} holds characters a checkpoint never contains")
    elif value is not None and type(value) is not int:
        reject(f"{where} is a {type(value).__name__}; a checkpoint holds integers and strings")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# --- RFC 6962 inclusion proof -----------------------------------------------------------


def inclusion_proof_holds(
    leaf_data: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = sha256(b"\x00" + leaf_data)
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            while fn != 0 and fn % 2 == 0:
                fn, sn = fn // 2, sn // 2
        else:
            r = sha256(b"\x01" + r + p)
        fn, sn = fn // 2, sn // 2
    return sn == 0 and hmac.compare_digest(r, root)


# --- checkpoints ------------------------------------------------------------------------


def canonical(body: Json) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def digest(body: Json) -> str:
    return hashlib.sha256(CHECKPOINT_TAG + canonical(body)).hexdigest()


def check_body(body: Any, where: str) -> None:
    members(body, where, {"format", "number", "previous", "key_id", "created_at", "lanes", "tree"})
    plain_json(body, where)
    if body["format"] != CHECKPOINT_FORMAT:
        reject(f"{where}.format is not {CHECKPOINT_FORMAT}")
    number = integer(body["number"], f"{where}.number", 1)
    if (number == 1) != (body["previous"] is None):
        reject(f"{where}.previous must be null for checkpoint 1 and only for it")
    if body["previous"] is not None:
        hex64(body["previous"], f"{where}.previous")
    if not isinstance(body["key_id"], str) or not KEY_ID.fullmatch(body["key_id"]):
        reject(f"{where}.key_id is not a valid key id")
    if not isinstance(body["created_at"], str) or not TIMESTAMP.fullmatch(body["created_at"]):
        reject(f"{where}.created_at is not a UTC time with microseconds")
    heads = lane_heads(body, where)
    tree = members(body["tree"], f"{where}.tree", {"size", "root", "ranges"})
    ranges = tree_ranges(body, where)
    for lane, _first, last in ranges:
        if lane not in heads or heads[lane][0] != last:
            reject(f"{where}.tree: the range of lane {lane} does not end at the lane's head")
    size = integer(tree["size"], f"{where}.tree.size", 0)
    if size != sum(last - first + 1 for _, first, last in ranges):
        reject(f"{where}.tree.size is not the number of entries its ranges cover")
    if hex64(tree["root"], f"{where}.tree.root") != EMPTY_TREE_ROOT and size == 0:
        reject(f"{where}.tree.root of an empty tree must be SHA-256 of nothing")
    if number == 1:
        grown = {lane for lane, (seq, _) in heads.items() if seq > 0}
        if {lane for lane, _, _ in ranges} != grown or any(first != 1 for _, first, _ in ranges):
            reject(f"{where}: checkpoint 1 must cover every entry from seq 1")


def lane_heads(body: Json, where: str) -> dict[int, tuple[int, str]]:
    lanes = body["lanes"]
    if not isinstance(lanes, list) or not lanes:
        reject(f"{where}.lanes must be a non-empty list")
    heads: dict[int, tuple[int, str]] = {}
    for position, head in enumerate(lanes):
        at = f"{where}.lanes[{position}]"
        members(head, at, {"lane", "seq", "hash"})
        lane = integer(head["lane"], f"{at}.lane", 0)
        if heads and lane <= list(heads)[-1]:
            reject(f"{at}: lanes are not in strictly ascending order")
        seq = integer(head["seq"], f"{at}.seq", 0)
        if seq == 0 and head["hash"] != ZERO_HASH:
            reject(f"{at}: an empty lane's head hash must be 64 zeros")
        heads[lane] = (seq, hex64(head["hash"], f"{at}.hash"))
    return heads


def tree_ranges(body: Json, where: str) -> list[tuple[int, int, int]]:
    ranges = body["tree"]["ranges"]
    if not isinstance(ranges, list):
        reject(f"{where}.tree.ranges must be a list")
    result: list[tuple[int, int, int]] = []
    for position, item in enumerate(ranges):
        at = f"{where}.tree.ranges[{position}]"
        members(item, at, {"lane", "first_seq", "last_seq"})
        lane = integer(item["lane"], f"{at}.lane", 0)
        first = integer(item["first_seq"], f"{at}.first_seq", 1)
        last = integer(item["last_seq"], f"{at}.last_seq", first)
        if result and lane <= result[-1][0]:
            reject(f"{at}: ranges are not in strictly ascending lane order")
        result.append((lane, first, last))
    return result


def check_signature(signed: Any, where: str, keys: Sequence[Ed25519PublicKey]) -> Json:
    members(signed, where, {"algorithm", "key_id", "body", "signature"})
    if signed["algorithm"] != "ed25519":
        reject(f"{where}.algorithm is not ed25519")
    body: Json = signed["body"]
    check_body(body, f"{where}.body")
    if signed["key_id"] != body["key_id"]:
        reject(f"{where}.key_id differs from the key id inside the signed body")
    signature = signed["signature"]
    if not isinstance(signature, str) or not HEX128.fullmatch(signature):
        reject(f"{where}.signature must be 128 lowercase hex digits")
    message = CHECKPOINT_TAG + canonical(body)
    for key in keys:
        try:
            key.verify(bytes.fromhex(signature), message)
        except InvalidSignature:
            continue
        return body
    reject(
        f"{where} (checkpoint {body['number']}, key id {body['key_id']}): the signature does "
        "not verify with the given public key: the checkpoint was altered or signed by another key"
    )


def check_follows(earlier: Json, later: Json) -> None:
    at = f"checkpoint {later['number']}"
    if not same(later["previous"] or "", digest(earlier)):
        reject(
            f"{at} does not name checkpoint {earlier['number']}, the one before it in the "
            "bundle, as its previous: a checkpoint is missing or does not belong to this chain"
        )
    if later["number"] != earlier["number"] + 1:
        reject(f"{at} comes after checkpoint {earlier['number']}: numbers must be consecutive")
    if later["created_at"] < earlier["created_at"]:  # one fixed-width format: text order
        reject(f"{at} is older than checkpoint {earlier['number']}")
    before, after = lane_heads(earlier, "earlier"), lane_heads(later, at)
    if set(before) != set(after):
        reject(f"{at} has a different set of lanes than checkpoint {earlier['number']}")
    starts = {lane: first for lane, first, _ in tree_ranges(later, at)}
    for lane, (old_seq, old_hash) in before.items():
        new_seq, new_hash = after[lane]
        if new_seq < old_seq:
            reject(f"{at}: lane {lane} went back from seq {old_seq} to {new_seq}")
        if new_seq == old_seq and (not same(new_hash, old_hash) or lane in starts):
            reject(f"{at}: lane {lane} changed although its seq stayed {old_seq}")
        if new_seq > old_seq and starts.get(lane) != old_seq + 1:
            reject(f"{at}: its tree does not cover lane {lane} right after seq {old_seq}")


def check_checkpoints(value: Any, keys: Sequence[Ed25519PublicKey]) -> list[Json]:
    if not isinstance(value, list) or not value:
        reject("checkpoints must be a non-empty list")
    bodies: list[Json] = []
    for position, signed in enumerate(value):
        body = check_signature(signed, f"checkpoints[{position}]", keys)
        if bodies:
            check_follows(bodies[-1], body)
        bodies.append(body)
    return bodies


# --- entries ----------------------------------------------------------------------------


def check_entry_ranges(value: Any) -> list[tuple[int, int, int]]:
    if not isinstance(value, list):
        reject("entry_ranges must be a list")
    result: list[tuple[int, int, int]] = []
    for position, item in enumerate(value):
        at = f"entry_ranges[{position}]"
        members(item, at, {"lane", "first_seq", "last_seq"})
        lane = integer(item["lane"], f"{at}.lane", 0)
        first = integer(item["first_seq"], f"{at}.first_seq", 1)
        last = integer(item["last_seq"], f"{at}.last_seq", first)
        if result and (lane, first) <= result[-1][:2]:
            reject(f"{at} is not in ascending (lane, first_seq) order")
        if result and lane == result[-1][0] and first <= result[-1][2]:
            reject(f"{at} overlaps the range before it")
        result.append((lane, first, last))
    return result


class Coverage:
    """Which checkpoint of the bundle covers (lane, seq), and the heads the chain signed."""

    def __init__(self, bodies: Sequence[Json]) -> None:
        self.spans: dict[int, list[tuple[int, int, int, Json]]] = {}
        self.heads: dict[tuple[int, int], str] = {}
        for body in bodies:
            offset = 0
            for lane, first, last in tree_ranges(body, "checkpoint"):
                self.spans.setdefault(lane, []).append((first, last, offset, body))
                offset += last - first + 1
            for lane, (seq, head_hash) in lane_heads(body, "checkpoint").items():
                self.heads[(lane, seq)] = head_hash
        self.firsts = {lane: [span[0] for span in spans] for lane, spans in self.spans.items()}

    def find(self, lane: int, seq: int) -> tuple[Json, int] | None:
        """(covering body, leaf index) or None."""
        spans = self.spans.get(lane, [])
        position = bisect.bisect_right(self.firsts.get(lane, []), seq) - 1
        if position < 0 or spans[position][1] < seq:
            return None
        first, _last, offset, body = spans[position]
        return body, offset + seq - first


def wanted_entries(ranges: Sequence[tuple[int, int, int]]) -> Iterator[tuple[int, int]]:
    for lane, first, last in ranges:
        for seq in range(first, last + 1):
            yield lane, seq


def check_entries(value: Any, ranges: Sequence[tuple[int, int, int]], cover: Coverage) -> int:
    if not isinstance(value, list):
        reject("entries must be a list")
    wanted = wanted_entries(ranges)
    before: tuple[int, int, str] | None = None  # (lane, seq, hash) of the previous entry
    for position, entry in enumerate(value):
        lane, seq, entry_hash = check_entry(entry, position, next(wanted, None), before, cover)
        before = (lane, seq, entry_hash)
    missing = next(wanted, None)
    if missing is not None:
        reject(
            f"the entry (lane {missing[0]}, seq {missing[1]}) promised by entry_ranges is "
            "missing from entries"
        )
    return len(value)


def check_entry(
    entry: Any,
    position: int,
    wanted: tuple[int, int] | None,
    before: tuple[int, int, str] | None,
    cover: Coverage,
) -> tuple[int, int, str]:
    at = f"entries[{position}]"
    fields = {"lane", "seq", "prev_hash", "hash", "canonical", "proof"}
    members(entry, at, fields)
    lane, seq = integer(entry["lane"], f"{at}.lane", 0), integer(entry["seq"], f"{at}.seq", 1)
    at = f"{at} (lane {lane}, seq {seq})"
    if wanted is None:
        reject(f"{at} is not in entry_ranges: an extra entry")
    if (lane, seq) != wanted:
        reject(
            f"{at} stands where entry_ranges call for (lane {wanted[0]}, seq {wanted[1]}): "
            "an entry is missing, extra or out of order"
        )
    prev_hash = hex64(entry["prev_hash"], f"{at}.prev_hash")
    entry_hash = hex64(entry["hash"], f"{at}.hash")
    check_entry_hash(entry["canonical"], prev_hash, entry_hash, at)
    check_links(lane, seq, prev_hash, entry_hash, before, cover, at)
    check_proof(entry["proof"], lane, seq, entry_hash, cover, at)
    return lane, seq, entry_hash


def check_entry_hash(encoded: Any, prev_hash: str, entry_hash: str, at: str) -> None:
    if not isinstance(encoded, str):
        reject(f"{at}.canonical must be a base64 string")
    try:
        canonical_bytes = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        reject(f"{at}.canonical is not valid base64")
    recomputed = hashlib.sha256(ENTRY_TAG + bytes.fromhex(prev_hash) + canonical_bytes)
    if not same(recomputed.hexdigest(), entry_hash):
        reject(
            f"{at}: its hash is not SHA-256 of its prev_hash and canonical bytes: "
            "the entry was altered"
        )


def check_links(
    lane: int,
    seq: int,
    prev_hash: str,
    entry_hash: str,
    before: tuple[int, int, str] | None,
    cover: Coverage,
    at: str,
) -> None:
    if seq == 1 and not same(prev_hash, ZERO_HASH):
        reject(f"{at}: the first entry of a lane must have 64 zeros as prev_hash")
    if before is not None and before[:2] == (lane, seq - 1) and not same(prev_hash, before[2]):
        reject(f"{at}: prev_hash is not the hash of the entry before it: the chain is broken")
    signed_before = cover.heads.get((lane, seq - 1))
    if signed_before is not None and not same(prev_hash, signed_before):
        reject(f"{at}: prev_hash is not the head hash a checkpoint signed for seq {seq - 1}")
    signed_here = cover.heads.get((lane, seq))
    if signed_here is not None and not same(entry_hash, signed_here):
        reject(f"{at}: its hash is not the head hash a checkpoint signed for this seq")


def check_proof(proof: Any, lane: int, seq: int, entry_hash: str, cover: Coverage, at: str) -> None:
    found = cover.find(lane, seq)
    if found is None:
        reject(f"{at} is not covered by any checkpoint in the bundle")
    body, index = found
    members(proof, f"{at}.proof", {"checkpoint", "leaf_index", "path"})
    if proof["checkpoint"] != body["number"] or proof["leaf_index"] != index:
        reject(
            f"{at}.proof names checkpoint {proof['checkpoint']} leaf {proof['leaf_index']}, "
            f"but the entry is leaf {index} of checkpoint {body['number']}"
        )
    path = proof["path"]
    if not isinstance(path, list):
        reject(f"{at}.proof.path must be a list")
    nodes = [bytes.fromhex(hex64(node, f"{at}.proof.path[{i}]")) for i, node in enumerate(path)]
    tree = body["tree"]
    root = bytes.fromhex(tree["root"])
    if not inclusion_proof_holds(bytes.fromhex(entry_hash), index, tree["size"], nodes, root):
        reject(
            f"{at}: its inclusion proof does not lead to the signed root of checkpoint "
            f"{body['number']}"
        )


# --- input and report -------------------------------------------------------------------


def no_duplicate_members(pairs: list[tuple[str, Any]]) -> Json:
    result: Json = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the member {key!r} appears twice in one object")
        result[key] = value
    return result


def not_json_number(text: str) -> NoReturn:
    raise ValueError(f"{text} is not a JSON number")


def read_bundle(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CannotRun(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=no_duplicate_members,
            parse_constant=not_json_number,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        reject(f"the bundle is not valid UTF-8 JSON: {exc}")
    except RecursionError:
        reject("the bundle nests JSON deeper than this Python can read")


def read_public_key(spec: str) -> Ed25519PublicKey:
    text = spec.strip()
    if not HEX64.fullmatch(text.lower()):
        try:
            data = Path(spec).read_bytes()
        except OSError as exc:
            raise CannotRun(f"public key {spec!r}: not 64 hex digits nor a readable file") from exc
        if b"-----BEGIN" in data:
            try:
                key = load_pem_public_key(data)
            except ValueError as exc:
                raise CannotRun(f"public key file {spec}: not a valid PEM public key") from exc
            if not isinstance(key, Ed25519PublicKey):
                raise CannotRun(f"public key file {spec}: not an Ed25519 key")
            return key
        text = data.decode("ascii", errors="replace").strip()
        if not HEX64.fullmatch(text.lower()):
            raise CannotRun(f"public key file {spec}: neither PEM nor 64 hex digits")
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except ValueError as exc:
        raise CannotRun(f"public key {spec!r}: not a valid Ed25519 public key") from exc


def verify(bundle: Any, keys: Sequence[Ed25519PublicKey]) -> list[str]:
    """Every check, in order; raises ``Rejected`` at the first failure; returns the report."""
    optional = frozenset({"description", "exported_at"})
    members(bundle, "the bundle", {"format", "checkpoints", "entry_ranges", "entries"}, optional)
    if bundle["format"] != BUNDLE_FORMAT:
        reject(f"the bundle's format is {bundle['format']!r}, not {BUNDLE_FORMAT!r}")
    for name in optional & set(bundle):
        if not isinstance(bundle[name], str):
            reject(f"the bundle's {name} must be a string")
    bodies = check_checkpoints(bundle["checkpoints"], keys)
    ranges = check_entry_ranges(bundle["entry_ranges"])
    count = check_entries(bundle["entries"], ranges, Coverage(bodies))
    first, last = bodies[0], bodies[-1]
    start = (
        "starts at the first checkpoint ever made"
        if first["previous"] is None
        else f"starts at checkpoint {first['number']} (the ones before it are not in the bundle)"
    )
    key_ids = ", ".join(sorted({body["key_id"] for body in bodies}))
    spans = "; ".join(f"lane {lane} seq {a}..{b}" for lane, a, b in ranges) or "none"
    return [
        f"checkpoints {first['number']}..{last['number']} ({len(bodies)}): signatures valid "
        f"(key ids: {key_ids}), each extends the one before; the chain {start}",
        f"last checkpoint {last['number']} made at {last['created_at']}, digest {digest(last)}",
        f"entries: {count}, each hash recomputed from its canonical bytes, linked to its "
        f"predecessor where the bundle holds it, and proven in a signed checkpoint",
        f"entry ranges: {spans}",
    ]


def read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_duplicate_members)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CannotRun(f"{path}: not readable JSON ({exc})") from exc


def signed_by(signed: Any, tag: bytes, keys: Sequence[Ed25519PublicKey], where: str) -> Json:
    members(signed, where, {"algorithm", "key_id", "body", "signature"})
    if signed["algorithm"] != "ed25519" or not isinstance(signed["signature"], str):
        reject(f"{where}: not an ed25519 signature")
    message = tag + canonical(signed["body"])
    for key in keys:
        try:
            key.verify(bytes.fromhex(signed["signature"]), message)
            return signed["body"]
        except (InvalidSignature, ValueError):
            continue
    reject(f"{where}: the signature does not verify with the public key(s) given")


def read_segment_file(path: Path) -> tuple[Json, list[Json]]:
    import gzip
    import zlib

    try:
        lines = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
        header = json.loads(lines[0], object_pairs_hook=no_duplicate_members)
        rows = [json.loads(line, object_pairs_hook=no_duplicate_members) for line in lines[1:]]
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError, IndexError) as exc:
        # zlib.error: corrupt deflate data (a flipped bit inside the compressed stream)
        reject(f"{path}: not a readable segment file ({exc})")
    return header, rows


def check_segment_file(path: Path, anchors: dict[tuple[int, int], str]) -> tuple[Json, int]:
    """The header of a file whose entries all check; the number of checkpoint anchors met."""
    header, rows = read_segment_file(path)
    where = str(path)
    keys = {"format", "lane", "first_seq", "last_seq", "first_prev_hash", "last_hash", "row_count"}
    members(header, f"{where} header", keys)
    if header["format"] != SEGMENT_FORMAT:
        reject(f"{where}: format is {header['format']!r}, not {SEGMENT_FORMAT!r}")
    lane = integer(header["lane"], f"{where} lane", 0)
    seq = integer(header["first_seq"], f"{where} first_seq", 1)
    prev = hex64(header["first_prev_hash"], f"{where} first_prev_hash")
    met = 0
    for row in rows:
        at = f"{where} seq {seq}"
        members(row, at, {"seq", "prev_hash", "hash", "canonical"})
        if integer(row["seq"], f"{at} seq", 1) != seq:
            reject(f"{at}: found seq {row['seq']} (rows missing or reordered)")
        if not isinstance(row["canonical"], str):
            reject(f"{at}: canonical must be a string")
        encoded = row["canonical"].encode("utf-8")
        hex64(row["prev_hash"], f"{at} prev_hash")
        hex64(row["hash"], f"{at} hash")
        check_entry_hash(base64.b64encode(encoded).decode(), row["prev_hash"], row["hash"], at)
        if not same(row["prev_hash"], prev):
            reject(f"{at}: prev_hash does not link to the previous entry")
        written = json.loads(row["canonical"])
        if (written.get("lane"), written.get("seq")) != (str(lane), str(seq)):
            moved = f"lane {written.get('lane')} seq {written.get('seq')}"
            reject(f"{at}: the entry was written as {moved}")
        anchored = anchors.get((lane, seq))
        if anchored is not None:
            if not same(anchored, row["hash"]):
                reject(f"{at}: differs from the hash a signed checkpoint recorded")
            met += 1
        seq, prev = seq + 1, row["hash"]
    if (seq - 1, prev, len(rows)) != (header["last_seq"], header["last_hash"], header["row_count"]):
        reject(f"{where}: the header's last_seq, last_hash or row_count do not match its entries")
    return header, met


def verify_segments(
    paths: Sequence[Path],
    keys: Sequence[Ed25519PublicKey],
    checkpoint_paths: Sequence[Path],
    retention_paths: Sequence[Path],
) -> list[str]:
    anchors: dict[tuple[int, int], str] = {}
    for path in checkpoint_paths:
        body = check_signature(read_json_file(path), str(path), keys)
        for lane, (seq, head) in lane_heads(body, str(path)).items():
            if seq:
                anchors[(lane, seq)] = head
    boundaries: dict[int, tuple[int, str]] = {}
    for path in retention_paths:
        body = signed_by(read_json_file(path), RETENTION_TAG, keys, str(path))
        if body.get("format") != RETENTION_FORMAT:
            reject(f"{path}: not a {RETENTION_FORMAT} record")
        for lane in body.get("lanes", []):
            start = (lane["seq"], lane["hash"])
            boundaries[lane["lane"]] = max(boundaries.get(lane["lane"], start), start)
    headers = []
    met = 0
    for path in paths:
        header, anchored = check_segment_file(path, anchors)
        headers.append((header["lane"], header["first_seq"], header, path))
        met += anchored
    report = []
    for lane in sorted({lane for lane, _, _, _ in headers}):
        files = sorted((h for h in headers if h[0] == lane), key=lambda item: item[1])
        first = files[0][2]
        start_seq, start_hash = boundaries.get(lane, (0, ZERO_HASH))
        if (first["first_seq"] - 1, first["first_prev_hash"]) != (start_seq, start_hash):
            origin = "a retention boundary" if lane in boundaries else "the genesis"
            reject(f"{files[0][3]}: lane {lane} does not start at {origin} (seq {start_seq + 1})")
        for (_, _, before, _), (_, _, after, path) in itertools.pairwise(files):
            if (after["first_seq"], after["first_prev_hash"]) != (
                before["last_seq"] + 1,
                before["last_hash"],
            ):
                reject(f"{path}: does not continue the lane's previous file")
        last = files[-1][2]
        report.append(
            f"lane {lane}: seq {first['first_seq']}..{last['last_seq']} in {len(files)} file(s),"
            f" head {last['last_hash']}"
        )
    report.append(
        f"{len(paths)} segment file(s): every entry hash recomputed and linked; "
        f"{met} entr(ies) match a signed checkpoint head"
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Verify a PayFlow audit evidence bundle (payflow-evidence/1) offline."
    )
    parser.add_argument("bundle", type=Path, nargs="?", help="the evidence bundle (JSON)")
    parser.add_argument(
        "--segments", type=Path, nargs="+", default=[], help="archive segment files to verify"
    )
    parser.add_argument(
        "--checkpoint", type=Path, action="append", default=[], help="signed checkpoint JSON"
    )
    parser.add_argument(
        "--retention", type=Path, action="append", default=[], help="signed retention record"
    )
    parser.add_argument(
        "--public-key",
        action="append",
        required=True,
        metavar="PEM_FILE_OR_HEX",
        help="the audit signing public key: PEM file, hex file or 64 hex digits (repeatable)",
    )
    args = parser.parse_args(argv)
    if (args.bundle is None) == (not args.segments):
        parser.error("give either an evidence bundle or --segments")
    subject = args.bundle or f"{len(args.segments)} segment file(s)"
    try:
        keys = [read_public_key(spec) for spec in args.public_key]
        if args.segments:
            report = verify_segments(args.segments, keys, args.checkpoint, args.retention)
        else:
            report = verify(read_bundle(args.bundle), keys)
    except CannotRun as exc:
        sys.stderr.write(f"verify_evidence: {exc}\n")
        return 2
    except Rejected as exc:
        sys.stderr.write(f"REJECTED {subject}\n  first problem: {exc}\n")
        return 1
    sys.stdout.write(f"VERIFIED {subject}\n" + "".join(f"  {line}\n" for line in report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
