"""A second, independent verifier of PayFlow evidence bundles.

Written from docs/audit-formats.md alone (sections 1-5), without reading the project's own
verifier, so that the two can be compared. Only the standard library and ``cryptography``.

Public API::

    verify_bundle(bundle, log_key, witness_keys=(), quorum=0, trusted=None)
        -> list[tuple[str, int | None]]

An empty list means the bundle is valid. Every failure is ``(kind, index)``: bundle-wide
failures (``bad_signature``, ``too_few_cosignatures``, ``bad_checkpoint``,
``bad_consistency``, ``malformed``) carry ``None``; for each entry only its first failure is
reported (``malformed`` < ``hash_mismatch`` < ``not_canonical`` < ``bad_inclusion`` <
``chain_broken``, then the optional ``entry`` display-field check). The function never
raises.

Deliberately unlike the obvious implementation: the Merkle proofs are checked by recursing
over the RFC 6962 PATH / SUBPROOF definitions (tree split at the largest power of two), not by
the bit-shifting loops of RFC 9162; the canonical encoder is a hand-written serializer, not
``json.dumps``; nothing is trusted from ``entry``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "GENESIS",
    "canonical_bytes",
    "entry_hash",
    "leaf_hash",
    "node_hash",
    "verify_bundle",
    "verify_consistency",
    "verify_inclusion",
]

BUNDLE_FORMAT = "payflow-audit-bundle/2"
ENTRY_PREFIX = b"payflow-audit-entry/2\x00"
GENESIS = b"\x00" * 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
EM_DASH_SPACE = "\u2014 "
ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
TOP_LEVEL_KEYS = (
    "action",
    "actor",
    "created_at",
    "event_type",
    "ip",
    "new",
    "object_id",
    "object_type",
    "old",
    "reason",
    "request_id",
    "task_id",
    "user_agent",
    "v",
)
STRING_MEMBERS = (
    "action",
    "event_type",
    "ip",
    "object_id",
    "object_type",
    "reason",
    "request_id",
    "task_id",
    "user_agent",
)
ACTOR_KEYS = frozenset({"id", "label", "type"})
# §1.3: these may be a sealed value instead of a string.
SEALABLE_MEMBERS = frozenset({"ip", "reason", "user_agent"})


def _is_sealed(value: Any) -> bool:
    """A sealed personal value (§1.3): {"sealed": base64, "subject": s} or
    {"erased": true, "subject": s}."""
    if not isinstance(value, dict) or not isinstance(value.get("subject"), str):
        return False
    if set(value) == {"sealed", "subject"}:
        return isinstance(value["sealed"], str)
    return set(value) == {"erased", "subject"} and value["erased"] is True


_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}\+00:00")
_HEX32 = re.compile(r"[0-9a-f]{64}")
_HEX4 = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_UINT64_LIMIT = 1 << 64


class _Bad(Exception):
    """Internal: the input does not have the expected shape."""


# --------------------------------------------------------------------------------------------
# small strict decoders


def _b64(text: Any, length: int | None = None) -> bytes:
    """Standard base64 with padding; only the canonical spelling of the bytes is accepted."""
    if not isinstance(text, str):
        raise _Bad("base64: not a string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeError, binascii.Error, ValueError) as exc:
        raise _Bad("base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise _Bad("base64: not canonical")
    if length is not None and len(raw) != length:
        raise _Bad("base64: wrong length")
    return raw


def _hex32(text: Any) -> bytes:
    if not isinstance(text, str) or not _HEX32.fullmatch(text):
        raise _Bad("hex")
    return bytes.fromhex(text)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Bad("duplicate key")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise _Bad(f"JSON constant {name}")


class _Number:
    """A JSON number met inside an entry body (which must not contain any)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _load_bundle_json(text: str) -> Any:
    # Floats are kept as _Number so that integer fields can reject them.
    return json.loads(
        text,
        object_pairs_hook=_no_dupes,
        parse_float=_Number,
        parse_constant=_reject_constant,
    )


# --------------------------------------------------------------------------------------------
# §1: canonical bytes and the entry hash


def _encode_string(text: str, out: list[str]) -> None:
    out.append('"')
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code >= 0x20:
            out.append(ch)
        elif code == 0x08:
            out.append("\\b")
        elif code == 0x09:
            out.append("\\t")
        elif code == 0x0A:
            out.append("\\n")
        elif code == 0x0C:
            out.append("\\f")
        elif code == 0x0D:
            out.append("\\r")
        else:
            out.append("\\u00" + "0123456789abcdef"[code >> 4] + "0123456789abcdef"[code & 15])
    out.append('"')


