"""Transparency-log primitives (``docs/audit-formats.md`` §2-§4), pure Python.

- keys in the signed-note formats (``Signer``/``Verifier`` for the log, ``WitnessSigner``/
  ``WitnessVerifier`` for cosignatures);
- checkpoints (C2SP ``tlog-checkpoint``) in signed notes (C2SP ``signed-note``), and
  ``cosignature/v1`` (C2SP ``tlog-cosignature``);
- the tree as the sequencer stores it: only *perfect* subtrees, node ``(level, index)``
  the hash of leaves ``[index·2^level, (index+1)·2^level)``. ``CompactRange`` appends
  leaves and yields the nodes they complete; ``inclusion_proof``/``consistency_proof``/
  ``root_at`` compute RFC 9162 proofs from O(log n) stored nodes fetched in one call.

Imports no Django (the offline tools and the settings use it too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.merkle import EMPTY_ROOT, leaf_hash, node_hash

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
EM_DASH = "\u2014"
MAX_SIGNATURES = 100

Getter = Callable[[list[tuple[int, int]]], dict[tuple[int, int], bytes]]


class KeyFormatError(ValueError):
    """A key that is not in the signed-note key format (or whose key id is wrong)."""


class NoteError(ValueError):
    """A note or checkpoint that does not parse or does not verify."""


# --- keys -------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not name or any(ch.isspace() for ch in name) or "+" in name:
        raise KeyFormatError(f"a key name must be non-empty, without spaces or '+': {name!r}")
    return name


def key_id(name: str, alg: int, public: bytes) -> bytes:
    """``SHA-256(name ‖ 0x0A ‖ alg ‖ public key)[0:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public).digest()[:4]


def _public_bytes(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _decode_key(text: str, alg: int, *, private: bool) -> tuple[str, bytes, bytes]:
    # The base64 part may itself hold '+': split only at the separators before it.
    parts = text.strip().split("+", 4 if private else 2)
    if private:
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise KeyFormatError("a signer key reads PRIVATE+KEY+<name>+<hex id>+<base64 key>")
        parts = parts[2:]
    if len(parts) != 3:
        raise KeyFormatError("a verifier key reads <name>+<hex id>+<base64 key>")
    name, hex_id, encoded = parts
    _check_name(name)
    try:
        raw = base64.b64decode(encoded, validate=True)
        wanted_id = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError):
        raise KeyFormatError("the key id or key is not valid hex/base64") from None
    if len(raw) != 33 or raw[0] != alg or len(wanted_id) != 4:
        raise KeyFormatError(f"not an algorithm-{alg:#04x} Ed25519 key")
    return name, wanted_id, raw[1:]


