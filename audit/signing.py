"""Signed checkpoints of the audit trail, and the evidence bundles built on them.

Pure Python (no Django, no models): the database side passes lane heads and entry hashes in,
and stores what comes out. The signing seed (``settings.AUDIT_SIGNING_KEY``) is passed in by
the caller and never appears in a return value, an exception or a log line.

Checkpoint body, format ``payflow-audit-checkpoint/1``
------------------------------------------------------
A JSON object with exactly these members::

    {"format": "payflow-audit-checkpoint/1",
     "number": 7,                    # 1 for the first checkpoint, then +1 each time
     "previous": "<64 hex>" | null,  # checkpoint_digest of checkpoint number-1; null iff 1
     "key_id": "audit-1",            # [A-Za-z0-9._:-]{1,64}; the key that signs this body
     "created_at": "2025-06-01T12:00:00.000000Z",   # UTC, always microseconds and "Z"
     "lanes": [{"lane": 0, "seq": 12, "hash": "<64 hex>"}, ...],
     "tree": {"size": 5, "root": "<64 hex>",
              "ranges": [{"lane": 0, "first_seq": 10, "last_seq": 12}, ...]}}

- ``lanes``: the head of every lane, ascending by ``lane`` (integers >= 0, each once; the set
  never changes between checkpoints). ``seq`` is the head's seq, 0 for a lane with no entry
  yet, whose ``hash`` is then 64 zeros (the genesis ``prev_hash``).
- ``tree``: the RFC 6962 Merkle tree (``audit.merkle``) over the entries added since the
  previous checkpoint. ``ranges`` lists, ascending by lane, one range per lane that grew:
  ``first_seq`` = the previous checkpoint's head seq + 1 (1 for checkpoint 1), ``last_seq`` =
  this checkpoint's head seq. The leaves are those entries in (lane, seq) order, each leaf's
  data being the entry's 32-byte hash (raw bytes). So the leaf index of entry (lane, seq) is
  the sizes of the earlier ranges plus ``seq - first_seq``; ``size`` is the sum of the range
  lengths; ``root`` is the tree hash (``SHA-256("")`` when nothing was added).
- Hex is always lowercase. Integers are JSON integers (no floats, no booleans).

Encoding, digest and signature
------------------------------
- Canonical bytes: the body as JSON with keys sorted (by code point), separators ``,`` and
  ``:`` with no whitespace, UTF-8. Every string in a body is printable ASCII without ``"``
  or ``\\`` (enforced), so no escaping ever happens and any JSON library reproduces the
  bytes with ``sort_keys`` and compact separators.
- Message: ``M = b"payflow-checkpoint\\x00" ‖ canonical bytes``.
- Digest (what the next checkpoint names as ``previous``): lowercase hex of ``SHA-256(M)``.
- Signature: Ed25519 (RFC 8032, pure, no prehash) over ``M``, with the key whose 32-byte seed
  is ``AUDIT_SIGNING_KEY``.

Signed checkpoint (stored, published to Kafka, downloaded)::

    {"algorithm": "ed25519", "key_id": "<same as body.key_id>", "body": {...},
     "signature": "<128 hex: the 64-byte signature>"}

Checks an offline verifier makes (``check_signed_checkpoint``, ``check_extends``): the body is
well formed (above); the signature verifies under the auditor's public key; for consecutive
checkpoints A then B: ``B.previous == digest(A)``, ``B.number == A.number + 1``, the same
lanes, no lane's seq decreases (an unchanged seq keeps its hash), a lane that grew has a
range starting at A's seq + 1, and ``B.created_at >= A.created_at``. An entry is covered by
the one checkpoint whose range for its lane contains its seq; its inclusion proof is checked
against that checkpoint's ``tree`` (``audit.merkle.verify_inclusion``).

Evidence bundles (format ``payflow-evidence/1``) are specified in ``tools/verify_evidence.py``,
the auditor's independent verifier; ``evidence_bundle`` here builds them.
"""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.merkle import EMPTY_ROOT, MerkleTree, merkle_root

