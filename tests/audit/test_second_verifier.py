"""Self-tests of the independent bundle verifier (tests/audit/second_verifier.py).

The bundles are generated here straight from docs/audit-formats.md (§1-§5), with code kept
apart from the verifier's: the canonical encoder is ``json.dumps``, the Merkle tree and its
proofs follow the RFC 6962 definitions literally, and the proofs are cross-checked against
the RFC 9162 §2.1.3.2 / §2.1.4.2 loops written out below.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
import string
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.audit.second_verifier import (
    verify_bundle,
    verify_consistency,
    verify_inclusion,
)

ORIGIN = "payflow.local/audit"
ZERO = bytes(32)
DASH = "\u2014"
OBJECT_TYPES = ["ledger.transaction", "ledger.journalentry", "payflow.jobrun", "merchants.merchant"]
ALPHABET = [*"abcxyzABC019 -_/.:", '"', "\\", "\b", "\t", "\n", "\f", "\r", "\x00", "\x01"]
ALPHABET += ["\x1f", "\x7f", "\u00e9", "\u00df", "\u20ac", "\u2028", "\u2014", "\U0001f600"]
ALPHABET += ["\u4e2d", "\ufeff", "\u0000", "\u00ff", "\u0100"]


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------------------- §1 entries


def canonical(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def rstr(rng: random.Random, most: int = 8) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, most)))


def rvalue(rng: random.Random, depth: int) -> Any:
    pick = rng.randrange(8 if depth < 3 else 5)
    if pick == 0:
        return rstr(rng)
    if pick == 1:
        return str(rng.choice([0, -5, 1999, rng.randint(-(10**20), 10**20)]))
    if pick == 2:
        return rng.choice([True, False])
    if pick == 3:
        return None
    if pick == 4:
        return rng.choice(["2024-02-29T23:59:59.000001+00:00", "", "EUR", "capture"])
    if pick in (5, 6):
        return rfields(rng, depth + 1)
    return [rvalue(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def rfields(rng: random.Random, depth: int = 0) -> dict:
    return {rstr(rng, 5): rvalue(rng, depth) for _ in range(rng.randint(0, 4))}


def rtime(rng: random.Random) -> str:
    return (
        f"{rng.randint(2000, 2099):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}."
        f"{rng.randint(0, 999999):06d}+00:00"
    )


def rsealed(rng: random.Random):
    """A sealed personal value (§1.3), or one written after its subject was erased."""
    subject = rng.choice(["user:17", "cardholder:" + rstr(rng, 8)])
    if rng.random() < 0.2:
        return {"erased": True, "subject": subject}
    return {
        "sealed": base64.b64encode(rng.randbytes(rng.randint(29, 60))).decode(),
        "subject": subject,
    }


def make_body(rng, identity, action, old, new) -> dict:
    return {
        "action": action,
        "actor": {
            "id": rng.choice([None, "17", rstr(rng)]),
            "label": rng.choice([rstr(rng), rsealed(rng)]),
            "type": rng.choice(["user", "api_key", "system", "task"]),
        },
        "created_at": rtime(rng),
        "event_type": rng.choice(["payment.captured", "merchant.updated", rstr(rng)]),
        "ip": rng.choice(["", "203.0.113.9", "::1", rsealed(rng)]),
        "new": new,
        "object_id": identity[1],
        "object_type": identity[0],
        "old": old,
        "reason": rng.choice([rstr(rng), rsealed(rng)]),
        "request_id": rstr(rng),
        "task_id": rng.choice(["", rstr(rng)]),
        "user_agent": rstr(rng, 20),
        "v": "2",
    }


def entry_hash(prev: bytes, body: bytes) -> bytes:
    return sha(b"payflow-audit-entry/2\x00" + prev + body)


# ---------------------------------------------------------------------------- §2 the tree


def largest_power_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(data: list[bytes]) -> bytes:
    if not data:
        return sha(b"")
    if len(data) == 1:
        return sha(b"\x00" + data[0])
    k = largest_power_below(len(data))
    return sha(b"\x01" + mth(data[:k]) + mth(data[k:]))


def path(m: int, data: list[bytes]) -> list[bytes]:
    if len(data) == 1:
        return []
    k = largest_power_below(len(data))
    if m < k:
        return [*path(m, data[:k]), mth(data[k:])]
    return [*path(m - k, data[k:]), mth(data[:k])]


def subproof(m: int, data: list[bytes], whole: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if whole else [mth(data)]
    k = largest_power_below(n)
    if m <= k:
        return [*subproof(m, data[:k], whole), mth(data[k:])]
    return [*subproof(m - k, data[k:], False), mth(data[:k])]


def consistency_proof(m: int, data: list[bytes]) -> list[bytes]:
    return [] if m in (0, len(data)) else subproof(m, data, True)


def rfc9162_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha(b"\x01" + p + r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def rfc9162_consistency(first, second, proof, first_hash, second_hash) -> bool:
    # §2.1.4.2 assumes 0 < first < second; the trivial cases are handled as RFC 9162 §2.1.4.
    if first == second:
        return not proof and first_hash == second_hash
    if not proof:
        return False
    if (first & (first - 1)) == 0:
        proof = [first_hash, *proof]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha(b"\x01" + c + fr)
            sr = sha(b"\x01" + c + sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# ---------------------------------------------------------------------------- §3/§4 keys


@dataclass
class Signer:
    name: str
    private: Ed25519PrivateKey
    alg: int

    @property
    def encoded(self) -> bytes:
        return bytes([self.alg]) + self.private.public_key().public_bytes_raw()

    @property
    def key_id(self) -> bytes:
        return sha(self.name.encode() + b"\n" + self.encoded)[:4]

    @property
    def verifier_key(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{b64(self.encoded)}"

    def line(self, body: bytes, timestamp: int | None = None) -> str:
        if self.alg == 1:
            blob = self.key_id + self.private.sign(body)
        else:
            assert timestamp is not None
            message = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + body
            blob = self.key_id + timestamp.to_bytes(8, "big") + self.private.sign(message)
        return f"{DASH} {self.name} {b64(blob)}\n"


def new_signer(name: str, alg: int, rng: random.Random) -> Signer:
    return Signer(name, Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)), alg)


def checkpoint_body(size: int, root: bytes, origin: str = ORIGIN) -> bytes:
    return f"{origin}\n{size}\n{b64(root)}\n".encode()


# ---------------------------------------------------------------------------- §5 bundles


@dataclass
class Case:
    bundle: dict
    log: Signer
    witnesses: list[Signer]
    quorum: int
    trusted: tuple[int, bytes] | None
    leaves: list[bytes]  # entry hashes = leaf data
    identities: list[tuple[str, str]]
    complete: list[tuple[str, str]]
    rng: random.Random
    cosigners: list[Signer] = field(default_factory=list)
    spoil_at: int | None = None

    def verify(self, bundle: Any = None, **kw: Any) -> list[tuple[str, int | None]]:
        args = {
            "witness_keys": [w.verifier_key for w in self.witnesses],
            "quorum": self.quorum,
            "trusted": self.trusted,
        }
        args.update(kw)
        return verify_bundle(
            self.bundle if bundle is None else bundle, self.log.verifier_key, **args
        )

    def note(self, body: bytes, cosigners: list[Signer] | None = None) -> str:
        lines = [self.log.line(body)]
        for w in self.cosigners if cosigners is None else cosigners:
            lines.append(w.line(body, self.rng.randint(0, 2**63)))
        return body.decode() + "\n" + "".join(lines)

    def by_index(self, bundle: dict, index: int) -> dict:
        return next(e for e in bundle["entries"] if e["index"] == index)


NONCANONICAL = [
    "space",
    "reorder",
    "slash",
    "u_escape",
    "upper_hex",
    "control_long",
    "number",
    "duplicate",
    "bom",
    "trailing_newline",
    "missing_key",
    "extra_key",
    "version",
    "time_format",
    "time_invalid",
    "actor_missing",
    "actor_extra",
    "old_list",
    "ip_null",
    "float",
    "bad_utf8",
    "surrogate",
    "nested_unsorted",
    "array",
    "del_escaped",
    "raw_tab",
    "leading_space",
]


def spoil(kind: str, body: dict) -> bytes:
    """Bytes that §1.1 rejects, derived from a canonical body."""
    b = copy.deepcopy(body)
    good = canonical(b)
    if kind == "space":
        return good.replace(b":", b": ", 1)
    if kind == "reorder":
        keys = list(b)
        keys[0], keys[1] = keys[1], keys[0]
        return json.dumps(
            {k: b[k] for k in keys}, ensure_ascii=False, separators=(",", ":")
        ).encode()
    replace = {
        "slash": ("a/b", b"a/b", b"a\\/b"),
        "u_escape": ("\u00e9", "\u00e9".encode(), b"\\u00e9"),
        "upper_hex": ("\x1f", b"\\u001f", b"\\u001F"),
        "control_long": ("\n", b"\\n", b"\\u000a"),
        "bad_utf8": ("\u00e9", "\u00e9".encode(), b"\xff"),
        "surrogate": ("@@", b"@@", b"\\ud800"),
        "del_escaped": ("\x7f", b"\x7f", b"\\u007f"),
        "raw_tab": ("\t", b"\\t", b"\t"),
    }
    if kind in replace:
        value, old, new = replace[kind]
        b["reason"] = value
        data = canonical(b)
        assert old in data
        return data.replace(old, new)
    if kind == "number":
        b["new"] = {"amount": 5}
    elif kind == "float":
        b["new"] = {"amount": 1.5}
    elif kind == "duplicate":
        return good.replace(b'"actor":{', b'"actor":{"id":null,', 1)
    elif kind == "bom":
        return b"\xef\xbb\xbf" + good
    elif kind == "trailing_newline":
        return good + b"\n"
    elif kind == "leading_space":
        return b" " + good
    elif kind == "missing_key":
        del b["task_id"]
    elif kind == "extra_key":
        b["zzz"] = ""
    elif kind == "version":
        b["v"] = "1"
    elif kind == "time_format":
        b["created_at"] = "2024-01-01T00:00:00Z"
    elif kind == "time_invalid":
        b["created_at"] = "2024-02-30T00:00:00.000000+00:00"
    elif kind == "actor_missing":
        del b["actor"]["type"]
    elif kind == "actor_extra":
        b["actor"]["extra"] = ""
    elif kind == "old_list":
        b["old"] = []
    elif kind == "ip_null":
        b["ip"] = None
    elif kind == "nested_unsorted":
        b["new"] = {"b": "1", "a": "2"}
        return json.dumps(b, ensure_ascii=False, separators=(",", ":")).encode()
    elif kind == "array":
        return b"[" + good + b"]"
    data = canonical(b)
    assert data != good
    return data


def make_case(
    seed: int,
    *,
    size: int | None = None,
    entries: int | None = None,
    witnesses: int | None = None,
    consistency: bool | None = None,
    spoiled: str | None = None,
    shuffle: bool | None = None,
) -> Case:
    rng = random.Random(seed)
    if size is None:
        size = rng.choice([rng.randint(1, 70), rng.randint(1, 70), rng.randint(70, 400)])
    objects = [
        (rng.choice(OBJECT_TYPES), rng.choice([str(rng.randint(1, 10**6)), rstr(rng) or "x"]))
        for _ in range(rng.randint(1, max(1, size // 3)))
    ]
    objects = list(dict.fromkeys(objects))
    weights = [rng.random() + 0.05 for _ in objects]
    leaves: list[bytes] = []
    bodies: list[bytes] = []
    identities: list[tuple[str, str]] = []
    last: dict[tuple[str, str], bytes] = {}
    state: dict[tuple[str, str], dict | None] = {}
    spoil_at = rng.randrange(size) if spoiled else None
    for i in range(size):
        identity = rng.choices(objects, weights)[0]
        if identity not in state:
            action, old, new = "insert", None, rfields(rng)
        else:
            old = state[identity]
            action = rng.choice(["update", "update", "delete", "operator"])
            new = None if action == "delete" else rfields(rng)
        state[identity] = new
        body_dict = make_body(rng, identity, action, old, new)
        body = spoil(spoiled, body_dict) if i == spoil_at else canonical(body_dict)
        prev = last.get(identity, ZERO)
        h = entry_hash(prev, body)
        last[identity] = h
        leaves.append(h)
        bodies.append(body)
        identities.append(identity)

    # pick the bundle's entries: a few whole objects, then random others
    budget = min(40, size) if entries is None else entries
    budget = rng.randint(1, budget) if entries is None else budget
    chosen: set[int] = set()
    complete: list[tuple[str, str]] = []
    for identity in rng.sample(objects, len(objects)):
        own = [i for i in range(size) if identities[i] == identity]
        if not own or spoil_at in own:
            continue
        if len(chosen) + len(own) <= budget and rng.random() < 0.5:
            chosen.update(own)
            complete.append(identity)
    others = [i for i in range(size) if i not in chosen]
    chosen.update(rng.sample(others, min(len(others), budget - len(chosen))))
    if spoil_at is not None:
        chosen.add(spoil_at)
    # every object whose whole history is in the bundle may be declared complete
    for identity in objects:
        own = [i for i in range(size) if identities[i] == identity]
        if not own or identity in complete or spoil_at in own:
            continue
        if all(i in chosen for i in own) and rng.random() < 0.7:
            complete.append(identity)

    root = mth(leaves)
    log = new_signer(ORIGIN, 1, rng)
    count = rng.randint(0, 3) if witnesses is None else witnesses
    wits = [new_signer(f"witness{j}.example/w", 4, rng) for j in range(count)]
    cosigners = [w for w in wits if rng.random() < 0.8]
    quorum = rng.randint(0, len(cosigners))
    case = Case({}, log, wits, quorum, None, leaves, identities, complete, rng, cosigners, spoil_at)

    body = checkpoint_body(size, root)
    lines = [log.line(body)]
    lines += [w.line(body, rng.randint(0, 2**64 - 1)) for w in cosigners]
    for _ in range(rng.randint(0, 2)):  # unknown keys are ignored
        name = rng.choice(["other.example/log", ORIGIN, "witness0.example/w"])
        stranger = new_signer(name, rng.choice([1, 4]), rng)
        lines.append(stranger.line(body, rng.randint(0, 2**64 - 1)))
    lines.append(f"{DASH} unknown.example {b64(rng.randbytes(rng.randint(5, 90)))}\n")
    rng.shuffle(lines)
    note = body.decode() + "\n" + "".join(lines)

    def entry_json(i: int) -> dict:
        prev = ZERO
        for j in range(i - 1, -1, -1):
            if identities[j] == identities[i]:
                prev = leaves[j]
                break
        item = {
            "index": i,
            "prev_hash": prev.hex(),
            "hash": leaves[i].hex(),
            "body": b64(bodies[i]),
            "inclusion": [b64(node) for node in path(i, leaves)],
        }
        try:
            item["entry"] = json.loads(bodies[i])
        except ValueError:
            item["entry"] = None
        return item

    order = sorted(chosen)
    if shuffle if shuffle is not None else rng.random() < 0.3:
        rng.shuffle(order)
    bundle: dict[str, Any] = {
        "format": "payflow-audit-bundle/2",
        "origin": ORIGIN,
        "checkpoint": note,
        "tree_size": size,
        "entries": [entry_json(i) for i in order],
    }
    if complete or rng.random() < 0.5:
        bundle["complete_objects"] = [list(c) for c in complete]
    if consistency if consistency is not None else rng.random() < 0.5:
        m = rng.randint(0, size)
        bundle["consistency"] = {
            "from_size": m,
            "from_root": b64(mth(leaves[:m])),
            "proof": [b64(n) for n in consistency_proof(m, leaves)],
        }
        if rng.random() < 0.7:
            case.trusted = (m, mth(leaves[:m]))
    case.bundle = bundle
    return case


def encodings(bundle: dict, rng: random.Random) -> list[Any]:
    text = json.dumps(bundle, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1]))
    return [bundle, text, text.encode()]


# ---------------------------------------------------------------------------- the tests


def test_recursive_proofs_agree_with_the_rfc_9162_loops():
    rng = random.Random(1)
    for n in range(1, 41):
        data = [sha(bytes([n, i])) for i in range(n)]
        root = mth(data)
        for m in range(n):
            leaf = sha(b"\x00" + data[m])
            proof = path(m, data)
            assert verify_inclusion(leaf, m, n, proof, root)
            assert rfc9162_inclusion(m, n, leaf, proof, root)
            variants = [proof[:-1], [*proof, root], [rng.randbytes(32), *proof]]
            if proof:
                k = rng.randrange(len(proof))
                variants.append([*proof[:k], rng.randbytes(32), *proof[k + 1 :]])
                variants.append(list(reversed(proof)))
            for bad in variants:
                expected = rfc9162_inclusion(m, n, leaf, bad, root)
                assert verify_inclusion(leaf, m, n, bad, root) == expected
            for other in range(n + 2):
                expected = rfc9162_inclusion(other, n, leaf, proof, root)
                assert verify_inclusion(leaf, other, n, proof, root) == expected
                assert expected == (other == m)
            assert not verify_inclusion(leaf, m, n, proof, sha(root))
        for m in range(1, n + 1):
            old = mth(data[:m])
            proof = consistency_proof(m, data)
            assert proof == ([] if m == n else subproof(m, data, True))
            assert verify_consistency(m, n, proof, old, root)
            assert rfc9162_consistency(m, n, proof, old, root)
            variants = [proof[:-1], [*proof, root], [old, *proof], proof[1:]]
            if proof:
                k = rng.randrange(len(proof))
                variants.append([*proof[:k], rng.randbytes(32), *proof[k + 1 :]])
            for bad in variants:
                assert verify_consistency(m, n, bad, old, root) == rfc9162_consistency(
                    m, n, bad, old, root
                )
            for other in range(1, n + 1):
                expected = rfc9162_consistency(other, n, proof, old, root)
                assert verify_consistency(other, n, proof, old, root) == expected
                assert expected == (other == m)
            assert not verify_consistency(m, n, proof, sha(old), root)
            assert not verify_consistency(m, n, proof, old, sha(root))
        assert verify_consistency(0, n, [], sha(b""), root)
        assert not verify_consistency(0, n, [], root, root)
        assert not verify_consistency(n, n - 1, [], root, root)


@pytest.mark.parametrize("seed", range(150))
def test_valid_bundles_pass(seed):
    case = make_case(seed)
    for form in encodings(case.bundle, case.rng):
        assert case.verify(form) == []
    assert case.verify(check_entry_field=False) == []
    # the display copy is optional; unknown witness keys and lower quorums change nothing
    bare = copy.deepcopy(case.bundle)
    for e in bare["entries"]:
        del e["entry"]
    assert case.verify(bare) == []
    assert case.verify(quorum=0, witness_keys=[]) == []


def test_edge_sizes_pass():
    for seed, size in enumerate([1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33, 64, 65, 1000]):
        case = make_case(1000 + seed, size=size, consistency=True)
        assert case.verify() == [], size
    case = make_case(2000, size=40, entries=40, witnesses=3)
    assert len(case.bundle["entries"]) == 40
    assert case.verify() == []


@pytest.mark.parametrize("kind", NONCANONICAL)
def test_non_canonical_bodies_are_found(kind):
    for seed in range(4):
        case = make_case(3000 + seed, spoiled=kind)
        assert case.verify() == [("not_canonical", case.spoil_at)]
        assert case.verify(check_entry_field=False) == [("not_canonical", case.spoil_at)]


def flip_hex(text: str) -> str:
    return ("1" if text[0] != "1" else "2") + text[1:]


def flip_b64(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[len(raw) // 2] ^= 0x01
    return b64(bytes(raw))


def loose_b64(text: str) -> str | None:
    """Another base64 spelling of the same bytes (non-zero padding bits), if one exists."""
    if not text.endswith("="):
        return None
    stem = text.rstrip("=")
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
    for ch in alphabet:
        other = stem[:-1] + ch + text[len(stem) :]
        if other != text and base64.b64decode(other) == base64.b64decode(text):
            return other
    return None


def entry_mutations(case: Case, entry: dict) -> list[tuple[str, Any, Any]]:
    """(label, mutate(entry), expected failure or None for "any failure")."""
    i = entry["index"]
    size = case.bundle["tree_size"]
    taken = {e["index"] for e in case.bundle["entries"]}
    free = next((j for j in range(size + 1) if j not in taken), size)
    out: list[tuple[str, Any, Any]] = [
        ("index_moved", lambda e: e.update(index=free), ("bad_inclusion", free)),
        ("index_beyond", lambda e: e.update(index=size + 5), ("bad_inclusion", size + 5)),
        ("index_str", lambda e: e.update(index=str(i)), ("malformed", None)),
        ("index_bool", lambda e: e.update(index=True), ("malformed", None)),
        ("index_float", lambda e: e.update(index=float(i)), ("malformed", None)),
        ("index_negative", lambda e: e.update(index=-1), ("malformed", None)),
        ("index_missing", lambda e: e.pop("index"), ("malformed", None)),
        ("prev_flipped", lambda e: e.update(prev_hash=flip_hex(e["prev_hash"])), "hash_mismatch"),
        ("prev_upper", lambda e: e.update(prev_hash=e["prev_hash"][:-1] + "A"), "malformed"),
        ("prev_short", lambda e: e.update(prev_hash=e["prev_hash"][:-2]), "malformed"),
        ("prev_missing", lambda e: e.pop("prev_hash"), "malformed"),
        ("hash_flipped", lambda e: e.update(hash=flip_hex(e["hash"])), "hash_mismatch"),
        ("hash_bytes", lambda e: e.update(hash=list(bytes.fromhex(e["hash"]))), "malformed"),
        ("hash_missing", lambda e: e.pop("hash"), "malformed"),
        ("body_flipped", lambda e: e.update(body=flip_b64(e["body"])), "hash_mismatch"),
        ("body_not_b64", lambda e: e.update(body=e["body"] + "!"), "malformed"),
        ("body_unpadded", lambda e: e.update(body=e["body"].rstrip("=") + "A"), None),
        ("body_missing", lambda e: e.pop("body"), "malformed"),
        ("body_null", lambda e: e.update(body=None), "malformed"),
        ("entry_changed", lambda e: e["entry"].update(reason="forged"), "malformed"),
        ("entry_typed", lambda e: e["entry"].update(v=2), "malformed"),
        ("entry_scalar", lambda e: e.update(entry="x"), "malformed"),
        ("inclusion_extra", lambda e: e["inclusion"].append(b64(bytes(32))), "bad_inclusion"),
        ("inclusion_short_node", lambda e: e["inclusion"].append(b64(bytes(31))), "malformed"),
        ("inclusion_not_list", lambda e: e.update(inclusion="x"), "malformed"),
        ("inclusion_missing", lambda e: e.pop("inclusion"), "malformed"),
        ("inclusion_bad_b64", lambda e: e["inclusion"].append("@@@@"), "malformed"),
        ("not_an_object", None, ("malformed", None)),
    ]
    loose = loose_b64(entry["body"])
    if loose:
        out.append(("body_loose_b64", lambda e: e.update(body=loose), "malformed"))
    if entry["entry"] is None:
        out = [m for m in out if not m[0].startswith("entry_")]
    for k in range(len(entry["inclusion"])):
        out.append(
            (
                f"inclusion_{k}_flipped",
                lambda e, k=k: e["inclusion"].__setitem__(k, flip_b64(e["inclusion"][k])),
                "bad_inclusion",
            )
        )
        out.append(
            (f"inclusion_{k}_dropped", lambda e, k=k: e["inclusion"].pop(k), "bad_inclusion")
        )
    if len(entry["inclusion"]) > 1:
        out.append(("inclusion_reversed", lambda e: e["inclusion"].reverse(), "bad_inclusion"))

    def relink(e: dict) -> None:
        prev = case.rng.randbytes(32)
        e["prev_hash"] = prev.hex()
        e["hash"] = entry_hash(prev, base64.b64decode(e["body"])).hex()

    out.append(("relinked", relink, "bad_inclusion"))
    return out


@pytest.mark.parametrize("seed", range(30))
def test_every_entry_field_tampered(seed):
    case = make_case(4000 + seed)
    assert case.verify() == []
    for position, entry in enumerate(case.bundle["entries"]):
        for label, mutate, expected in entry_mutations(case, entry):
            bundle = copy.deepcopy(case.bundle)
            target = bundle["entries"][position]
            if mutate is None:
                bundle["entries"][position] = [target]
            else:
                mutate(target)
            result = case.verify(bundle)
            assert result, (label, entry["index"])
            if isinstance(expected, tuple):
                assert expected in result, (label, result)
            elif isinstance(expected, str):
                assert (expected, entry["index"]) in result, (label, result)
            # only the tampered entry (or the bundle) is blamed, unless the chain notices
            others = {
                r
                for r in result
                if r[1] not in (None, entry["index"], target.get("index"))
                and r[0] != "chain_broken"
            }
            assert not others, (label, result)
            if label.startswith("entry_"):
                assert case.verify(bundle, check_entry_field=False) == []


@pytest.mark.parametrize("seed", range(30))
def test_chains(seed):
    case = make_case(5000 + seed, size=60, entries=40)
    complete = [tuple(c) for c in case.bundle.get("complete_objects", [])]
    entries = case.bundle["entries"]
    for identity in complete:
        own = sorted(
            (e for e in entries if case.identities[e["index"]] == identity),
            key=lambda e: e["index"],
        )
        if len(own) >= 2:
            # drop a non-final entry: its successor no longer links
            k = case.rng.randrange(len(own) - 1)
            bundle = copy.deepcopy(case.bundle)
            bundle["entries"] = [e for e in bundle["entries"] if e["index"] != own[k]["index"]]
            assert case.verify(bundle) == [("chain_broken", own[k + 1]["index"])]
            # dropping the newest entry cannot be seen (a documented limitation)
            bundle = copy.deepcopy(case.bundle)
            bundle["entries"] = [e for e in bundle["entries"] if e["index"] != own[-1]["index"]]
            assert case.verify(bundle) == []
        # an object listed as complete with no entry at all
        bundle = copy.deepcopy(case.bundle)
        bundle["entries"] = [e for e in entries if case.identities[e["index"]] != identity]
        assert case.verify(bundle) == [("chain_broken", None)]
    # declaring an object complete whose first entries are missing
    held = {e["index"] for e in entries}
    partial = {
        case.identities[i]
        for i in held
        if any(case.identities[j] == case.identities[i] and j not in held for j in range(i))
    }
    for identity in partial:
        bundle = copy.deepcopy(case.bundle)
        bundle.setdefault("complete_objects", []).append(list(identity))
        result = case.verify(bundle)
        assert result
        assert all(kind == "chain_broken" for kind, _ in result)
    for bad in ["x", [["a"]], [[1, 2]], [["a", "b", "c"]], {"a": "b"}]:
        bundle = copy.deepcopy(case.bundle)
        bundle["complete_objects"] = bad
        assert ("malformed", None) in case.verify(bundle)


@pytest.mark.parametrize("seed", range(40))
def test_note_and_signatures_tampered(seed):
    case = make_case(6000 + seed, witnesses=(seed % 4))
    size = case.bundle["tree_size"]
    root = mth(case.leaves)
    body = checkpoint_body(size, root)
    note = case.bundle["checkpoint"]

    def with_note(text: str) -> dict:
        bundle = copy.deepcopy(case.bundle)
        bundle["checkpoint"] = text
        return bundle

    lines = note.split("\n")
    log_line = next(
        ln
        for ln in lines
        if ln.startswith(f"{DASH} {ORIGIN} ")
        and base64.b64decode(ln.split(" ")[2])[:4] == case.log.key_id
    )
    # body lines changed without re-signing
    for k, replacement in [(0, "payflow.local/other"), (1, str(size + 1)), (2, b64(sha(root)))]:
        text = note.split("\n")
        text[k] = replacement
        assert ("bad_signature", None) in case.verify(with_note("\n".join(text)))
    # re-signed bodies that are not a checkpoint of this bundle
    resigned = [
        checkpoint_body(size + 1, root),
        checkpoint_body(size, root, "payflow.local/other"),
        body + b"extension line\n",
        body.replace(b"\n", b"\r\n", 1),
        f"{ORIGIN}\n0{size}\n{b64(root)}\n".encode(),
        f"{ORIGIN}\n{size}\n{b64(root)[:-1]}\n".encode(),
        f"{ORIGIN}\n{size}\n".encode(),
        f"{ORIGIN}\n+{size}\n{b64(root)}\n".encode(),
        f"{ORIGIN}\n{size}\n{b64(root + b'x')}\n".encode(),
    ]
    for forged in resigned:
        result = case.verify(with_note(case.note(forged)))
        assert ("bad_checkpoint", None) in result, (forged, result)
        assert ("bad_signature", None) not in result
    wrong_root = case.verify(with_note(case.note(checkpoint_body(size, sha(root)))))
    assert wrong_root
    assert {("bad_inclusion", e["index"]) for e in case.bundle["entries"]} <= set(wrong_root)
    # the log's signature line
    blob = base64.b64decode(log_line.split(" ")[2])
    for forged_blob in [
        blob[:4] + bytes([blob[4] ^ 1]) + blob[5:],
        blob[:-1],
        blob + b"\x00",
        bytes([blob[0] ^ 1]) + blob[1:],
        blob[:4] + bytes(64),
    ]:
        text = note.replace(log_line, f"{DASH} {ORIGIN} {b64(forged_blob)}")
        assert ("bad_signature", None) in case.verify(with_note(text))
    assert ("bad_signature", None) in case.verify(with_note(note.replace(log_line + "\n", "")))
    impostor = new_signer(ORIGIN, 1, case.rng)
    forged = note.replace(
        log_line, f"{DASH} {ORIGIN} {b64(case.log.key_id + impostor.private.sign(body))}"
    )
    assert ("bad_signature", None) in case.verify(with_note(forged))
    # note structure
    for text in [
        note.replace("\n\n", "\n", 1),
        note[:-1],
        note + "\n",
        note.replace(DASH, "-"),
        note.replace(f"{DASH} ", f"{DASH}  ", 1),
        body.decode() + "\n",
        "",
        note.replace(log_line, log_line + " extra"),
    ]:
        result = case.verify(with_note(text))
        assert ("bad_signature", None) in result, repr(text)
    for value in [None, 5, note.encode(), ["x"]]:
        assert ("malformed", None) in case.verify(with_note(value))
    # cosignatures
    if case.cosigners:
        w = case.cosigners[0]
        w_line = next(
            ln
            for ln in lines
            if ln.startswith(f"{DASH} {w.name} ")
            and base64.b64decode(ln.split(" ")[2])[:4] == w.key_id
        )
        wblob = base64.b64decode(w_line.split(" ")[2])
        for forged_blob in [
            wblob[:4] + bytes([wblob[4] ^ 1]) + wblob[5:],  # timestamp
            wblob[:-1] + bytes([wblob[-1] ^ 1]),  # signature
            wblob[:12] + wblob[13:],
        ]:
            text = note.replace(w_line, f"{DASH} {w.name} {b64(forged_blob)}")
            assert ("bad_signature", None) in case.verify(with_note(text))
        without = with_note(note.replace(w_line + "\n", ""))
        result = case.verify(without, quorum=len(case.cosigners))
        assert result == [("too_few_cosignatures", None)]
        assert case.verify(without, quorum=len(case.cosigners) - 1) == []
        # a witness that signed the plain body instead of the cosignature/v1 message
        fake = w.key_id + bytes(8) + w.private.sign(body)
        text = note.replace(w_line, f"{DASH} {w.name} {b64(fake)}")
        assert ("bad_signature", None) in case.verify(with_note(text))
        # the same cosigner counted once, however many keys and lines
        twice = with_note(note.replace(w_line, w_line + "\n" + w_line))
        keys = [w.verifier_key, w.verifier_key]
        assert case.verify(twice, witness_keys=keys, quorum=1) == []
        assert case.verify(twice, witness_keys=keys, quorum=2) == [("too_few_cosignatures", None)]
    assert case.verify(quorum=len(case.cosigners) + 1) == [("too_few_cosignatures", None)]
    # the log key must be the checkpoint's origin, with the right algorithm and id
    other = new_signer("payflow.local/other", 1, case.rng)
    assert case.verify() == []
    for key in [
        other.verifier_key,
        case.log.verifier_key.replace(case.log.key_id.hex(), "00000000"),
        f"{ORIGIN}+{case.log.key_id.hex()}+{b64(bytes([4]) + case.log.encoded[1:])}",
        "garbage",
        None,
        7,
    ]:
        assert verify_bundle(case.bundle, key)


@pytest.mark.parametrize("seed", range(40))
def test_bundle_level_tampering(seed):
    case = make_case(7000 + seed, consistency=True)
    size = case.bundle["tree_size"]
    cons = case.bundle["consistency"]
    m = cons["from_size"]

    def changed(**top: Any) -> dict:
        bundle = copy.deepcopy(case.bundle)
        for key, value in top.items():
            if value is KeyError:
                bundle.pop(key)
            else:
                bundle[key] = value
        return bundle

    assert case.verify() == []
    assert ("malformed", None) in case.verify(changed(format="payflow-audit-bundle/1"))
    assert ("malformed", None) in case.verify(changed(format=KeyError))
    assert ("bad_checkpoint", None) in case.verify(changed(origin="payflow.local/other"))
    assert ("malformed", None) in case.verify(changed(origin=None))
    assert ("bad_checkpoint", None) in case.verify(changed(tree_size=size + 1))
    assert ("malformed", None) in case.verify(changed(tree_size=str(size)))
    assert ("malformed", None) in case.verify(changed(tree_size=float(size)))
    assert ("malformed", None) in case.verify(changed(entries=KeyError))
    assert ("malformed", None) in case.verify(changed(entries={}))
    emptied = [("chain_broken", None)] if case.bundle.get("complete_objects") else []
    assert case.verify(changed(entries=[])) == emptied
    duplicate = changed(entries=[*case.bundle["entries"], case.bundle["entries"][0]])
    assert ("malformed", case.bundle["entries"][0]["index"]) in case.verify(duplicate)

    def with_cons(**fields: Any) -> dict:
        bundle = copy.deepcopy(case.bundle)
        bundle["consistency"].update(fields)
        return bundle

    for k in range(len(cons["proof"])):
        proof = list(cons["proof"])
        proof[k] = flip_b64(proof[k])
        assert ("bad_consistency", None) in case.verify(with_cons(proof=proof))
        assert ("bad_consistency", None) in case.verify(with_cons(proof=proof), trusted=None)
    assert ("bad_consistency", None) in case.verify(with_cons(proof=[*cons["proof"], b64(ZERO)]))
    if cons["proof"]:
        assert ("bad_consistency", None) in case.verify(with_cons(proof=cons["proof"][:-1]))
    for other_m in {m - 1, m + 1} - {-1}:
        result = case.verify(with_cons(from_size=other_m), trusted=None)
        assert ("bad_consistency", None) in result
    flipped_root = flip_b64(cons["from_root"])
    assert ("bad_consistency", None) in case.verify(with_cons(from_root=flipped_root), trusted=None)
    assert ("malformed", None) in case.verify(with_cons(from_root="x"))
    assert ("malformed", None) in case.verify(with_cons(from_size="1"))
    assert ("malformed", None) in case.verify(with_cons(proof="x"))
    assert ("malformed", None) in case.verify(with_cons(proof=["@"]))
    assert ("malformed", None) in case.verify(changed(consistency=[]))
    # against what the auditor trusts
    trusted = (m, mth(case.leaves[:m]))
    assert case.verify(trusted=trusted) == []
    assert ("bad_consistency", None) in case.verify(trusted=(m, sha(trusted[1])))
    if m < size:
        assert ("bad_consistency", None) in case.verify(trusted=(m + 1, mth(case.leaves[: m + 1])))
    # the bundle's own (self-consistent) claim from a different size is not the trusted one
    if 0 < m < size:
        m2 = m + 1
        other = with_cons(
            from_size=m2,
            from_root=b64(mth(case.leaves[:m2])),
            proof=[b64(n) for n in consistency_proof(m2, case.leaves)],
        )
        assert case.verify(other, trusted=None) == []
        assert ("bad_consistency", None) in case.verify(other, trusted=trusted)
    no_cons = changed(consistency=KeyError)
    assert case.verify(no_cons, trusted=None) == []
    # without a proof, only the empty tree and the checkpoint itself are consistent with it
    expected = [] if m in (0, size) else [("bad_consistency", None)]
    assert case.verify(no_cons, trusted=trusted) == expected
    for bad in [(m,), (m, "root"), ("1", trusted[1]), (m, trusted[1][:31]), (-1, trusted[1])]:
        assert ("malformed", None) in case.verify(trusted=bad)


def junk(rng: random.Random, depth: int = 0) -> Any:
    choices = [
        None,
        True,
        False,
        0,
        -1,
        2**70,
        1.5,
        float("nan"),
        "",
        "x" * rng.randint(0, 50),
        "\ud800",
        b"\x00\xff",
        ["a"],
        {},
        {"index": 0},
        [[[[[]]]]],
        object(),
    ]
    if depth < 2:
        choices.append({rstr(rng): junk(rng, depth + 1) for _ in range(rng.randint(0, 3))})
        choices.append([junk(rng, depth + 1) for _ in range(rng.randint(0, 3))])
    return rng.choice(choices)


def replace_somewhere(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        if rng.random() < 0.15:
            del value[key]
        else:
            value[key] = replace_somewhere(value[key], rng)
        return value
    if isinstance(value, list) and value and rng.random() < 0.8:
        k = rng.randrange(len(value))
        value[k] = replace_somewhere(value[k], rng)
        return value
    return junk(rng)


def assert_report(result: Any) -> None:
    assert isinstance(result, list)
    for item in result:
        assert isinstance(item, tuple)
        assert len(item) == 2
        assert isinstance(item[0], str)
        assert item[1] is None or isinstance(item[1], int)


@pytest.mark.parametrize("seed", range(12))
def test_never_raises(seed):
    case = make_case(8000 + seed, size=20)
    rng = random.Random(seed)
    text = json.dumps(case.bundle)
    for _ in range(150):
        bundle = replace_somewhere(copy.deepcopy(case.bundle), rng)
        assert_report(case.verify(bundle))
        chars = list(text)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(chars))
            op = rng.randrange(3)
            if op == 0:
                chars[pos] = rng.choice('{}[]",:0123456789abc\\ \u2014\x00')
            elif op == 1:
                del chars[pos : pos + rng.randint(1, 20)]
            else:
                chars.insert(pos, rng.choice(["null", "1e999", "[", "-", "NaN", '"\\ud800"']))
        mutated = "".join(chars)
        assert_report(case.verify(mutated))
        assert_report(case.verify(mutated.encode("utf-8", "surrogatepass")))
    for bundle in [None, 5, [], "", b"", b"\xff", "[" * 100000, "{" * 100000, bytearray(b"{}")]:
        assert verify_bundle(bundle, case.log.verifier_key) == [("malformed", None)]
    assert verify_bundle("\ufeff" + text, case.log.verifier_key) == [("malformed", None)]
    assert ("malformed", None) in verify_bundle(
        text.replace('"format"', '"format": 1, "format"', 1), case.log.verifier_key
    )
    for args in [
        {"log_key": None},
        {"log_key": b"x"},
        {"witness_keys": None},
        {"witness_keys": [None, 5]},
        {"witness_keys": "abc"},
        {"quorum": None},
        {"quorum": -1},
        {"quorum": "1"},
        {"trusted": "x"},
        {"trusted": (0, None)},
    ]:
        call = {
            "log_key": case.log.verifier_key,
            "witness_keys": [w.verifier_key for w in case.witnesses],
            "quorum": case.quorum,
            "trusted": case.trusted,
        }
        call.update(args)
        result = verify_bundle(case.bundle, **call)
        assert_report(result)
        assert ("malformed", None) in result
    deep = copy.deepcopy(case.bundle)
    deep["entries"][0]["body"] = b64(b"[" * 200000 + b"]" * 200000)
    deep["entries"][0]["hash"] = entry_hash(
        bytes.fromhex(deep["entries"][0]["prev_hash"]), base64.b64decode(deep["entries"][0]["body"])
    ).hex()
    assert ("not_canonical", deep["entries"][0]["index"]) in case.verify(deep)