class Verifier:
    """The log's public key, ``<name>+<hex key id>+<b64(0x01 ‖ key)>``."""

    alg = ALG_ED25519

    def __init__(self, text: str) -> None:
        self.name, self.key_id, public = _decode_key(text, self.alg, private=False)
        if key_id(self.name, self.alg, public) != self.key_id:
            raise KeyFormatError("the key id does not match the name and key")
        self.public = public
        self.key = Ed25519PublicKey.from_public_bytes(public)
        self.text = text.strip()

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Signer:
    """The log's private key, ``PRIVATE+KEY+<name>+<hex key id>+<b64(0x01 ‖ seed)>``."""

    alg = ALG_ED25519

    def __init__(self, text: str) -> None:
        self.name, wanted_id, seed = _decode_key(text, self.alg, private=True)
        if len(seed) != 32:
            raise KeyFormatError("an Ed25519 seed has 32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = _public_bytes(self._key)
        self.key_id = key_id(self.name, self.alg, self.public)
        if self.key_id != wanted_id:
            raise KeyFormatError("the key id does not match the name and key")

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def verifier_key(self) -> str:
        encoded = base64.b64encode(bytes([self.alg]) + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"


class WitnessVerifier(Verifier):
    """A witness's public key (algorithm 0x04, ``cosignature/v1``)."""

    alg = ALG_COSIGNATURE_V1


class WitnessSigner(Signer):
    """A witness's private key (algorithm 0x04, ``cosignature/v1``)."""

    alg = ALG_COSIGNATURE_V1


def _generate(name: str, alg: int) -> str:
    _check_name(name)
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    identifier = key_id(name, alg, _public_bytes(private))
    encoded = base64.b64encode(bytes([alg]) + seed).decode()
    return f"PRIVATE+KEY+{name}+{identifier.hex()}+{encoded}"


def generate_signer_key(name: str) -> str:
    """A new log signer key named ``name`` (the log's origin)."""
    return _generate(name, ALG_ED25519)


def generate_witness_key(name: str) -> str:
    """A new witness signer key named ``name``."""
    return _generate(name, ALG_COSIGNATURE_V1)


# --- checkpoints and notes ------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The three lines of a C2SP checkpoint (each ending in a newline)."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def parse_checkpoint(body: str) -> Checkpoint:
    """Strict: exactly origin, size (decimal, no leading zeros) and a 32-byte root."""
    lines = body.split("\n")
    if len(lines) != 4 or lines[3] != "":
        raise NoteError("a checkpoint has exactly three lines")
    origin, size_text, root_text = lines[:3]
    if not origin or not size_text.isdigit() or (size_text != "0" and size_text[0] == "0"):
        raise NoteError("the checkpoint's origin or size is malformed")
    if not size_text.isascii() or len(size_text) > 20:
        raise NoteError("the checkpoint's size is malformed")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise NoteError("the checkpoint's root is not base64") from None
    if len(root) != 32 or base64.b64encode(root).decode() != root_text:
        raise NoteError("the checkpoint's root is not a base64 SHA-256 hash")
    return Checkpoint(origin, int(size_text), root)


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    raw: bytes  # after the key id
    line: str


@dataclass(frozen=True)
class Note:
    body: str
    signatures: list[Signature] = field(default_factory=list)


def sign_note(body: str, signer: Signer) -> str:
    """The signed note: the body, an empty line, the signer's signature line."""
    if not body.endswith("\n") or "\n\n" in body:
        raise NoteError("a note body ends in one newline and has no empty line")
    signature = signer.sign(body.encode())
    encoded = base64.b64encode(signer.key_id + signature).decode()
    return f"{body}\n{EM_DASH} {signer.name} {encoded}\n"


def parse_note(text: str) -> Note:
    """Split a signed note into its body and signature lines (at the last empty line)."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise NoteError("a note ends with a newline")
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError("a note has an empty line before its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise NoteError("a note holds no control characters")
    signatures = []
    for line in block.split("\n")[:-1]:
        prefix = EM_DASH + " "
        if not line.startswith(prefix):
            raise NoteError("a signature line starts with an em dash and a space")
        parts = line[len(prefix) :].split(" ")
        if len(parts) != 2:
            raise NoteError("a signature line is '— <name> <base64>'")
        name, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise NoteError("a signature is not base64") from None
        if len(raw) < 5 or not name:
            raise NoteError("a signature is too short")
        signatures.append(Signature(name, raw[:4], raw[4:], line))
    if not signatures:
        raise NoteError("a note has at least one signature")
    if len(signatures) > MAX_SIGNATURES:
        raise NoteError("too many signatures")
    return Note(body, signatures)


def verify_note(text: str, verifier: Verifier) -> Checkpoint:
    """The checkpoint of a note signed by ``verifier``'s key; ``NoteError`` otherwise. Lines
    of other keys are ignored; a line of this key (name and id) that fails rejects."""
    note = parse_note(text)
    mine = [s for s in note.signatures if s.name == verifier.name and s.key_id == verifier.key_id]
    if not mine:
        raise NoteError(f"not signed by {verifier.name}")
    for signature in mine:
        if len(signature.raw) != 64 or not verifier.verify(signature.raw, note.body.encode()):
            raise NoteError(f"the signature of {verifier.name} does not verify")
    checkpoint = parse_checkpoint(note.body)
    if checkpoint.origin != verifier.name:
        raise NoteError(f"the checkpoint's origin is not {verifier.name}")
    return checkpoint


def cosignature_message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def add_cosignature(note_text: str, witness: WitnessSigner, timestamp: int) -> str:
    """The note with ``witness``'s ``cosignature/v1`` line appended."""
    note = parse_note(note_text)
    signature = witness.sign(cosignature_message(note.body, timestamp))
    encoded = base64.b64encode(witness.key_id + struct.pack(">Q", timestamp) + signature).decode()
    return f"{note_text}{EM_DASH} {witness.name} {encoded}\n"


@dataclass
class Cosignatures:
    valid: list[tuple[str, int, str]] = field(default_factory=list)  # (name, time, line)
    invalid: list[str] = field(default_factory=list)  # names of known witnesses whose line fails


def verify_cosignatures(note_text: str, witnesses: Sequence[WitnessVerifier]) -> Cosignatures:
    """The cosignatures of known ``witnesses`` in a note: valid ones, and the names of
    known witnesses whose line does not verify. Unknown lines are ignored."""
    note = parse_note(note_text)
    result = Cosignatures()
    for signature in note.signatures:
        for witness in witnesses:
            if (signature.name, signature.key_id) != (witness.name, witness.key_id):
                continue
            if len(signature.raw) != 72:
                result.invalid.append(witness.name)
                continue
            (timestamp,) = struct.unpack(">Q", signature.raw[:8])
            message = cosignature_message(note.body, timestamp)
            if witness.verify(signature.raw[8:], message):
                result.valid.append((witness.name, timestamp, signature.line))
            else:
                result.invalid.append(witness.name)
    return result


# --- the stored tree --------------------------------------------------------------------


def node_key(level: int, index: int) -> int:
    """The storage key of perfect node (level, index): ``(level << 56) | index``."""
    return (level << 56) | index


def leaf_hash_of_entry(entry_hash: bytes) -> bytes:
    """The leaf of an entry: ``SHA-256(0x00 ‖ entry hash)``."""
    return leaf_hash(entry_hash)


def perfect_nodes_for_range(begin: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees (level, index) that exactly cover leaves ``[begin, end)``, left
    to right, each as large as alignment allows."""
    nodes = []
    while begin < end:
        level = 0
        while (begin % (1 << (level + 1)) == 0) and begin + (1 << (level + 1)) <= end:
            level += 1
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def _fold(hashes: list[bytes]) -> bytes:
    """The RFC 6962 hash of a range given its perfect decomposition, left to right (sizes
    decreasing): folded from the right."""
    result = hashes[-1]
    for digest in reversed(hashes[:-1]):
        result = node_hash(digest, result)
    return result


class CompactRange:
    """The right edge of a tree of ``size`` leaves: one perfect subtree per set bit."""

    def __init__(self, size: int, peaks: list[tuple[int, int, bytes]]) -> None:
        self.size = size
        self.peaks = peaks  # (level, index, hash), levels decreasing

    @classmethod
    def from_nodes(cls, size: int, get: Getter) -> CompactRange:
        keys = perfect_nodes_for_range(0, size)
        found = get(keys) if keys else {}
        missing = [key for key in keys if key not in found]
        if missing:
            raise LookupError(f"stored nodes missing for a tree of {size}: {missing[:3]}")
        return cls(size, [(level, index, found[(level, index)]) for level, index in keys])

    def copy(self) -> CompactRange:
        return CompactRange(self.size, list(self.peaks))

    def append(self, leaf_hashes: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """Add leaves (their leaf hashes); returns every perfect node they complete, leaves
        (level 0) included, as (level, index, hash)."""
        completed = []
        for digest in leaf_hashes:
            level, index = 0, self.size
            completed.append((0, index, digest))
            while self.peaks and self.peaks[-1][0] == level:
                _, _, left = self.peaks.pop()
                digest = node_hash(left, digest)
                level, index = level + 1, index >> 1
                completed.append((level, index, digest))
            self.peaks.append((level, index, digest))
            self.size += 1
        return completed

    def root(self) -> bytes:
        return _fold([peak[2] for peak in self.peaks]) if self.peaks else EMPTY_ROOT


def _range_hash(begin: int, end: int, nodes: dict[tuple[int, int], bytes]) -> bytes:
    return _fold([nodes[key] for key in perfect_nodes_for_range(begin, end)])


def _split(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def _inclusion_ranges(index: int, begin: int, end: int, out: list[tuple[int, int]]) -> None:
    # RFC 9162 PATH(m, D[begin:end]): sibling subtrees from the leaf up.
    if end - begin <= 1:
        return
    k = _split(end - begin)
    if index - begin < k:
        _inclusion_ranges(index, begin, begin + k, out)
        out.append((begin + k, end))
    else:
        _inclusion_ranges(index, begin + k, end, out)
        out.append((begin, begin + k))


def _consistency_ranges(m: int, begin: int, end: int, complete: bool, out: list) -> None:
    # RFC 9162 SUBPROOF(m, D[begin:end], b).
    n = end - begin
    if m == n:
        if not complete:
            out.append((begin, end))
        return
    k = _split(n)
    if m <= k:
        _consistency_ranges(m, begin, begin + k, complete, out)
        out.append((begin + k, end))
    else:
        _consistency_ranges(m - k, begin + k, end, False, out)
        out.append((begin, begin + k))


def _fetch(ranges: list[tuple[int, int]], get: Getter) -> dict[tuple[int, int], bytes]:
    keys = sorted({key for begin, end in ranges for key in perfect_nodes_for_range(begin, end)})
    nodes = get(keys) if keys else {}
    missing = [key for key in keys if key not in nodes]
    if missing:
        raise LookupError(f"stored nodes missing: {missing[:3]}")
    return nodes


def _proof(ranges: list[tuple[int, int]], get: Getter) -> list[bytes]:
    nodes = _fetch(ranges, get)
    return [_range_hash(begin, end, nodes) for begin, end in ranges]


def inclusion_proofs(indexes: Sequence[int], size: int, get: Getter) -> list[list[bytes]]:
    """``inclusion_proof`` of each of ``indexes`` in the tree of ``size``, with one ``get``
    call for all of them (an evidence bundle's entries)."""
    if any(not 0 <= index < size for index in indexes):
        raise ValueError("every index must be below the size")
    each: list[list[tuple[int, int]]] = []
    for index in indexes:
        ranges: list[tuple[int, int]] = []
        _inclusion_ranges(index, 0, size, ranges)
        each.append(ranges)
    nodes = _fetch([pair for ranges in each for pair in ranges], get)
    return [[_range_hash(begin, end, nodes) for begin, end in ranges] for ranges in each]


def inclusion_proof(index: int, size: int, get: Getter) -> list[bytes]:
    """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size``, from stored
    perfect nodes (one ``get`` call, O(log² n) keys at most, O(log n) typically)."""
    if not 0 <= index < size:
        raise ValueError("the index must be below the size")
    ranges: list[tuple[int, int]] = []
    _inclusion_ranges(index, 0, size, ranges)
    return _proof(ranges, get)


def consistency_proof(old: int, new: int, get: Getter) -> list[bytes]:
    """RFC 9162 consistency proof from size ``old`` to ``new``, from stored perfect nodes."""
    if not 0 < old <= new:
        raise ValueError("sizes must satisfy 0 < old <= new")
    if old == new:
        return []
    ranges: list = []
    _consistency_ranges(old, 0, new, True, ranges)
    return _proof(ranges, get)


def root_at(size: int, get: Getter) -> bytes:
    """The root of the tree of ``size`` leaves, from stored perfect nodes."""
    return _proof([(0, size)], get)[0] if size else EMPTY_ROOT