CHECKPOINT_FORMAT = "payflow-audit-checkpoint/1"
EVIDENCE_FORMAT = "payflow-evidence/1"
CHECKPOINT_DOMAIN = b"payflow-checkpoint\x00"
SIGNATURE_ALGORITHM = "ed25519"
GENESIS_HASH = "0" * 64
SEED_BYTES = 32

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_KEY_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_PLAIN_STRING = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_BODY_KEYS = {"format", "number", "previous", "key_id", "created_at", "lanes", "tree"}
_SIGNED_KEYS = {"algorithm", "key_id", "body", "signature"}

Body = dict[str, Any]


class CheckpointError(ValueError):
    """A checkpoint (or the input to build one) is malformed, inconsistent or not authentic."""


# --- encoding ---------------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a body (see the module docstring); refuses anything else."""
    _require_canonical(value, "body")
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def checkpoint_message(body: Mapping[str, Any]) -> bytes:
    """``b"payflow-checkpoint\\x00" ‖ canonical_json(body)``: what is hashed and signed."""
    return CHECKPOINT_DOMAIN + canonical_json(body)


def checkpoint_digest(body: Mapping[str, Any]) -> str:
    """Lowercase hex SHA-256 of ``checkpoint_message(body)``; the next body's ``previous``."""
    return hashlib.sha256(checkpoint_message(body)).hexdigest()


