#!/usr/bin/env python3
"""Verify PayFlow audit evidence offline, trusting nothing but the log's public key.

    python tools/verify_evidence.py BUNDLE --public-key KEY [--witness-key KEY ...]
        [--quorum N] [--trusted-checkpoint FILE] [--json]
    python tools/verify_evidence.py --segment FILE [FILE ...] --digest HEX
        --first-index N --last-index M [--json]

This is the auditors' own tool. It is standalone: the Python standard library (3.11+) and
``cryptography`` (Ed25519) only, nothing of PayFlow or Django, and it is written from
``docs/audit-formats.md`` alone (version 2), so it shares no code with the service whose
records it checks. Copy this one file to your machine.

Keys (``KEY``) are signed-note verifier keys, ``<name>+<hex key id>+<base64>`` (the log's:
algorithm 0x01; a witness's: 0x04, ``cosignature/v1``), given as the text itself, as
``@FILE`` or as the name of a file holding it.

An evidence bundle (``payflow-audit-bundle/2``, §5) is accepted when:

1. its checkpoint note carries a valid Ed25519 signature of the log key (a signature line
   of that key name and key id; lines of unknown keys are ignored, a line of a known key
   that does not verify rejects), the checkpoint body is a strict C2SP checkpoint whose
   origin is the key's name and the bundle's ``origin`` and whose size is ``tree_size``;
   with witness keys, every cosignature line of a given witness verifies
   (``cosignature/v1``, §4) and at least ``--quorum`` distinct given witnesses cosigned;
2. for every entry: ``hash = SHA-256("payflow-audit-entry/2" ‖ 0x00 ‖ prev_hash ‖ body)``;
   the body is canonical (§1.1: the 14 members, no JSON numbers, times in the fixed format,
   and re-encoding the parsed body gives the same bytes; ``ip``, ``user_agent``,
   ``reason`` and the actor's ``label`` may be objects, sealed personal data, which is
   checked as bytes and not opened); its ``entry`` (when present) is
   exactly the parsed body; the RFC 9162 inclusion proof of ``SHA-256(0x00 ‖ hash)`` at
   ``index`` leads to the checkpoint's root;
3. per object (``object_type``, ``object_id``), entries in index order: for an object in
   ``complete_objects`` the first starts from 32 zero bytes and each next one's
   ``prev_hash`` is the previous one's ``hash``; for every object, no entry links to another
   object's entry, to a later one, or past an entry of its object that the bundle holds, and
   no two entries claim the same predecessor;
4. with ``--trusted-checkpoint`` (a checkpoint note signed by the same key, which the
   auditor already trusts): the bundle's ``consistency`` proof starts from that checkpoint's
   size and root and verifies (RFC 9162 §2.1.4.2) up to the bundle's checkpoint (or the two
   checkpoints are the same). Without it, a ``consistency`` section is still checked, from
   the size and root it states.

An archive segment file (``payflow-audit-segment/2``, §7) is accepted when its SHA-256 is the
recorded ``--digest``, it decompresses (gzip), its header and lines are exactly the format
(keys sorted, no whitespace) for the recorded range ``--first-index..--last-index``, every
entry's hash and canonical body check, and the per-object chains inside the file link.
Several files may be given (copies of one segment), each is checked against the record.

Exit status: 0 verified; 1 the evidence does not verify (each problem is printed, named by
its kind: ``bad_signature``, ``too_few_cosignatures``, ``bad_checkpoint``,
``hash_mismatch``, ``not_canonical``, ``bad_inclusion``, ``chain_broken``,
``bad_consistency``, ``malformed`` for bundles, ``segment_altered`` for segment files);
2 the tool could not run (bad arguments, an unreadable file, an unusable key, a trusted
checkpoint that does not verify): one sentence on standard error. ``--json`` prints a
machine-readable report on standard output instead of the summary.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import gzip
import hashlib
import hmac
import io
import json
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

BUNDLE_FORMAT = "payflow-audit-bundle/2"
SEGMENT_FORMAT = "payflow-audit-segment/2"
ENTRY_TAG = b"payflow-audit-entry/2\x00"
GENESIS = bytes(32)
EMPTY_ROOT = hashlib.sha256(b"").digest()
ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
SIGNATURE_PREFIX = "\u2014 "  # EM DASH, space
BODY_MEMBERS = (
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
TEXT_MEMBERS = ("action", "event_type", "object_id", "object_type", "request_id", "task_id")
# Members that hold a person's data: a string, or an object (a sealed value, which the
# verifier does not open: it only checks that the bytes are canonical).
PERSONAL_MEMBERS = ("ip", "reason", "user_agent")
ACTOR_MEMBERS = frozenset({"id", "label", "type"})
SEGMENT_LINE_MEMBERS = frozenset({"body", "hash", "index", "prev_hash"})
MAX_FILE_BYTES = 1 << 30  # a bundle holds at most 10,000 entries; a segment 64 MiB
MAX_SEGMENT_TEXT = 1 << 31
MAX_SIGNATURE_LINES = 100
MAX_PROBLEMS_SHOWN = 50
PATH_LIMIT = 400  # file names given by the auditor are shown in full, or nearly
UINT64 = 1 << 64

HEX_HASH = re.compile(r"[0-9a-f]{64}")
HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
DECIMAL = re.compile(r"0|[1-9][0-9]*")
TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}\+00:00")
# Minimal escaping of §1.1: '"', '\\', the five short escapes, other controls as \u00xx.
_SHORT_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n"}
_SHORT_ESCAPES.update({0x0C: "\\f", 0x0D: "\\r"})
ESCAPES = {code: _SHORT_ESCAPES.get(code, f"\\u{code:04x}") for code in range(0x20)}
ESCAPES.update({0x22: '\\"', 0x5C: "\\\\"})


class UsageError(Exception):
    """The verification cannot be attempted (exit status 2); the message is one sentence."""


class Bad(Exception):
    """Internal: a value that does not have the form the format requires."""


def bad(message: str) -> NoReturn:
    raise Bad(message)


# --- output -------------------------------------------------------------------------------


def shown(value: Any, limit: int = 80) -> str:
    """Untrusted text made safe to print: control characters escaped, length capped."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode()
        for ch in text[: limit + 1]
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Problem:
    kind: str
    detail: str
    index: int | None = None
    file: str | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "detail": self.detail}
        if self.index is not None:
            data["index"] = self.index
        if self.file is not None:
            data["file"] = self.file
        return data

    def line(self) -> str:
        where = "" if self.index is None else f" (entry {self.index})"
        return f"{self.kind}{where}: {self.detail}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    failed_entries: set[int] = field(default_factory=set)

    def add(self, kind: str, detail: str, index: int | None = None) -> None:
        """Record a problem; an entry keeps only its first one (§5)."""
        if index is not None:
            if index in self.failed_entries:
                return
            self.failed_entries.add(index)
        elif any(p.kind == kind and p.detail == detail for p in self.problems):
            return
        self.problems.append(Problem(kind, detail, index))

    def failed(self, index: int) -> bool:
        return index in self.failed_entries