def _encode_value(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        _encode_string(value, out)
    elif isinstance(value, dict):
        # Byte order of the UTF-8 encodings (raises on lone surrogates: then not canonical).
        keys = sorted(value, key=lambda k: k.encode("utf-8"))
        out.append("{")
        for position, key in enumerate(keys):
            if position:
                out.append(",")
            if not isinstance(key, str):
                raise _Bad("non-string key")
            _encode_string(key, out)
            out.append(":")
            _encode_value(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for position, item in enumerate(value):
            if position:
                out.append(",")
            _encode_value(item, out)
        out.append("]")
    else:
        # JSON numbers (_Number) and anything else: no canonical form exists.
        raise _Bad("value without a canonical encoding")


def canonical_bytes(body: dict[str, Any]) -> bytes:
    """Encode a parsed body per §1.1 (raises _Bad if it has no canonical encoding)."""
    out: list[str] = []
    _encode_value(body, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeError as exc:
        raise _Bad("lone surrogate") from exc


def _parse_body(raw: bytes) -> Any:
    text = raw.decode("utf-8")  # strict: invalid UTF-8 raises
    return json.loads(
        text,
        object_pairs_hook=_no_dupes,
        parse_int=_Number,
        parse_float=_Number,
        parse_constant=_reject_constant,
    )


def _check_members(body: Any) -> None:
    """The member list of §1.1 (what re-encoding alone cannot see)."""
    if not isinstance(body, dict) or tuple(sorted(body)) != TOP_LEVEL_KEYS:
        raise _Bad("top-level keys")
    if body["v"] != "2":
        raise _Bad("v")
    for key in STRING_MEMBERS:
        if not isinstance(body[key], str) and not (
            key in SEALABLE_MEMBERS and _is_sealed(body[key])
        ):
            raise _Bad(key)
    for key in ("old", "new"):
        if body[key] is not None and not isinstance(body[key], dict):
            raise _Bad(key)
    actor = body["actor"]
    if not isinstance(actor, dict) or set(actor) != ACTOR_KEYS:
        raise _Bad("actor")
    stamp = body["created_at"]
    if not isinstance(stamp, str) or not _TIME.fullmatch(stamp):
        raise _Bad("created_at")
    try:
        datetime.datetime.strptime(stamp[:26], "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError as exc:
        raise _Bad("created_at") from exc


def _canonical_body(raw: bytes) -> dict[str, Any] | None:
    """The parsed body if ``raw`` is canonical per §1.1, else None."""
    try:
        body = _parse_body(raw)
        _check_members(body)
        if canonical_bytes(body) != raw:
            return None
    except (_Bad, ValueError, RecursionError, UnicodeError, TypeError):
        return None
    return body


def _parsed_identity(raw: bytes) -> tuple[str, str] | None:
    """(object_type, object_id) of a body that parses, canonical or not."""
    try:
        body = _parse_body(raw)
    except (_Bad, ValueError, RecursionError, UnicodeError, TypeError):
        return None
    if not isinstance(body, dict):
        return None
    object_type, object_id = body.get("object_type"), body.get("object_id")
    if isinstance(object_type, str) and isinstance(object_id, str):
        return (object_type, object_id)
    return None


def entry_hash(prev_hash: bytes, body: bytes) -> bytes:
    return hashlib.sha256(ENTRY_PREFIX + prev_hash + body).digest()


# --------------------------------------------------------------------------------------------
# §2: the Merkle tree, proofs checked by recursion over the RFC 6962 definitions


def leaf_hash(entry_hash_: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry_hash_).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _path_root(m: int, n: int, leaf: bytes, proof: Sequence[bytes], used: int) -> bytes | None:
    """Root of a subtree of n leaves holding ``leaf`` at m, from the last ``used`` nodes.

    RFC 6962 §2.1.1: PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) if m < k, else
    PATH(m - k, D[k:n]) : MTH(D[0:k]); so the last node of the path is the top sibling.
    """
    if n == 1:
        return leaf if used == 0 else None
    if used == 0:
        return None
    k = _split(n)
    sibling = proof[used - 1]
    if m < k:
        below = _path_root(m, k, leaf, proof, used - 1)
        return None if below is None else node_hash(below, sibling)
    below = _path_root(m - k, n - k, leaf, proof, used - 1)
    return None if below is None else node_hash(sibling, below)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    if not (_is_int(index) and _is_int(size) and 0 <= index < size):
        return False
    if any(not isinstance(node, bytes) or len(node) != 32 for node in proof):
        return False
    if len(proof) > 64:
        return False
    return _path_root(index, size, leaf, proof, len(proof)) == root


def _subproof_roots(
    m: int, n: int, whole: bool, old_root: bytes, proof: Sequence[bytes], used: int
) -> tuple[bytes, bytes] | None:
    """(hash of the first m leaves, hash of all n leaves) of a subtree, from the proof.

    RFC 6962 §2.1.2: SUBPROOF(m, D[m], true) = {}, SUBPROOF(m, D[m], false) = {MTH(D[m])};
    for m < n: SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) if m <= k, else
    SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]).
    """
    if m == n:
        if whole:
            return (old_root, old_root) if used == 0 else None
        return (proof[0], proof[0]) if used == 1 else None
    if used == 0:
        return None
    k = _split(n)
    node = proof[used - 1]
    if m <= k:
        below = _subproof_roots(m, k, whole, old_root, proof, used - 1)
        return None if below is None else (below[0], node_hash(below[1], node))
    below = _subproof_roots(m - k, n - k, False, old_root, proof, used - 1)
    if below is None:
        return None
    return (node_hash(node, below[0]), node_hash(node, below[1]))


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    if not (_is_int(old_size) and _is_int(new_size) and 0 <= old_size <= new_size):
        return False
    if any(not isinstance(node, bytes) or len(node) != 32 for node in proof):
        return False
    if len(proof) > 128:
        return False
    if old_size == 0:
        # Every tree extends the empty one; its root can only be SHA-256("").
        return not proof and old_root == EMPTY_ROOT
    if old_size == new_size:
        return not proof and old_root == new_root
    roots = _subproof_roots(old_size, new_size, True, old_root, proof, len(proof))
    return roots is not None and roots == (old_root, new_root)


# --------------------------------------------------------------------------------------------
# §3 / §4: note keys, signed notes, checkpoints, cosignatures


class _Key:
    def __init__(self, name: str, key_id: bytes, public: Ed25519PublicKey) -> None:
        self.name = name
        self.key_id = key_id
        self.public = public

    def verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            self.public.verify(signature, message)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def _parse_verifier_key(text: Any, algorithm: int) -> _Key:
    if not isinstance(text, str):
        raise _Bad("key: not a string")
    parts = text.split("+", 2)  # the name has no "+", the base64 may
    if len(parts) != 3:
        raise _Bad("key: shape")
    name, key_id_hex, key_b64 = parts
    if not _valid_name(name) or not _HEX4.fullmatch(key_id_hex):
        raise _Bad("key: name or id")
    encoded = _b64(key_b64, 33)
    if encoded[0] != algorithm:
        raise _Bad("key: algorithm")
    key_id = hashlib.sha256(name.encode("utf-8") + b"\n" + encoded).digest()[:4]
    if key_id.hex() != key_id_hex:
        raise _Bad("key: id does not match")
    try:
        public = Ed25519PublicKey.from_public_bytes(encoded[1:])
    except ValueError as exc:
        raise _Bad("key: not an Ed25519 key") from exc
    return _Key(name, key_id, public)


def _parse_note(text: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Split a signed note into (body bytes, [(key name, decoded signature blob)])."""
    if not text.endswith("\n"):
        raise _Bad("note: no final newline")
    split = text.rfind("\n\n")
    if split < 0:
        raise _Bad("note: no blank line")
    body, block = text[: split + 1], text[split + 2 :]
    lines = block.split("\n")[:-1]
    if not lines:
        raise _Bad("note: no signatures")
    signatures = []
    for line in lines:
        if not line.startswith(EM_DASH_SPACE):
            raise _Bad("note: signature line")
        fields = line[len(EM_DASH_SPACE) :].split(" ")
        if len(fields) != 2 or not _valid_name(fields[0]):
            raise _Bad("note: signature line")
        blob = _b64(fields[1])
        if len(blob) < 5:
            raise _Bad("note: signature too short")
        signatures.append((fields[0], blob))
    try:
        body_bytes = body.encode("utf-8")
    except UnicodeError as exc:
        raise _Bad("note: not UTF-8") from exc
    return body_bytes, signatures


def _parse_checkpoint(body: bytes) -> tuple[str, int, bytes]:
    text = body.decode("utf-8")
    lines = text.split("\n")
    if len(lines) != 4 or lines[3] != "":
        raise _Bad("checkpoint: not three lines")
    origin, size_text, root_text = lines[:3]
    if not origin or not _DECIMAL.fullmatch(size_text):
        raise _Bad("checkpoint: origin or size")
    size = int(size_text)
    if size >= _UINT64_LIMIT:
        raise _Bad("checkpoint: size")
    return origin, size, _b64(root_text, 32)


def _cosignature_message(timestamp: int, body: bytes) -> bytes:
    return b"cosignature/v1\ntime " + str(timestamp).encode("ascii") + b"\n" + body


# --------------------------------------------------------------------------------------------
# the report


class _Report:
    def __init__(self) -> None:
        self.bundle: list[str] = []
        self.entries: dict[int, str] = {}

    def bundle_failure(self, kind: str) -> None:
        if kind not in self.bundle:
            self.bundle.append(kind)

    def entry_failure(self, index: int, kind: str) -> None:
        self.entries.setdefault(index, kind)  # the first failure of an entry wins

    def failed(self, index: int) -> bool:
        return index in self.entries

    def result(self) -> list[tuple[str, int | None]]:
        out: list[tuple[str, int | None]] = [(kind, None) for kind in self.bundle]
        out.extend((self.entries[index], index) for index in sorted(self.entries))
        return out


def _same_json(a: Any, b: Any) -> bool:
    """Type-exact equality of two JSON values (True is not 1, lists may be tuples)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and set(a) == set(b)
            and all(_same_json(a[k], b[k]) for k in a)
        )
    if _is_list(a) or _is_list(b):
        return (
            _is_list(a)
            and _is_list(b)
            and len(a) == len(b)
            and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a is b  # None, True, False; anything else is not a value of a canonical body


# --------------------------------------------------------------------------------------------
# §5: the bundle


class _Entry:
    def __init__(self, index: int, prev: bytes, claimed: bytes, body: bytes) -> None:
        self.index = index
        self.prev = prev
        self.claimed = claimed
        self.body = body
        self.parsed: dict[str, Any] | None = None
        self.identity: tuple[str, str] | None = None
        self.proof: list[bytes] = []
        self.display: Any = None
        self.has_display = False


def _load(bundle: Any) -> dict[str, Any]:
    if isinstance(bundle, bytes | bytearray | memoryview):
        try:
            bundle = bytes(bundle).decode("utf-8")
        except UnicodeError as exc:
            raise _Bad("bundle: not UTF-8") from exc
    if isinstance(bundle, str):
        if bundle.startswith("\ufeff"):
            raise _Bad("bundle: byte order mark")
        try:
            bundle = _load_bundle_json(bundle)
        except (_Bad, ValueError, RecursionError) as exc:
            raise _Bad("bundle: not JSON") from exc
    if not isinstance(bundle, dict):
        raise _Bad("bundle: not an object")
    return bundle


def _check_note(
    report: _Report,
    bundle: dict[str, Any],
    log_key: _Key | None,
    witnesses: dict[tuple[str, bytes], _Key],
    quorum: int,
) -> tuple[int, bytes] | None:
    """Step 1. Returns (size, root) of the checkpoint body when it can be read at all."""
    note = bundle.get("checkpoint")
    origin = bundle.get("origin")
    tree_size = bundle.get("tree_size")
    if not isinstance(note, str) or not isinstance(origin, str) or not _is_int(tree_size):
        report.bundle_failure("malformed")
        return None
    try:
        body, signatures = _parse_note(note)
    except _Bad:
        report.bundle_failure("bad_signature")
        report.bundle_failure("bad_checkpoint")
        return None

    if log_key is not None:
        good = bad = 0
        for name, blob in signatures:
            if name == log_key.name and blob[:4] == log_key.key_id:
                if len(blob) == 68 and log_key.verifies(blob[4:], body):
                    good += 1
                else:
                    bad += 1
        if bad or not good:
            report.bundle_failure("bad_signature")

    cosigned: set[tuple[str, bytes]] = set()
    refused: set[tuple[str, bytes]] = set()
    for name, blob in signatures:
        handle = (name, blob[:4])
        witness = witnesses.get(handle)
        if witness is None:
            continue  # not a key we were given: ignored (§3)
        ok = len(blob) == 76 and witness.verifies(
            blob[12:], _cosignature_message(int.from_bytes(blob[4:12], "big"), body)
        )
        (cosigned if ok else refused).add(handle)
    if refused:
        report.bundle_failure("bad_signature")
    if quorum > 0 and len(cosigned - refused) < quorum:
        report.bundle_failure("too_few_cosignatures")

    try:
        cp_origin, cp_size, cp_root = _parse_checkpoint(body)
    except (_Bad, UnicodeError):
        report.bundle_failure("bad_checkpoint")
        return None
    if (
        cp_origin != origin
        or (log_key is not None and cp_origin != log_key.name)
        or cp_size != tree_size
        or (cp_size == 0 and cp_root != EMPTY_ROOT)
    ):
        report.bundle_failure("bad_checkpoint")
    return cp_size, cp_root


def _read_entries(report: _Report, raw_entries: Any) -> list[_Entry]:
    if not _is_list(raw_entries):
        report.bundle_failure("malformed")
        return []
    entries: list[_Entry] = []
    seen: set[int] = set()
    for raw in raw_entries:
        index = raw.get("index") if isinstance(raw, dict) else None
        if not _is_int(index) or index < 0:
            report.bundle_failure("malformed")
            continue
        if index in seen:
            report.entry_failure(index, "malformed")
            continue
        seen.add(index)
        try:
            entry = _Entry(index, _hex32(raw.get("prev_hash")), _hex32(raw.get("hash")), b"")
            entry.body = _b64(raw.get("body"))
            proof = raw.get("inclusion")
            if not _is_list(proof):
                raise _Bad("inclusion")
            entry.proof = [_b64(node, 32) for node in proof]
        except _Bad:
            report.entry_failure(index, "malformed")
            continue
        if "entry" in raw:
            entry.has_display, entry.display = True, raw["entry"]
        entries.append(entry)
    return entries


def _check_entries(report: _Report, entries: list[_Entry], tree: tuple[int, bytes] | None) -> None:
    """Step 2, per entry: hash, canonical body, inclusion."""
    for entry in entries:
        entry.identity = _parsed_identity(entry.body)
        if entry_hash(entry.prev, entry.body) != entry.claimed:
            report.entry_failure(entry.index, "hash_mismatch")
            continue
        entry.parsed = _canonical_body(entry.body)
        if entry.parsed is None:
            report.entry_failure(entry.index, "not_canonical")
            continue
        if tree is not None:
            size, root = tree
            if not verify_inclusion(leaf_hash(entry.claimed), entry.index, size, entry.proof, root):
                report.entry_failure(entry.index, "bad_inclusion")


def _read_complete_objects(report: _Report, value: Any) -> set[tuple[str, str]]:
    if value is None:
        return set()
    if not _is_list(value):
        report.bundle_failure("malformed")
        return set()
    objects: set[tuple[str, str]] = set()
    for item in value:
        if not _is_list(item) or len(item) != 2 or not all(isinstance(part, str) for part in item):
            report.bundle_failure("malformed")
            continue
        objects.add((item[0], item[1]))
    return objects


def _check_chains(report: _Report, entries: list[_Entry], complete: set[tuple[str, str]]) -> None:
    """Step 3, plus what holds for every chain whether or not the bundle has all of it."""
    by_object: dict[tuple[str, str], list[_Entry]] = {}
    for entry in entries:
        if entry.identity is not None:
            by_object.setdefault(entry.identity, []).append(entry)
    owner_of_hash = {entry.claimed: entry for entry in entries}

    for identity, chain in by_object.items():
        chain.sort(key=lambda e: e.index)
        predecessors_seen: set[bytes] = set()
        for position, entry in enumerate(chain):
            broken = entry.prev in predecessors_seen  # two entries claim one predecessor
            predecessors_seen.add(entry.prev)
            target = owner_of_hash.get(entry.prev)
            if (
                target is not None
                and target.identity is not None
                and (target.identity != identity or target.index >= entry.index)
            ):
                broken = True  # links to another object's entry, or forwards/to itself
            if identity in complete:
                expected = GENESIS if position == 0 else chain[position - 1].claimed
                broken = broken or entry.prev != expected
            if broken:
                report.entry_failure(entry.index, "chain_broken")

    for identity in complete:
        if identity not in by_object:
            report.bundle_failure("chain_broken")  # "complete" history with no entry at all


def _check_displays(report: _Report, entries: list[_Entry]) -> None:
    """``entry`` is for reading and never trusted; still, it must not misstate the body."""
    for entry in entries:
        shown = entry.has_display and entry.parsed is not None
        if shown and not _same_json(entry.display, entry.parsed):
            report.entry_failure(entry.index, "malformed")


def _check_consistency(
    report: _Report,
    value: Any,
    tree: tuple[int, bytes] | None,
    trusted: tuple[int, bytes] | None,
) -> None:
    """Step 4."""
    if value is None:
        if trusted is not None:
            size, root = trusted
            if tree is None or not verify_consistency(size, tree[0], [], root, tree[1]):
                report.bundle_failure("bad_consistency")
        return
    if not isinstance(value, dict):
        report.bundle_failure("malformed")
        return
    from_size, proof_list = value.get("from_size"), value.get("proof")
    try:
        from_root = _b64(value.get("from_root"), 32)
        if not _is_int(from_size) or from_size < 0 or not _is_list(proof_list):
            raise _Bad("consistency")
        proof = [_b64(node, 32) for node in proof_list]
    except _Bad:
        report.bundle_failure("malformed")
        return
    if trusted is not None and (from_size, from_root) != trusted:
        report.bundle_failure("bad_consistency")
        return
    if tree is None or not verify_consistency(from_size, tree[0], proof, from_root, tree[1]):
        report.bundle_failure("bad_consistency")


def _verify(
    bundle: Any,
    log_key: Any,
    witness_keys: Any,
    quorum: Any,
    trusted: Any,
    check_entry_field: bool,
) -> list[tuple[str, int | None]]:
    report = _Report()

    try:
        key: _Key | None = _parse_verifier_key(log_key, ALG_ED25519)
    except _Bad:
        key = None
        report.bundle_failure("malformed")
    witnesses: dict[tuple[str, bytes], _Key] = {}
    if not _is_list(witness_keys) or not _is_int(quorum) or quorum < 0:
        report.bundle_failure("malformed")
        witness_keys, quorum = (), 0
    for text in witness_keys:
        try:
            witness = _parse_verifier_key(text, ALG_COSIGNATURE_V1)
        except _Bad:
            report.bundle_failure("malformed")
            continue
        handle = (witness.name, witness.key_id)
        known = witnesses.get(handle)
        if (
            known is not None
            and known.public.public_bytes_raw() != witness.public.public_bytes_raw()
        ):
            report.bundle_failure("malformed")  # two given keys share a name and key id
        witnesses[handle] = witness
    if trusted is not None:
        if (
            not _is_list(trusted)
            or len(trusted) != 2
            or not _is_int(trusted[0])
            or trusted[0] < 0
            or not isinstance(trusted[1], bytes)
            or len(trusted[1]) != 32
        ):
            report.bundle_failure("malformed")
            trusted = None
        else:
            trusted = (trusted[0], bytes(trusted[1]))

    try:
        data = _load(bundle)
    except _Bad:
        report.bundle_failure("malformed")
        return report.result()
    if data.get("format") != BUNDLE_FORMAT:
        report.bundle_failure("malformed")

    tree = _check_note(report, data, key, witnesses, quorum)
    entries = _read_entries(report, data.get("entries"))
    _check_entries(report, entries, tree)
    _check_chains(report, entries, _read_complete_objects(report, data.get("complete_objects")))
    if check_entry_field:
        _check_displays(report, entries)
    _check_consistency(report, data.get("consistency"), tree, trusted)
    return report.result()


def verify_bundle(
    bundle: dict | bytes | str,
    log_key: str,
    witness_keys: Sequence[str] = (),
    quorum: int = 0,
    trusted: tuple[int, bytes] | None = None,
    *,
    check_entry_field: bool = True,
) -> list[tuple[str, int | None]]:
    """Verify an evidence bundle (§5); returns the failures, ``[]`` when it is valid.

    ``log_key`` is the log's verifier key ``<name>+<hex id>+<b64(0x01 ‖ key)>``;
    ``witness_keys`` are cosigner verifier keys (type 0x04), of which at least ``quorum``
    distinct ones must have cosigned; ``trusted`` is an earlier (size, raw root) the auditor
    trusts, which the bundle's ``consistency`` must start from. ``check_entry_field=False``
    ignores the display copy ``entry`` entirely.
    """
    try:
        return _verify(bundle, log_key, witness_keys, quorum, trusted, check_entry_field)
    except Exception:  # a verifier never crashes on its input
        return [("malformed", None)]