def format_timestamp(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC; ``moment`` must be timezone-aware."""
    if moment.tzinfo is None:
        raise CheckpointError("checkpoint times must be timezone-aware")
    return moment.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)


def _parse_timestamp(text: Any, where: str) -> datetime:
    if not isinstance(text, str) or not _TIMESTAMP.fullmatch(text):
        raise CheckpointError(f"{where} is not a UTC time like 2025-06-01T12:00:00.000000Z")
    try:
        return datetime.strptime(text, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise CheckpointError(f"{where} is not a valid date and time") from exc


def _require_canonical(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not _PLAIN_STRING.fullmatch(key):
                raise CheckpointError(f"{where} has a key that is not plain ASCII text")
            _require_canonical(item, f"{where}.{key}")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            _require_canonical(item, f"{where}[{position}]")
    elif isinstance(value, str):
        if not _PLAIN_STRING.fullmatch(value):
            raise CheckpointError(f"{where} is not printable ASCII without quotes or backslashes")
    elif not (value is None or type(value) is int):
        raise CheckpointError(f"{where} is a {type(value).__name__}, not an integer or string")


# --- validation -------------------------------------------------------------------------


def validate_checkpoint_body(body: Any) -> None:
    """Raise ``CheckpointError`` unless ``body`` is a well-formed version-1 checkpoint body."""
    if not isinstance(body, dict) or set(body) != _BODY_KEYS:
        raise CheckpointError(f"a checkpoint body has exactly the members {sorted(_BODY_KEYS)}")
    _require_canonical(body, "body")
    if body["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"body.format is not {CHECKPOINT_FORMAT!r}")
    number = _count(body["number"], "body.number", minimum=1)
    if (number == 1) != (body["previous"] is None):
        raise CheckpointError("body.previous is null exactly for checkpoint number 1")
    if body["previous"] is not None:
        _hex64(body["previous"], "body.previous")
    if not isinstance(body["key_id"], str) or not _KEY_ID.fullmatch(body["key_id"]):
        raise CheckpointError("body.key_id must match [A-Za-z0-9._:-]{1,64}")
    _parse_timestamp(body["created_at"], "body.created_at")
    heads = _lane_heads(body["lanes"])
    _validate_tree(body["tree"], heads, genesis=number == 1)


def _lane_heads(lanes: Any) -> dict[int, tuple[int, str]]:
    if not isinstance(lanes, list) or not lanes:
        raise CheckpointError("body.lanes must be a non-empty list")
    heads: dict[int, tuple[int, str]] = {}
    previous_lane = -1
    for position, head in enumerate(lanes):
        where = f"body.lanes[{position}]"
        if not isinstance(head, dict) or set(head) != {"lane", "seq", "hash"}:
            raise CheckpointError(f"{where} has exactly the members lane, seq, hash")
        lane = _count(head["lane"], f"{where}.lane", minimum=0)
        if lane <= previous_lane:
            raise CheckpointError(f"{where}.lane is not in strictly ascending order")
        previous_lane = lane
        seq = _count(head["seq"], f"{where}.seq", minimum=0)
        if seq == 0 and head["hash"] != GENESIS_HASH:
            raise CheckpointError(f"{where}: an empty lane's head hash is 64 zeros")
        heads[lane] = (seq, _hex64(head["hash"], f"{where}.hash"))
    return heads


def _validate_tree(tree: Any, heads: Mapping[int, tuple[int, str]], *, genesis: bool) -> None:
    if not isinstance(tree, dict) or set(tree) != {"size", "root", "ranges"}:
        raise CheckpointError("body.tree has exactly the members size, root, ranges")
    ranges = _tree_ranges(tree["ranges"], heads)
    size = _count(tree["size"], "body.tree.size", minimum=0)
    if size != sum(last - first + 1 for _, first, last in ranges):
        raise CheckpointError("body.tree.size is not the number of entries in its ranges")
    root = _hex64(tree["root"], "body.tree.root")
    if size == 0 and root != EMPTY_ROOT.hex():
        raise CheckpointError("body.tree.root of an empty tree must be SHA-256 of nothing")
    if genesis:
        grown = {lane for lane, (seq, _) in heads.items() if seq > 0}
        if {lane for lane, _, _ in ranges} != grown or any(first != 1 for _, first, _ in ranges):
            raise CheckpointError("checkpoint 1 must cover every entry from seq 1")


def _tree_ranges(ranges: Any, heads: Mapping[int, tuple[int, str]]) -> list[tuple[int, int, int]]:
    if not isinstance(ranges, list):
        raise CheckpointError("body.tree.ranges must be a list")
    result: list[tuple[int, int, int]] = []
    for position, item in enumerate(ranges):
        where = f"body.tree.ranges[{position}]"
        if not isinstance(item, dict) or set(item) != {"lane", "first_seq", "last_seq"}:
            raise CheckpointError(f"{where} has exactly the members lane, first_seq, last_seq")
        lane = _count(item["lane"], f"{where}.lane", minimum=0)
        first = _count(item["first_seq"], f"{where}.first_seq", minimum=1)
        last = _count(item["last_seq"], f"{where}.last_seq", minimum=first)
        if lane not in heads or heads[lane][0] != last:
            raise CheckpointError(f"{where} does not end at the head of lane {lane}")
        if result and lane <= result[-1][0]:
            raise CheckpointError(f"{where}.lane is not in strictly ascending order")
        result.append((lane, first, last))
    return result


def _count(value: Any, where: str, *, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise CheckpointError(f"{where} must be an integer >= {minimum}")
    return value


def _hex64(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise CheckpointError(f"{where} must be 64 lowercase hex digits")
    return value


def check_extends(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> None:
    """Raise ``CheckpointError`` unless body ``later`` directly follows body ``earlier``."""
    validate_checkpoint_body(earlier)
    validate_checkpoint_body(later)
    if later["previous"] != checkpoint_digest(earlier):
        raise CheckpointError(
            f"checkpoint {later['number']} does not name checkpoint {earlier['number']} "
            "as its previous"
        )
    if later["number"] != earlier["number"] + 1:
        raise CheckpointError(f"checkpoint {later['number']} follows {earlier['number']}")
    # Both times are validated to one fixed-width UTC format: text order is time order.
    if later["created_at"] < earlier["created_at"]:
        raise CheckpointError(f"checkpoint {later['number']} is older than its previous")
    old_heads, new_heads = _lane_heads(earlier["lanes"]), _lane_heads(later["lanes"])
    if set(old_heads) != set(new_heads):
        raise CheckpointError(f"checkpoint {later['number']} has a different set of lanes")
    ranges = {lane: first for lane, first, _ in _tree_ranges(later["tree"]["ranges"], new_heads)}
    for lane, (old_seq, old_hash) in old_heads.items():
        new_seq, new_hash = new_heads[lane]
        if new_seq < old_seq:
            raise CheckpointError(f"lane {lane} went back from seq {old_seq} to {new_seq}")
        if new_seq == old_seq and (new_hash != old_hash or lane in ranges):
            raise CheckpointError(f"lane {lane} changed without growing past seq {old_seq}")
        if new_seq > old_seq and ranges.get(lane) != old_seq + 1:
            raise CheckpointError(f"the tree does not cover lane {lane} from seq {old_seq + 1}")


def verify_extends(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> bool:
    """Whether body ``later`` directly follows body ``earlier`` (see ``check_extends``)."""
    try:
        check_extends(earlier, later)
    except CheckpointError:
        return False
    return True


# --- building and signing ---------------------------------------------------------------


def build_checkpoint_body(
    *,
    key_id: str,
    created_at: datetime,
    heads: Mapping[int, tuple[int, str]],
    entries: Iterable[tuple[int, int, str]],
    previous: Mapping[str, Any] | None,
) -> Body:
    """The body of the checkpoint after ``previous`` (a body, or None for the first one).

    ``heads`` maps every lane to its current (seq, hash hex). ``entries`` yields
    (lane, seq, hash hex) of exactly the entries after ``previous``'s heads up to ``heads``,
    in (lane, seq) order; it is streamed, and any gap, extra or misordered entry, or a last
    entry whose hash is not the head's, raises ``CheckpointError``. ``created_at`` is
    raised to ``previous``'s time if the clock is behind it, so checkpoint times never
    decrease.
    """
    if previous is None:
        number, previous_digest, moment = 1, None, format_timestamp(created_at)
        old_heads = {lane: (0, GENESIS_HASH) for lane in heads}
    else:
        validate_checkpoint_body(previous)
        number, previous_digest = previous["number"] + 1, checkpoint_digest(previous)
        moment = max(format_timestamp(created_at), previous["created_at"])
        old_heads = _lane_heads(previous["lanes"])
    ranges = [
        (lane, old_heads[lane][0] + 1, seq)
        for lane, (seq, _) in sorted(heads.items())
        if lane in old_heads and seq > old_heads[lane][0]
    ]
    root = merkle_root(_checked_leaves(entries, ranges, heads))
    body: Body = {
        "format": CHECKPOINT_FORMAT,
        "number": number,
        "previous": previous_digest,
        "key_id": key_id,
        "created_at": moment,
        "lanes": [
            {"lane": lane, "seq": seq, "hash": h} for lane, (seq, h) in sorted(heads.items())
        ],
        "tree": {
            "size": sum(last - first + 1 for _, first, last in ranges),
            "root": root.hex(),
            "ranges": [{"lane": ln, "first_seq": f, "last_seq": la} for ln, f, la in ranges],
        },
    }
    validate_checkpoint_body(body)
    if previous is not None:
        check_extends(previous, body)
    return body


def _checked_leaves(
    entries: Iterable[tuple[int, int, str]],
    ranges: Sequence[tuple[int, int, int]],
    heads: Mapping[int, tuple[int, str]],
) -> Iterator[bytes]:
    expected = ((lane, seq) for lane, first, last in ranges for seq in range(first, last + 1))
    for lane, seq, entry_hash in entries:
        wanted = next(expected, None)
        if (lane, seq) != wanted:
            raise CheckpointError(f"got entry (lane {lane}, seq {seq}) where {wanted} was due")
        _hex64(entry_hash, f"the hash of entry (lane {lane}, seq {seq})")
        if seq == heads[lane][0] and entry_hash != heads[lane][1]:
            raise CheckpointError(f"entry (lane {lane}, seq {seq}) is not the lane's head")
        yield bytes.fromhex(entry_hash)
    missing = next(expected, None)
    if missing is not None:
        raise CheckpointError(f"entry (lane {missing[0]}, seq {missing[1]}) is missing")


def sign_checkpoint(body: Mapping[str, Any], private_seed: bytes, key_id: str) -> dict[str, Any]:
    """``{"algorithm": "ed25519", "key_id", "body", "signature"}`` for a well-formed body."""
    validate_checkpoint_body(body)
    if body["key_id"] != key_id:
        raise CheckpointError("the body names another key id than the signing key's")
    signature = _private_key(private_seed).sign(checkpoint_message(body))
    return {
        "algorithm": SIGNATURE_ALGORITHM,
        "key_id": key_id,
        "body": copy.deepcopy(dict(body)),
        "signature": signature.hex(),
    }


def check_signed_checkpoint(signed: Any, public_key: bytes) -> None:
    """Raise ``CheckpointError`` unless ``signed`` is well formed and signed by ``public_key``."""
    if not isinstance(signed, dict) or set(signed) != _SIGNED_KEYS:
        raise CheckpointError(f"a signed checkpoint has exactly the members {sorted(_SIGNED_KEYS)}")
    if signed["algorithm"] != SIGNATURE_ALGORITHM:
        raise CheckpointError(f"the signature algorithm is not {SIGNATURE_ALGORITHM!r}")
    validate_checkpoint_body(signed["body"])
    if signed["key_id"] != signed["body"]["key_id"]:
        raise CheckpointError("key_id differs from the signed body's key_id")
    if not isinstance(signed["signature"], str) or not _HEX128.fullmatch(signed["signature"]):
        raise CheckpointError("signature must be 128 lowercase hex digits")
    try:
        verifier = Ed25519PublicKey.from_public_bytes(public_key)
        verifier.verify(bytes.fromhex(signed["signature"]), checkpoint_message(signed["body"]))
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise CheckpointError("the signature does not verify with this public key") from exc


def verify_checkpoint(signed: Any, public_key_bytes: bytes) -> bool:
    """Whether ``signed`` is a well-formed checkpoint signed by this raw Ed25519 public key."""
    try:
        check_signed_checkpoint(signed, public_key_bytes)
    except CheckpointError:
        return False
    return True


def sign_statement(domain: bytes, body: Mapping[str, Any], seed: bytes, key_id: str) -> dict:
    """Sign another kind of audit statement (e.g. a retention purge record) with the
    checkpoint key: ``{"algorithm", "key_id", "body", "signature"}`` over
    ``domain ‖ canonical_json(body)``. The domain tag keeps a statement from ever passing
    as a checkpoint."""
    signature = _private_key(seed).sign(domain + canonical_json(dict(body)))
    return {
        "algorithm": SIGNATURE_ALGORITHM,
        "key_id": key_id,
        "body": copy.deepcopy(dict(body)),
        "signature": signature.hex(),
    }


def verify_statement(domain: bytes, signed: Any, public_key: bytes) -> bool:
    """Whether ``signed`` (from ``sign_statement``) is signed by this public key."""
    try:
        if not isinstance(signed, dict) or set(signed) != _SIGNED_KEYS:
            return False
        if signed["algorithm"] != SIGNATURE_ALGORITHM:
            return False
        message = domain + canonical_json(signed["body"])
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            bytes.fromhex(signed["signature"]), message
        )
    except (InvalidSignature, CheckpointError, ValueError, TypeError, KeyError):
        return False
    return True


def _private_key(seed: bytes) -> Ed25519PrivateKey:
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise CheckpointError(f"the signing key must be a {SEED_BYTES}-byte Ed25519 seed")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_from_seed(seed: bytes) -> bytes:
    """The raw 32-byte Ed25519 public key of a 32-byte seed."""
    return (
        _private_key(seed)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def public_key_pem(public_key: bytes) -> str:
    """A raw 32-byte Ed25519 public key as PEM (SubjectPublicKeyInfo), for auditors."""
    key = Ed25519PublicKey.from_public_bytes(public_key)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode("ascii")


# --- coverage, proofs and evidence bundles ----------------------------------------------


def leaf_index(body: Mapping[str, Any], lane: int, seq: int) -> int | None:
    """The leaf index of entry (lane, seq) in ``body``'s tree, or None if it does not cover it."""
    offset = 0
    for item in body["tree"]["ranges"]:
        first: int = item["first_seq"]
        last: int = item["last_seq"]
        if item["lane"] == lane and first <= seq <= last:
            return offset + seq - first
        offset += last - first + 1
    return None


def entry_proof(body: Mapping[str, Any], tree: MerkleTree, lane: int, seq: int) -> dict[str, Any]:
    """``{"checkpoint", "leaf_index", "path"}``: the inclusion proof of (lane, seq) in ``body``.

    ``tree`` is the ``MerkleTree`` of ``body``'s leaves (rebuilt from the database); it must
    have the body's size and root.
    """
    index = leaf_index(body, lane, seq)
    if index is None:
        raise CheckpointError(f"checkpoint {body['number']} does not cover (lane {lane}, {seq})")
    if tree.size != body["tree"]["size"] or tree.root.hex() != body["tree"]["root"]:
        raise CheckpointError(f"the tree given is not checkpoint {body['number']}'s tree")
    path = [node.hex() for node in tree.inclusion_proof(index)]
    return {"checkpoint": body["number"], "leaf_index": index, "path": path}


def evidence_bundle(
    *,
    checkpoints: Sequence[Mapping[str, Any]],
    entry_ranges: Sequence[tuple[int, int, int]],
    entries: Iterable[Mapping[str, Any]],
    trees: Mapping[int, MerkleTree],
    description: str | None = None,
    exported_at: datetime | None = None,
) -> dict[str, Any]:
    """A ``payflow-evidence/1`` bundle (format: ``tools/verify_evidence.py``).

    ``checkpoints``: consecutive signed checkpoints, oldest first, covering every entry.
    ``entry_ranges``: the (lane, first_seq, last_seq) ranges the bundle promises in full.
    ``entries``: mappings with lane, seq, prev_hash (hex), hash (hex), canonical (bytes), in
    the order of ``entry_ranges``. ``trees``: checkpoint number -> that checkpoint's tree.
    """
    bodies = [signed["body"] for signed in checkpoints]
    coverage = _coverage(bodies)
    bundle_entries = []
    for entry in entries:
        lane, seq = entry["lane"], entry["seq"]
        body = _covering(coverage, lane, seq)
        if body is None:
            raise CheckpointError(f"no checkpoint given covers (lane {lane}, seq {seq})")
        if body["number"] not in trees:
            raise CheckpointError(f"no tree given for checkpoint {body['number']}")
        bundle_entries.append(
            {
                "lane": lane,
                "seq": seq,
                "prev_hash": entry["prev_hash"],
                "hash": entry["hash"],
                "canonical": base64.b64encode(entry["canonical"]).decode("ascii"),
                "proof": entry_proof(body, trees[body["number"]], lane, seq),
            }
        )
    bundle: dict[str, Any] = {
        "format": EVIDENCE_FORMAT,
        "checkpoints": [copy.deepcopy(dict(signed)) for signed in checkpoints],
        "entry_ranges": [
            {"lane": lane, "first_seq": first, "last_seq": last}
            for lane, first, last in entry_ranges
        ],
        "entries": bundle_entries,
    }
    if description is not None:
        bundle["description"] = description
    if exported_at is not None:
        bundle["exported_at"] = format_timestamp(exported_at)
    return bundle


_Coverage = dict[int, tuple[list[int], list[tuple[int, int, Any]]]]


def _coverage(bodies: Sequence[Mapping[str, Any]]) -> _Coverage:
    """Per lane: the first seqs of the checkpoints' ranges (sorted) and the ranges."""
    spans: dict[int, list[tuple[int, int, Any]]] = {}
    for body in bodies:
        for item in body["tree"]["ranges"]:
            spans.setdefault(item["lane"], []).append((item["first_seq"], item["last_seq"], body))
    coverage: _Coverage = {}
    for lane, lane_spans in spans.items():
        lane_spans.sort(key=lambda span: span[0])
        coverage[lane] = ([first for first, _, _ in lane_spans], lane_spans)
    return coverage


def _covering(coverage: _Coverage, lane: int, seq: int) -> Any:
    firsts, spans = coverage.get(lane, ([], []))
    position = bisect.bisect_right(firsts, seq) - 1
    if position >= 0 and spans[position][1] >= seq:
        return spans[position][2]
    return None
