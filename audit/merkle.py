"""RFC 6962 Merkle trees over audit entries: roots, inclusion and consistency proofs.

Hashing (RFC 6962 section 2.1, unchanged in RFC 9162 section 2.1.1), SHA-256 throughout:

- the hash of an empty tree is ``SHA-256(b"")``;
- a leaf is ``SHA-256(0x00 ‖ leaf_data)``;
- an interior node is ``SHA-256(0x01 ‖ left ‖ right)``;
- a tree of ``n > 1`` leaves is split at ``k``, the largest power of two smaller than ``n``:
  ``MTH(D[0:n]) = node(MTH(D[0:k]), MTH(D[k:n]))``.

In the audit trail the leaf data is an entry's 32-byte hash (raw bytes, not hex), leaves
ordered by (lane, seq); see ``audit.signing`` for which entries a checkpoint's tree covers.

Proofs are lists of 32-byte node hashes in the order of RFC 9162 sections 2.1.3.1
(inclusion: from the leaf's sibling up to the root's child) and 2.1.4.1 (consistency:
``SUBPROOF``), and are verified with the algorithms of sections 2.1.3.2 and 2.1.4.2.

The RFC tree equals the tree built bottom-up level by level, pairing neighbours and
carrying an unpaired last node up unchanged: node ``j`` of level ``h`` is the hash of leaves
``[j·2^h, min((j+1)·2^h, n))``. ``MerkleTree`` keeps those levels, so one tree of 100,000
leaves costs about 200,000 SHA-256 calls and 6.4 MB once, and each proof is then O(log n).
``merkle_root`` alone streams its input in O(log n) memory.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 ‖ data)``: the hash of one leaf."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 ‖ left ‖ right)``: the hash of an interior node."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """The RFC 6962 tree hash of ``leaves`` (leaf data, not leaf hashes), streamed.

    Keeps one perfect subtree per set bit of the count seen so far; at the end the RFC tree
    is those subtrees folded from the right (the largest power of two is the left split).
    """
    stack: list[tuple[int, bytes]] = []  # (height, hash), heights strictly decreasing
    for data in leaves:
        height, digest = 0, leaf_hash(data)
        while stack and stack[-1][0] == height:
            digest = node_hash(stack.pop()[1], digest)
            height += 1
        stack.append((height, digest))
    if not stack:
        return EMPTY_ROOT
    digest = stack.pop()[1]
    while stack:
        digest = node_hash(stack.pop()[1], digest)
    return digest


class MerkleTree:
    """Every level of one tree, for many proofs over the same leaves.

    Each level is one ``bytes`` of concatenated 32-byte hashes (about 64 bytes per leaf in
    all, a third of what lists of ``bytes`` objects take), so the two children of a node
    are one contiguous slice.
    """

    def __init__(self, leaves: Iterable[bytes]) -> None:
        level = b"".join(leaf_hash(data) for data in leaves)
        self._levels: list[bytes] = [level]
        while len(level) > HASH_SIZE:
            pairs = len(level) // (2 * HASH_SIZE)
            parents = [
                hashlib.sha256(NODE_PREFIX + level[offset : offset + 2 * HASH_SIZE]).digest()
                for offset in range(0, pairs * 2 * HASH_SIZE, 2 * HASH_SIZE)
            ]
            if len(level) // HASH_SIZE % 2:  # an unpaired last node is carried up unchanged
                parents.append(level[-HASH_SIZE:])
            level = b"".join(parents)
            self._levels.append(level)

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    @property
    def root(self) -> bytes:
        return self._levels[-1] if self.size else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        """RFC 9162 ``PATH(index, D[n])``: sibling hashes from the leaf level upwards."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf index {index} is outside a tree of {self.size} leaves")
        proof = []
        for height in range(len(self._levels) - 1):
            sibling = index ^ 1
            if sibling < len(self._levels[height]) // HASH_SIZE:  # else carried up: no hash
                proof.append(self._node(height, sibling))
            index >>= 1
        return proof

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """RFC 9162 ``PROOF(old_size, D[n])``; empty for ``old_size`` 0 or ``n``.

        ``SUBPROOF`` unrolled: each step either descends left (the right subtree's hash is
        part of the proof) or right (the left one is); hashes found on the way down come
        last, innermost first.
        """
        if not 0 <= old_size <= self.size:
            raise ValueError(f"old size {old_size} is outside 0..{self.size}")
        if old_size in (0, self.size):
            return []
        start, size, m, whole_old_tree = 0, self.size, old_size, True
        found_on_the_way_down: list[bytes] = []
        while m != size:
            k = _split(size)
            if m <= k:
                found_on_the_way_down.append(self._subtree(start + k, size - k))
                size = k
            else:
                found_on_the_way_down.append(self._subtree(start, k))
                start, size, m, whole_old_tree = start + k, size - k, m - k, False
        head = [] if whole_old_tree else [self._subtree(start, size)]
        return head + found_on_the_way_down[::-1]

    def _node(self, height: int, position: int) -> bytes:
        offset = position * HASH_SIZE
        return self._levels[height][offset : offset + HASH_SIZE]

    def _subtree(self, start: int, size: int) -> bytes:
        # Valid for the ranges SUBPROOF visits: start is aligned to 2^height and the range
        # is either complete or runs to the end of the tree.
        height = (size - 1).bit_length()
        return self._node(height, start >> height)


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The inclusion proof of ``leaves[index]`` (build a ``MerkleTree`` for many proofs)."""
    return MerkleTree(leaves).inclusion_proof(index)


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """The proof that the tree of ``leaves[:old_size]`` is a prefix of the tree of ``leaves``."""
    return MerkleTree(leaves).consistency_proof(old_size)


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``leaf`` (leaf data) is leaf ``index`` of the tree of ``tree_size`` with ``root``.

    RFC 9162 section 2.1.3.2, with every proof element required to be 32 bytes.
    """
    if not 0 <= index < tree_size or not _all_hashes(proof):
        return False
    fn, sn, r = index, tree_size - 1, leaf_hash(leaf)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether the tree (``old_size``, ``old_root``) is a prefix of (``new_size``, ``new_root``).

    RFC 9162 section 2.1.4.2 for ``0 < old_size < new_size``. The RFC leaves the edges
    undefined; here an empty old tree (root ``SHA-256("")``) is a prefix of every tree, and
    equal sizes need equal roots; both take an empty proof.
    """
    if not 0 <= old_size <= new_size or not _all_hashes(proof):
        return False
    if old_size == 0:
        return not proof and hmac.compare_digest(old_root, EMPTY_ROOT)
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _all_hashes(proof: Sequence[bytes]) -> bool:
    return all(isinstance(p, bytes) and len(p) == HASH_SIZE for p in proof)