# --- strict decoders ------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    return type(value) is int


def b64(text: Any, what: str, length: int | None = None) -> bytes:
    """Standard base64 with padding, in its one canonical spelling."""
    if not isinstance(text, str):
        bad(f"{what} is not a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeError, binascii.Error, ValueError):
        bad(f"{what} is not valid base64")
    if base64.b64encode(raw).decode("ascii") != text:
        bad(f"{what} is not canonical base64")
    if length is not None and len(raw) != length:
        bad(f"{what} holds {len(raw)} bytes, not {length}")
    return raw


def hex_hash(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or not HEX_HASH.fullmatch(text):
        bad(f"{what} is not 64 lower-case hex digits")
    return bytes.fromhex(text)


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            bad(f"the member {shown(key, 40)!r} appears twice")
        result[key] = value
    return result


def _no_constant(name: str) -> NoReturn:
    bad(f"{name} is not JSON")


def _no_number(text: str) -> NoReturn:
    bad(f"the JSON number {shown(text, 20)} (the body holds integers as strings)")


def load_json(text: str) -> Any:
    """Strict RFC 8259 JSON: no duplicate members, no NaN/Infinity."""
    return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_no_constant)


# --- §1: canonical bytes, the entry hash -----------------------------------------------------


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append('"' + value.translate(ESCAPES) + '"')
    elif isinstance(value, list):
        out.append("[")
        for position, item in enumerate(value):
            if position:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        # UTF-8 byte order (equal to code point order; surrogates make it fail below).
        for position, key in enumerate(sorted(value, key=lambda k: k.encode("utf-8"))):
            if position:
                out.append(",")
            out.append('"' + key.translate(ESCAPES) + '":')
            _encode(value[key], out)
        out.append("}")
    else:
        bad(f"a {type(value).__name__} has no canonical encoding")


def canonical_bytes(body: dict[str, Any]) -> bytes:
    out: list[str] = []
    _encode(body, out)
    return "".join(out).encode("utf-8")


def parse_body(raw: bytes) -> Any:
    """The body's JSON, strictly: UTF-8, no duplicate members, no numbers."""
    text = raw.decode("utf-8")
    return json.loads(
        text,
        object_pairs_hook=_object_pairs,
        parse_constant=_no_constant,
        parse_int=_no_number,
        parse_float=_no_number,
    )


def check_members(body: Any) -> None:
    """What §1.1 requires beyond the byte form."""
    if not isinstance(body, dict):
        bad("the body is not a JSON object")
    if tuple(sorted(body)) != BODY_MEMBERS:
        missing = sorted(set(BODY_MEMBERS) - set(body))
        extra = sorted(set(body) - set(BODY_MEMBERS))
        bad(f"the body's members are wrong (missing {missing}, unknown {shown(extra)})")
    if body["v"] != "2":
        bad(f"the body's encoding version is {shown(body['v'])}, not '2'")
    for name in TEXT_MEMBERS:
        if not isinstance(body[name], str):
            bad(f"the body's {name} is not a string")
    for name in PERSONAL_MEMBERS:
        if not isinstance(body[name], str | dict):
            bad(f"the body's {name} is neither a string nor an object")
    for name in ("old", "new"):
        if body[name] is not None and not isinstance(body[name], dict):
            bad(f"the body's {name} is neither an object nor null")
    actor = body["actor"]
    if not isinstance(actor, dict) or set(actor) != ACTOR_MEMBERS:
        bad("the body's actor is not an object of id, label and type")
    if not isinstance(actor["id"], str) or not isinstance(actor["type"], str):
        bad("the body's actor id and type are not strings")
    if not isinstance(actor["label"], str | dict):
        bad("the body's actor label is neither a string nor an object")
    stamp = body["created_at"]
    if not isinstance(stamp, str) or not TIME.fullmatch(stamp):
        bad("the body's created_at is not YYYY-MM-DDTHH:MM:SS.ffffff+00:00")
    try:
        datetime.datetime.strptime(stamp[:26], "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        bad("the body's created_at is not a valid time")


def canonical_body(raw: bytes) -> dict[str, Any]:
    """The parsed body if ``raw`` is canonical (§1.1); ``Bad`` saying why not otherwise."""
    try:
        body = parse_body(raw)
    except UnicodeDecodeError:
        bad("the body is not UTF-8")
    except RecursionError:
        bad("the body is nested too deeply")
    except ValueError as exc:  # json.JSONDecodeError, too many digits
        bad(f"the body is not JSON ({shown(str(exc), 60)})")
    check_members(body)
    try:
        encoded = canonical_bytes(body)
    except UnicodeError:
        bad("the body holds a lone surrogate")
    except RecursionError:
        bad("the body is nested too deeply")
    if encoded != raw:
        at = next(
            (i for i, (a, b) in enumerate(zip(encoded, raw, strict=False)) if a != b),
            min(len(encoded), len(raw)),
        )
        bad(f"re-encoding the body per §1.1 gives other bytes (from byte {at})")
    return body


def identity_of(raw: bytes) -> tuple[str, str] | None:
    """(object_type, object_id) of a body that parses at all, canonical or not."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    object_type, object_id = body.get("object_type"), body.get("object_id")
    if isinstance(object_type, str) and isinstance(object_id, str):
        return object_type, object_id
    return None


def entry_hash(prev_hash: bytes, body: bytes) -> bytes:
    return hashlib.sha256(ENTRY_TAG + prev_hash + body).digest()


def same_json(a: Any, b: Any) -> bool:
    """Type-exact equality of JSON values (``true`` is not ``1``, ``"1"`` is not ``1``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a is b and (a is None or a is True or a is False)


# --- §2: RFC 6962 / 9162 Merkle proofs (the iterative algorithms of §2.1.3.2, §2.1.4.2) ---


def leaf_hash(digest: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + digest).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    if not 0 <= index < size or len(proof) > 64:
        return False
    fn, sn, result = index, size - 1, leaf
    for node in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            result = node_hash(node, result)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            result = node_hash(result, node)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(result, root)


def verify_consistency(
    first: int, second: int, proof: list[bytes], first_root: bytes, second_root: bytes
) -> bool:
    if not 0 <= first <= second or len(proof) > 128:
        return False
    if first == second:
        return not proof and hmac.compare_digest(first_root, second_root)
    if first == 0:  # every tree extends the empty one, whose root is SHA-256("")
        return not proof and hmac.compare_digest(first_root, EMPTY_ROOT)
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: the old root is a subtree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(node, fr), node_hash(node, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, node)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(fr, first_root) and hmac.compare_digest(sr, second_root)


# --- §3, §4: keys, signed notes, checkpoints, cosignatures -------------------------------


def _ed25519() -> tuple[Any, Any]:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise UsageError(
            "verifying signatures needs the 'cryptography' package (pip install cryptography)"
        ) from None
    return Ed25519PublicKey, InvalidSignature


@dataclass(frozen=True)
class NoteKey:
    name: str
    key_id: bytes
    public: bytes
    alg: int

    @property
    def label(self) -> str:
        return f"{self.name}+{self.key_id.hex()}"

    def verifies(self, signature: bytes, message: bytes) -> bool:
        public_key_class, invalid = _ed25519()
        try:
            public_key_class.from_public_bytes(self.public).verify(signature, message)
        except (invalid, ValueError, TypeError):
            return False
        return True


def key_id(name: str, alg: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public).digest()[:4]


def valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def parse_verifier_key(text: str, alg: int) -> NoteKey:
    """A verifier key ``<name>+<hex key id>+<b64(alg ‖ 32-byte key)>``; ``Bad`` otherwise."""
    parts = text.strip().split("+", 2)  # the name has no '+', the base64 may
    if len(parts) != 3:
        bad("a verifier key reads <name>+<hex key id>+<base64 key>")
    name, hex_id, encoded = parts
    if not valid_name(name):
        bad("the key name is empty or holds spaces")
    if not HEX_KEY_ID.fullmatch(hex_id):
        bad("the key id is not 8 lower-case hex digits")
    raw = b64(encoded, "the key", 33)
    if raw[0] != alg:
        kind = {ALG_ED25519: "an Ed25519 log key", ALG_COSIGNATURE_V1: "a cosignature/v1 key"}
        bad(f"it is not {kind.get(alg, 'the expected key type')} (algorithm byte {raw[0]:#04x})")
    if key_id(name, alg, raw[1:]) != bytes.fromhex(hex_id):
        bad("the key id does not match the name and the key")
    public_key_class, _ = _ed25519()
    try:
        public_key_class.from_public_bytes(raw[1:])
    except ValueError:
        bad("the key is not an Ed25519 public key")
    return NoteKey(name, bytes.fromhex(hex_id), raw[1:], alg)


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    blob: bytes  # after the key id


@dataclass(frozen=True)
class Note:
    body: str
    signatures: list[NoteSignature]


def parse_note(text: Any) -> Note:
    """A C2SP signed note: a body, an empty line, signature lines ``— <name> <b64>``."""
    if not isinstance(text, str):
        bad("the checkpoint note is not a string")
    if not text.endswith("\n"):
        bad("the note does not end with a newline")
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        bad("the note holds control characters")
    try:
        text.encode("utf-8")
    except UnicodeError:
        bad("the note is not valid Unicode text (a lone surrogate)")
    split = text.rfind("\n\n")
    if split < 0:
        bad("the note has no empty line before its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    lines = block.split("\n")[:-1]
    if not lines:
        bad("the note has no signature")
    if len(lines) > MAX_SIGNATURE_LINES:
        bad(f"the note has more than {MAX_SIGNATURE_LINES} signature lines")
    signatures = []
    for number, line in enumerate(lines, 1):
        if not line.startswith(SIGNATURE_PREFIX):
            bad(f"signature line {number} does not start with an em dash and a space")
        parts = line[len(SIGNATURE_PREFIX) :].split(" ")
        if len(parts) != 2 or not valid_name(parts[0]):
            bad(f"signature line {number} is not '— <key name> <base64>'")
        blob = b64(parts[1], f"signature line {number}")
        if len(blob) < 5:
            bad(f"signature line {number} is too short")
        signatures.append(NoteSignature(parts[0], blob[:4], blob[4:]))
    return Note(body, signatures)


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def parse_checkpoint(body: str) -> Checkpoint:
    """Exactly three lines: origin, size (decimal, no leading zeros), b64 of a 32-byte root."""
    lines = body.split("\n")
    if len(lines) != 4 or lines[3] != "":
        bad(f"the checkpoint body has {len(lines) - 1} lines, not 3 (no extension lines)")
    origin, size_text, root_text = lines[:3]
    if not origin:
        bad("the checkpoint's origin is empty")
    if not DECIMAL.fullmatch(size_text) or len(size_text) > 20 or int(size_text) >= UINT64:
        bad(f"the checkpoint's size {shown(size_text, 30)!r} is not a decimal number")
    root = b64(root_text, "the checkpoint's root", 32)
    size = int(size_text)
    if size == 0 and root != EMPTY_ROOT:
        bad("an empty tree's root is SHA-256 of nothing")
    return Checkpoint(origin, size, root)


def cosignature_message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def signed_checkpoint(note: Note, key: NoteKey) -> tuple[Checkpoint | None, str]:
    """(checkpoint, '') when the log key's signature verifies, else (checkpoint or None, why)."""
    mine = [s for s in note.signatures if (s.name, s.key_id) == (key.name, key.key_id)]
    if not mine:
        others = sorted({s.key_id.hex() for s in note.signatures if s.name == key.name})
        why = f"the note carries no signature of {key.label}"
        if others:
            why += f" (only of another key named {shown(key.name)}: key id {', '.join(others)})"
        return _checkpoint_or_none(note), why
    body = note.body.encode("utf-8")
    for signature in mine:
        if len(signature.blob) != 64 or not key.verifies(signature.blob, body):
            return _checkpoint_or_none(note), f"the signature of {key.label} does not verify"
    return _checkpoint_or_none(note), ""


def _checkpoint_or_none(note: Note) -> Checkpoint | None:
    try:
        return parse_checkpoint(note.body)
    except Bad:
        return None


def timestamp_text(timestamp: int) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return f"time {timestamp}"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- §5: the bundle --------------------------------------------------------------------------


@dataclass
class Entry:
    index: int
    prev: bytes
    claimed: bytes
    body: bytes
    proof: list[bytes]
    display: Any
    has_display: bool
    identity: tuple[str, str] | None = None


@dataclass
class BundleResult:
    report: Report
    origin: str | None = None
    checkpoint: Checkpoint | None = None
    entries: list[Entry] = field(default_factory=list)
    objects: set[tuple[str, str]] = field(default_factory=set)
    complete: set[tuple[str, str]] = field(default_factory=set)
    cosigned: dict[str, int] = field(default_factory=dict)
    quorum: int = 0
    witnesses_given: int = 0
    consistency: dict[str, Any] | None = None


def read_bundle(data: bytes) -> Any:
    if data.startswith(b"\xef\xbb\xbf"):
        bad("the bundle starts with a byte order mark")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        bad("the bundle is not UTF-8")
    try:
        return load_json(text)
    except RecursionError:
        bad("the bundle is nested too deeply")
    except ValueError as exc:
        bad(f"the bundle is not valid JSON ({shown(str(exc), 80)})")


def check_note(
    result: BundleResult,
    bundle: dict[str, Any],
    key: NoteKey,
    witnesses: list[NoteKey],
    quorum: int,
) -> None:
    """Step 1: the log's signature, the cosignatures, the checkpoint body."""
    report = result.report
    origin, tree_size = bundle.get("origin"), bundle.get("tree_size")
    if not isinstance(origin, str):
        report.add("malformed", "the bundle's origin is missing or not a string")
    else:
        result.origin = origin
    if not is_int(tree_size) or tree_size < 0:
        report.add("malformed", "the bundle's tree_size is missing or not an integer")
    try:
        note = parse_note(bundle.get("checkpoint"))
    except Bad as exc:
        report.add("bad_checkpoint", f"the checkpoint note does not parse: {exc}")
        report.add("bad_signature", "no signature of the log key can be checked")
        return
    checkpoint, why = signed_checkpoint(note, key)
    if why:
        report.add("bad_signature", why)
    if checkpoint is None:
        try:
            parse_checkpoint(note.body)
        except Bad as exc:
            report.add("bad_checkpoint", str(exc))
        return
    if checkpoint.origin != key.name:
        report.add(
            "bad_checkpoint",
            f"the checkpoint's origin {shown(checkpoint.origin)!r} is not the key's name "
            f"{shown(key.name)!r}",
        )
    if isinstance(origin, str) and checkpoint.origin != origin:
        report.add(
            "bad_checkpoint",
            f"the checkpoint's origin {shown(checkpoint.origin)!r} is not the bundle's "
            f"{shown(origin)!r}",
        )
    if is_int(tree_size) and checkpoint.size != tree_size:
        report.add(
            "bad_checkpoint",
            f"the checkpoint's size {checkpoint.size} is not the bundle's tree_size {tree_size}",
        )
    result.checkpoint = checkpoint

    body = note.body
    for witness in witnesses:
        lines = [s for s in note.signatures if (s.name, s.key_id) == (witness.name, witness.key_id)]
        good: int | None = None
        for signature in lines:
            if len(signature.blob) != 72:
                report.add("bad_signature", f"the cosignature of {witness.label} is malformed")
                good = None
                break
            (stamp,) = struct.unpack(">Q", signature.blob[:8])
            if not witness.verifies(signature.blob[8:], cosignature_message(body, stamp)):
                report.add("bad_signature", f"the cosignature of {witness.label} does not verify")
                good = None
                break
            good = stamp
        if good is not None:
            result.cosigned[witness.label] = good
    if quorum > 0 and len(result.cosigned) < quorum:
        report.add(
            "too_few_cosignatures",
            f"{len(result.cosigned)} of the given witnesses cosigned (a valid line of a "
            f"distinct key), the quorum is {quorum}",
        )


def read_entries(report: Report, raw_entries: Any) -> list[Entry]:
    if not isinstance(raw_entries, list):
        report.add("malformed", "the bundle's entries are missing or not a list")
        return []
    entries: list[Entry] = []
    seen: set[int] = set()
    for position, raw in enumerate(raw_entries):
        index = raw.get("index") if isinstance(raw, dict) else None
        if not is_int(index) or index < 0:
            report.add("malformed", f"entries[{position}] has no valid index")
            continue
        if index in seen:
            report.add("malformed", f"entries[{position}]: index {index} appears twice")
            continue
        seen.add(index)
        try:
            prev = hex_hash(raw.get("prev_hash"), "prev_hash")
            claimed = hex_hash(raw.get("hash"), "hash")
            body = b64(raw.get("body"), "body")
            proof_list = raw.get("inclusion")
            if not isinstance(proof_list, list):
                bad("inclusion is missing or not a list")
            proof = [b64(node, "an inclusion proof node", 32) for node in proof_list]
        except Bad as exc:
            report.add("malformed", str(exc), index)
            continue
        entries.append(Entry(index, prev, claimed, body, proof, raw.get("entry"), "entry" in raw))
    entries.sort(key=lambda entry: entry.index)
    return entries


def check_entries(result: BundleResult) -> None:
    """Step 2: hash, canonical body (and its display copy), inclusion."""
    report, checkpoint = result.report, result.checkpoint
    for entry in result.entries:
        entry.identity = identity_of(entry.body)
        if entry.identity is not None:
            result.objects.add(entry.identity)
        if not hmac.compare_digest(entry_hash(entry.prev, entry.body), entry.claimed):
            report.add(
                "hash_mismatch",
                "hash is not SHA-256(payflow-audit-entry/2 ‖ 0x00 ‖ prev_hash ‖ body)",
                entry.index,
            )
            continue
        try:
            parsed = canonical_body(entry.body)
        except Bad as exc:
            report.add("not_canonical", str(exc), entry.index)
            continue
        if entry.has_display and not same_json(entry.display, parsed):
            report.add("malformed", "its 'entry' is not the parsed body", entry.index)
            continue
        if checkpoint is not None and not verify_inclusion(
            entry.index, checkpoint.size, leaf_hash(entry.claimed), entry.proof, checkpoint.root
        ):
            report.add(
                "bad_inclusion",
                f"the inclusion proof of leaf {entry.index} does not lead to the root of the "
                f"checkpoint of size {checkpoint.size}",
                entry.index,
            )


def read_complete_objects(report: Report, value: Any) -> set[tuple[str, str]]:
    if value is None:
        return set()
    if not isinstance(value, list):
        report.add("malformed", "complete_objects is not a list")
        return set()
    complete: set[tuple[str, str]] = set()
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(part, str) for part in item)
        ):
            report.add("malformed", "complete_objects holds an item that is not [type, id]")
            continue
        complete.add((item[0], item[1]))
    return complete


def check_chains(result: BundleResult, complete: set[tuple[str, str]]) -> None:
    """Step 3, and what holds of every object's chain even when the bundle has a part."""
    report = result.report
    chains: dict[tuple[str, str], list[Entry]] = {}
    for entry in result.entries:
        if entry.identity is not None:
            chains.setdefault(entry.identity, []).append(entry)
    by_hash = {entry.claimed: entry for entry in result.entries}
    for identity, chain in chains.items():
        claimed_predecessors: set[bytes] = set()
        for position, entry in enumerate(chain):
            name = f"{shown(identity[0], 40)} {shown(identity[1], 40)}"
            why = ""
            target = by_hash.get(entry.prev)
            if target is not None and target.identity is None:
                why = f"it links to entry {target.index}, whose body does not parse"
            elif entry.prev in claimed_predecessors:
                why = "two entries of the object claim the same previous entry (a fork)"
            elif target is not None and target.identity != identity:
                why = f"its prev_hash is the hash of entry {target.index}, of another object"
            elif target is not None and target.index >= entry.index:
                why = f"its prev_hash is the hash of entry {target.index}, not an earlier one"
            elif target is not None and position and target is not chain[position - 1]:
                why = (
                    f"it links to entry {target.index}, skipping entry "
                    f"{chain[position - 1].index} of the same object"
                )
            elif position and entry.prev == GENESIS:
                why = f"it starts a new chain after entry {chain[position - 1].index} of {name}"
            elif identity in complete:
                if position == 0 and entry.prev != GENESIS:
                    why = f"the first entry of {name}, complete from genesis, has a prev_hash"
                elif position and entry.prev != chain[position - 1].claimed:
                    why = (
                        f"its prev_hash is not the hash of entry {chain[position - 1].index}, "
                        f"the previous entry of {name}, complete in the bundle"
                    )
            claimed_predecessors.add(entry.prev)
            if why:
                report.add("chain_broken", why, entry.index)
    for identity in sorted(complete - set(chains)):
        report.add(
            "chain_broken",
            f"complete_objects names {shown(identity[0], 40)} {shown(identity[1], 40)}, "
            "of which the bundle holds no entry",
        )
    result.complete = complete & set(chains)


def check_consistency(
    result: BundleResult, value: Any, trusted: Checkpoint | None, trusted_name: str
) -> None:
    """Step 4."""
    report, checkpoint = result.report, result.checkpoint
    if value is None:
        if trusted is None:
            return
        if checkpoint is None:
            report.add("bad_consistency", "no checkpoint to prove consistent with the trusted one")
        elif (trusted.size, trusted.root) == (checkpoint.size, checkpoint.root):
            result.consistency = {"from_size": trusted.size, "trusted": True, "same": True}
        else:
            report.add(
                "bad_consistency",
                f"the bundle holds no consistency proof from the trusted checkpoint of size "
                f"{trusted.size} to its checkpoint of size {checkpoint.size}",
            )
        return
    if not isinstance(value, dict):
        report.add("malformed", "consistency is not an object")
        return
    try:
        from_size = value.get("from_size")
        if not is_int(from_size) or from_size < 0:
            bad("consistency.from_size is not an integer")
        from_root = b64(value.get("from_root"), "consistency.from_root", 32)
        proof_list = value.get("proof")
        if not isinstance(proof_list, list):
            bad("consistency.proof is not a list")
        proof = [b64(node, "a consistency proof node", 32) for node in proof_list]
    except Bad as exc:
        report.add("malformed", str(exc))
        return
    if trusted is not None and (from_size, from_root) != (trusted.size, trusted.root):
        report.add(
            "bad_consistency",
            f"the consistency proof starts from size {from_size}, not from the trusted "
            f"checkpoint (size {trusted.size}, {trusted_name})"
            + ("" if from_size != trusted.size else ": the roots differ"),
        )
        return
    if checkpoint is None:
        report.add("bad_consistency", "no checkpoint to prove the consistency proof against")
        return
    if not verify_consistency(from_size, checkpoint.size, proof, from_root, checkpoint.root):
        report.add(
            "bad_consistency",
            f"the consistency proof from size {from_size} to {checkpoint.size} does not verify",
        )
        return
    result.consistency = {"from_size": from_size, "trusted": trusted is not None, "same": False}


def verify_bundle(
    data: bytes,
    key: NoteKey,
    witnesses: list[NoteKey],
    quorum: int,
    trusted: Checkpoint | None,
    trusted_name: str = "",
) -> BundleResult:
    result = BundleResult(Report(), quorum=quorum, witnesses_given=len(witnesses))
    report = result.report
    try:
        bundle = read_bundle(data)
    except Bad as exc:
        report.add("malformed", str(exc))
        return result
    if not isinstance(bundle, dict):
        report.add("malformed", "the bundle is not a JSON object")
        return result
    if bundle.get("format") != BUNDLE_FORMAT:
        report.add(
            "malformed",
            f"the bundle's format is {shown(bundle.get('format'))}, not {BUNDLE_FORMAT}",
        )
        return result
    check_note(result, bundle, key, witnesses, quorum)
    result.entries = read_entries(report, bundle.get("entries"))
    check_entries(result)
    check_chains(result, read_complete_objects(report, bundle.get("complete_objects")))
    check_consistency(result, bundle.get("consistency"), trusted, trusted_name)
    return result


# --- §7: archive segment files ---------------------------------------------------------------


@dataclass
class SegmentResult:
    file: str
    problems: list[Problem] = field(default_factory=list)
    entries: int = 0
    objects: int = 0
    more: int = 0

    def add(self, detail: str, index: int | None = None) -> None:
        if len(self.problems) >= MAX_PROBLEMS_SHOWN:
            self.more += 1
            return
        self.problems.append(Problem("segment_altered", detail, index, self.file))


def decompress(data: bytes) -> bytes:
    """The gzip file's contents (bounded), ``Bad`` for anything that is not a gzip file."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as stream:
            text = stream.read(MAX_SEGMENT_TEXT + 1)
    except Exception as exc:  # any corruption of hostile bytes: BadGzipFile, zlib.error, …
        bad(f"it does not decompress as gzip ({type(exc).__name__}: {shown(str(exc), 60)})")
    if len(text) > MAX_SEGMENT_TEXT:
        bad("it decompresses to more than 2 GiB")
    return text


def segment_line(body: str, digest: str, index: int, prev: str) -> str:
    return json.dumps(
        {"body": body, "hash": digest, "index": index, "prev_hash": prev},
        sort_keys=True,
        separators=(",", ":"),
    )


def verify_segment(path: str, data: bytes, digest: str, first: int, last: int) -> SegmentResult:
    result = SegmentResult(path)
    actual = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(actual, digest):
        result.add(f"its SHA-256 is {actual}, not the recorded {digest}")
    try:
        text = decompress(data)
        lines = text.decode("utf-8").split("\n")
    except Bad as exc:
        result.add(str(exc))
        return result
    except UnicodeDecodeError:
        result.add("its contents are not UTF-8")
        return result
    if lines[-1] != "":
        result.add("it does not end with a complete line")
    lines.pop()
    count = last - first + 1
    header = json.dumps(
        {"count": count, "first_index": first, "format": SEGMENT_FORMAT, "last_index": last},
        sort_keys=True,
        separators=(",", ":"),
    )
    if not lines:
        result.add("it is empty")
        return result
    if lines[0] != header:
        result.add(f"its header {shown(lines[0], 120)!r} is not {header}")
    if len(lines) - 1 != count:
        result.add(f"it holds {len(lines) - 1} entry lines, the recorded range {count}")
    tips: dict[tuple[str, str], bytes] = {}
    hashes: dict[bytes, int] = {}
    starts: list[tuple[int, bytes]] = []
    for position, line in enumerate(lines[1:]):
        expected = first + position
        if expected > last:
            result.add(f"line {position + 2} is beyond the recorded last index {last}")
            break
        try:
            item = load_json(line)
            if not isinstance(item, dict) or set(item) != SEGMENT_LINE_MEMBERS:
                bad("it is not an object of body, hash, index and prev_hash")
            if not is_int(item["index"]) or item["index"] != expected:
                bad(f"its index is {shown(item['index'], 30)}, not {expected}")
            prev = hex_hash(item["prev_hash"], "prev_hash")
            claimed = hex_hash(item["hash"], "hash")
            body = b64(item["body"], "body")
            if line != segment_line(item["body"], item["hash"], expected, item["prev_hash"]):
                bad("it is not written in the format's form (keys sorted, no whitespace)")
        except Bad as exc:
            result.add(f"the line of index {expected}: {exc}", expected)
            continue
        except (ValueError, RecursionError) as exc:
            why = shown(str(exc), 60)
            result.add(f"the line of index {expected} is not JSON ({why})", expected)
            continue
        result.entries += 1
        if not hmac.compare_digest(entry_hash(prev, body), claimed):
            result.add(f"index {expected}: its hash does not match its body", expected)
            continue
        try:
            parsed = canonical_body(body)
        except Bad as exc:
            result.add(f"index {expected}: its body is not canonical: {exc}", expected)
            continue
        identity = (parsed["object_type"], parsed["object_id"])
        if identity in tips:
            if prev != tips[identity]:
                result.add(
                    f"index {expected}: its prev_hash is not the hash of its object's previous "
                    "entry in the file (chain_broken)",
                    expected,
                )
        else:
            starts.append((expected, prev))
        tips[identity] = claimed
        hashes[claimed] = expected
    for index, prev in starts:
        if prev in hashes:
            result.add(
                f"index {index}: the first entry of its object in the file links to index "
                f"{hashes[prev]}, of another object (chain_broken)",
                index,
            )
    result.objects = len(tips)
    return result


# --- command line -----------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(
        prog="verify_evidence.py",
        description="Verify a PayFlow evidence bundle (payflow-audit-bundle/2) or archive "
        "segment files (payflow-audit-segment/2) offline.",
    )
    parser.add_argument("bundle", nargs="?", metavar="BUNDLE", help="the evidence bundle")
    parser.add_argument("--public-key", metavar="KEY", help="the log's verifier key")
    parser.add_argument(
        "--witness-key", metavar="KEY", action="append", default=[], help="a witness's key"
    )
    parser.add_argument(
        "--quorum",
        metavar="N",
        type=int,
        help="cosignatures of distinct given witnesses required (default: 1 with witness "
        "keys, else 0)",
    )
    parser.add_argument(
        "--trusted-checkpoint", metavar="FILE", help="a checkpoint note the auditor trusts"
    )
    parser.add_argument("--segment", metavar="FILE", nargs="+", help="segment file(s)")
    parser.add_argument("--digest", metavar="HEX", help="the segment's recorded SHA-256")
    parser.add_argument("--first-index", metavar="N", type=int, help="its first leaf index")
    parser.add_argument("--last-index", metavar="M", type=int, help="its last leaf index")
    parser.add_argument("--json", action="store_true", help="print a machine-readable report")
    args = parser.parse_args(argv)
    if args.segment:
        if args.bundle is not None:
            parser.error("give a bundle or --segment files, not both")
        for name in ("public_key", "trusted_checkpoint", "quorum"):
            if getattr(args, name) is not None:
                parser.error(f"--{name.replace('_', '-')} is for bundles, not segment files")
        if args.witness_key:
            parser.error("--witness-key is for bundles, not segment files")
        if args.digest is None or args.first_index is None or args.last_index is None:
            parser.error("--segment needs --digest, --first-index and --last-index")
        if not HEX_HASH.fullmatch(args.digest.strip().lower()):
            parser.error("--digest is not 64 hex digits")
        if not 0 <= args.first_index <= args.last_index:
            parser.error("--first-index and --last-index must satisfy 0 <= first <= last")
        args.digest = args.digest.strip().lower()
        return args
    if args.bundle is None:
        parser.error("give a BUNDLE file (or --segment files)")
    if args.public_key is None:
        parser.error("--public-key is required to verify a bundle")
    for name in ("digest", "first_index", "last_index"):
        if getattr(args, name) is not None:
            parser.error(f"--{name.replace('_', '-')} is for --segment files")
    if args.quorum is None:
        args.quorum = 1 if args.witness_key else 0
    if args.quorum < 0:
        parser.error("--quorum must not be negative")
    return args


def read_file(path: str, what: str) -> bytes:
    try:
        target = Path(path)
        if target.is_dir():
            raise UsageError(f"the {what} {shown(path, PATH_LIMIT)} is a directory, not a file")
        with target.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except UsageError:
        raise
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(
            f"cannot read the {what} {shown(path, PATH_LIMIT)}: {shown(reason)}"
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"the {what} {shown(path, PATH_LIMIT)} is larger than 1 GiB")
    return data


def load_key(argument: str, alg: int, option: str) -> NoteKey:
    """A key given as its text, as ``@FILE``, or as the name of a file holding it."""
    if argument.startswith("@"):
        text = _key_file(argument[1:], option)
    else:
        try:
            return parse_verifier_key(argument, alg)
        except Bad as exc:
            if not Path(argument).is_file():
                raise UsageError(
                    f"{option} {shown(argument)} is neither a usable verifier key ({exc}) "
                    "nor a readable file holding one"
                ) from None
        text = _key_file(argument, option)
    try:
        return parse_verifier_key(text, alg)
    except Bad as exc:
        raise UsageError(f"the key in {shown(argument)} ({option}) is not usable: {exc}") from None


def _key_file(path: str, option: str) -> str:
    data = read_file(path, f"key file of {option}")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError(
            f"the key file {shown(path, PATH_LIMIT)} of {option} is not UTF-8 text"
        ) from None


def load_trusted(path: str, key: NoteKey) -> Checkpoint:
    data = read_file(path, "trusted checkpoint")
    try:
        # As an editor saved it or a browser pasted it: CRLF, the last line break missing.
        text = data.decode("utf-8").replace("\r\n", "\n").rstrip("\n") + "\n"
    except UnicodeDecodeError:
        raise UsageError(
            f"the trusted checkpoint {shown(path, PATH_LIMIT)} is not UTF-8 text"
        ) from None
    try:
        note = parse_note(text)
    except Bad as exc:
        raise UsageError(
            f"the trusted checkpoint {shown(path, PATH_LIMIT)} is not a signed checkpoint note: "
            f"{exc}"
        ) from None
    checkpoint, why = signed_checkpoint(note, key)
    if why:
        raise UsageError(
            f"the trusted checkpoint {shown(path, PATH_LIMIT)} does not verify with the public "
            f"key: {why}"
        )
    if checkpoint is None:
        raise UsageError(
            f"the trusted checkpoint {shown(path, PATH_LIMIT)} is not a valid checkpoint"
        )
    if checkpoint.origin != key.name:
        raise UsageError(
            f"the trusted checkpoint {shown(path, PATH_LIMIT)} is of {shown(checkpoint.origin)}, "
            f"not of {shown(key.name)}"
        )
    return checkpoint


def run_bundle(args: argparse.Namespace) -> int:
    key = load_key(args.public_key, ALG_ED25519, "--public-key")
    witnesses: dict[tuple[str, bytes], NoteKey] = {}
    for text in args.witness_key:
        witness = load_key(text, ALG_COSIGNATURE_V1, "--witness-key")
        known = witnesses.get((witness.name, witness.key_id))
        if known is not None and known.public != witness.public:
            raise UsageError(f"two --witness-key share the name and key id {witness.label}")
        witnesses[(witness.name, witness.key_id)] = witness
    if args.quorum > len(witnesses):
        raise UsageError(
            f"--quorum {args.quorum} cannot be met with {len(witnesses)} distinct --witness-key"
        )
    trusted = None
    if args.trusted_checkpoint is not None:
        trusted = load_trusted(args.trusted_checkpoint, key)
    data = read_file(args.bundle, "bundle")
    try:
        result = verify_bundle(
            data, key, list(witnesses.values()), args.quorum, trusted, args.trusted_checkpoint
        )
    except RecursionError:
        result = BundleResult(Report())
        result.report.add("malformed", "the bundle is nested too deeply")
    if args.json:
        emit(bundle_json(args, key, result, trusted))
    else:
        emit(bundle_summary(args, key, result, trusted))
    return 1 if result.report.problems else 0


def bundle_json(
    args: argparse.Namespace, key: NoteKey, result: BundleResult, trusted: Checkpoint | None
) -> str:
    checkpoint = result.checkpoint
    report = {
        "verified": not result.report.problems,
        "kind": "bundle",
        "file": args.bundle,
        "format": BUNDLE_FORMAT,
        "log_key": key.label,
        "origin": result.origin,
        "tree_size": None if checkpoint is None else checkpoint.size,
        "root": None if checkpoint is None else base64.b64encode(checkpoint.root).decode(),
        "entries": len(result.entries),
        "indexes": [e.index for e in result.entries],
        "objects": [list(identity) for identity in sorted(result.objects)],
        "complete_objects": [list(identity) for identity in sorted(result.complete)],
        "witnesses": [
            {"name": name, "timestamp": stamp} for name, stamp in sorted(result.cosigned.items())
        ],
        "quorum": result.quorum,
        "consistency": None
        if result.consistency is None
        else {
            "from_size": result.consistency["from_size"],
            "to_size": None if checkpoint is None else checkpoint.size,
            "from_trusted_checkpoint": result.consistency["trusted"],
        },
        "trusted_checkpoint": None
        if trusted is None
        else {"size": trusted.size, "root": base64.b64encode(trusted.root).decode()},
        "problems": [problem.as_json() for problem in result.report.problems],
    }
    return json.dumps(report, indent=2, ensure_ascii=False)


def bundle_summary(
    args: argparse.Namespace, key: NoteKey, result: BundleResult, trusted: Checkpoint | None
) -> str:
    problems = result.report.problems
    if problems:
        lines = [
            f"REJECTED evidence bundle {shown(args.bundle, PATH_LIMIT)}: {len(problems)} "
            f"problem{'s' if len(problems) != 1 else ''}"
        ]
        lines += [f"  {problem.line()}" for problem in problems[:MAX_PROBLEMS_SHOWN]]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"  … and {len(problems) - MAX_PROBLEMS_SHOWN} more (see --json)")
        return "\n".join(lines)
    checkpoint = result.checkpoint
    if checkpoint is None:  # not reached: without problems the checkpoint verified
        return f"REJECTED evidence bundle {shown(args.bundle, PATH_LIMIT)}: no checkpoint"
    indexes = [entry.index for entry in result.entries]
    span = f" (leaf indexes {indexes[0]}..{indexes[-1]})" if indexes else ""
    lines = [
        f"VERIFIED evidence bundle {shown(args.bundle, PATH_LIMIT)} ({BUNDLE_FORMAT})",
        f"  log:         {shown(checkpoint.origin)}, signed checkpoint of tree size "
        f"{checkpoint.size}, root {base64.b64encode(checkpoint.root).decode()}",
        f"  signed by:   {key.label}",
        f"  entries:     {len(indexes)}{span}, each hash, canonical body and inclusion proof "
        "checked",
        f"  objects:     {len(result.objects)}, chains linked within the bundle; complete from "
        f"genesis: {len(result.complete)}",
    ]
    lines += [
        f"                 {shown(object_type, 40)} {shown(object_id, 40)}"
        for object_type, object_id in sorted(result.complete)[:10]
    ]
    if result.witnesses_given:
        cosigned = ", ".join(
            f"{shown(name)} ({timestamp_text(stamp)})"
            for name, stamp in sorted(result.cosigned.items())
        )
        lines.append(
            f"  witnesses:   {len(result.cosigned)} of {result.witnesses_given} given cosigned"
            f" (quorum {result.quorum}){': ' + cosigned if cosigned else ''}"
        )
    else:
        lines.append("  witnesses:   none given (cosignatures not checked)")
    if result.consistency is None:
        lines.append("  consistency: not checked (no --trusted-checkpoint, no proof in the bundle)")
    elif result.consistency["same"]:
        lines.append(f"  consistency: the checkpoint is the trusted one (size {checkpoint.size})")
    else:
        source = (
            f"the trusted checkpoint {shown(args.trusted_checkpoint, PATH_LIMIT)}"
            if result.consistency["trusted"]
            else "the size and root the bundle states (give --trusted-checkpoint to anchor it)"
        )
        lines.append(
            f"  consistency: from size {result.consistency['from_size']} to {checkpoint.size},"
            f" from {source}"
        )
    return "\n".join(lines)


def run_segments(args: argparse.Namespace) -> int:
    results = []
    for path in args.segment:
        data = read_file(path, "segment file")
        results.append(verify_segment(path, data, args.digest, args.first_index, args.last_index))
    failed = any(result.problems for result in results)
    if args.json:
        emit(
            json.dumps(
                {
                    "verified": not failed,
                    "kind": "segment",
                    "format": SEGMENT_FORMAT,
                    "digest": args.digest,
                    "first_index": args.first_index,
                    "last_index": args.last_index,
                    "files": [
                        {
                            "file": result.file,
                            "verified": not result.problems,
                            "entries": result.entries,
                            "objects": result.objects,
                            "problems": [p.as_json() for p in result.problems],
                            "more_problems": result.more,
                        }
                        for result in results
                    ],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return 1 if failed else 0
    lines = []
    for result in results:
        if result.problems:
            total = len(result.problems) + result.more
            lines.append(
                f"REJECTED segment file {shown(result.file, PATH_LIMIT)}: {total} problem(s)"
            )
            lines += [f"  {problem.line()}" for problem in result.problems]
            if result.more:
                lines.append(f"  … and {result.more} more")
        else:
            lines.append(
                f"VERIFIED segment file {shown(result.file, PATH_LIMIT)} ({SEGMENT_FORMAT}): "
                f"leaf indexes {args.first_index}..{args.last_index}, {result.entries} entries of "
                f"{result.objects} objects, SHA-256 {args.digest}; every hash, canonical body "
                "and chain link within the file checked"
            )
    emit("\n".join(lines))
    return 1 if failed else 0


def emit(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        args = parse_arguments(argv)
        return run_segments(args) if args.segment else run_bundle(args)
    except UsageError as exc:
        sys.stderr.write(f"verify_evidence: {exc}\n")
        return 2
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a verifier never shows a traceback, whatever its input
        sys.stderr.write(
            f"verify_evidence: internal error ({type(exc).__name__}); the input could not be "
            "verified, please report this\n"
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
