"""RFC 6962 Merkle trees: the published vectors, the RFC's recursive definitions computed
independently, and proofs for every index and size up to 40 plus large trees.

No database: pure hashing.
"""

import hashlib

import pytest

from audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# The leaves and tree heads published with the Certificate Transparency reference
# implementations (RFC 6962 test data), found identical in several independent projects.
CT_LEAVES = [
    bytes.fromhex(data)
    for data in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (0-based leaf index, tree size, audit path)
CT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, consistency proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


# --- the RFC's recursive definitions, written out independently of audit.merkle ---------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 section 2.1, by the recursive definition."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return sha256(b"\x00" + leaves[0])
    k = split(len(leaves))
    return sha256(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:]))


def reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 section 2.1.1."""
    if len(leaves) == 1:
        return []
    k = split(len(leaves))
    if m < k:
        return [*reference_path(m, leaves[:k]), reference_root(leaves[k:])]
    return [*reference_path(m - k, leaves[k:]), reference_root(leaves[:k])]


def reference_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 6962 section 2.1.2."""
    if m == len(leaves):
        return [] if whole else [reference_root(leaves)]
    k = split(len(leaves))
    if m <= k:
        return [*reference_subproof(m, leaves[:k], whole), reference_root(leaves[k:])]
    return [*reference_subproof(m - k, leaves[k:], False), reference_root(leaves[:k])]


def sample_leaves(n: int) -> list[bytes]:
    """n distinct 32-byte leaves, like the entry hashes the audit trail puts in its trees."""
    return [sha256(i.to_bytes(8, "big")) for i in range(n)]


def flipped(data: bytes, bit: int = 0) -> bytes:
    return bytes([data[0] ^ (1 << bit)]) + data[1:]


# --- hashing and roots ------------------------------------------------------------------


def test_the_empty_tree_hashes_to_sha256_of_nothing():
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    assert merkle_root([]) == MerkleTree([]).root == EMPTY_ROOT


def test_leaves_and_nodes_are_hashed_with_distinct_one_byte_prefixes():
    left, right = sha256(b"left"), sha256(b"right")
    assert leaf_hash(b"data") == sha256(b"\x00data")
    assert node_hash(left, right) == sha256(b"\x01" + left + right)
    assert leaf_hash(left + right) != node_hash(left, right)


def test_roots_match_the_published_tree_heads_for_every_size_up_to_8():
    for size in range(len(CT_LEAVES) + 1):
        leaves = CT_LEAVES[:size]
        assert merkle_root(leaves).hex() == CT_ROOTS[size]
        assert MerkleTree(leaves).root.hex() == CT_ROOTS[size]
        assert reference_root(leaves).hex() == CT_ROOTS[size]


def test_roots_agree_with_the_recursive_definition_for_every_size_up_to_70():
    leaves = sample_leaves(70)
    for size in range(71):
        expected = reference_root(leaves[:size])
        assert merkle_root(iter(leaves[:size])) == expected, size
        assert MerkleTree(leaves[:size]).root == expected, size


# --- inclusion proofs -------------------------------------------------------------------


def test_inclusion_proofs_match_the_published_vectors():
    for index, size, path in CT_INCLUSION:
        proof = inclusion_proof(CT_LEAVES[:size], index)
        assert [node.hex() for node in proof] == path
        root = bytes.fromhex(CT_ROOTS[size])
        assert verify_inclusion(CT_LEAVES[index], index, size, proof, root)


def test_every_inclusion_proof_up_to_40_leaves_is_the_rfc_path_and_verifies():
    leaves = sample_leaves(40)
    for size in range(1, 41):
        tree = MerkleTree(leaves[:size])
        for index in range(size):
            proof = tree.inclusion_proof(index)
            assert proof == reference_path(index, leaves[:size]), (size, index)
            assert verify_inclusion(leaves[index], index, size, proof, tree.root), (size, index)


def test_an_inclusion_proof_fails_for_another_leaf_another_index_or_another_root():
    leaves = sample_leaves(40)
    for size in range(1, 41):
        tree = MerkleTree(leaves[:size])
        for index in range(size):
            proof = tree.inclusion_proof(index)
            assert not verify_inclusion(flipped(leaves[index]), index, size, proof, tree.root)
            assert not verify_inclusion(leaves[index], index, size, proof, flipped(tree.root))
            for other in range(size):
                if other != index:
                    assert not verify_inclusion(leaves[index], other, size, proof, tree.root)


def test_an_inclusion_proof_fails_when_a_node_is_changed_dropped_added_or_swapped():
    leaves = sample_leaves(40)
    for size in range(2, 41):
        tree = MerkleTree(leaves[:size])
        for index in range(size):
            proof = tree.inclusion_proof(index)
            leaf, root = leaves[index], tree.root
            for position in range(len(proof)):
                changed = [*proof[:position], flipped(proof[position]), *proof[position + 1 :]]
                assert not verify_inclusion(leaf, index, size, changed, root)
            assert not verify_inclusion(leaf, index, size, proof[:-1], root)
            assert not verify_inclusion(leaf, index, size, [*proof, proof[-1]], root)
            if len(proof) > 1:
                swapped = [proof[1], proof[0], *proof[2:]]
                assert not verify_inclusion(leaf, index, size, swapped, root)


def test_an_inclusion_proof_outside_the_tree_or_with_malformed_nodes_is_refused():
    leaves = sample_leaves(5)
    tree = MerkleTree(leaves)
    proof = tree.inclusion_proof(4)
    with pytest.raises(IndexError):
        tree.inclusion_proof(5)
    with pytest.raises(IndexError):
        inclusion_proof(leaves, -1)
    assert not verify_inclusion(leaves[4], 5, 5, proof, tree.root)
    assert not verify_inclusion(leaves[4], -1, 5, proof, tree.root)
    assert not verify_inclusion(leaves[0], 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(leaves[4], 4, 5, [proof[0][:31]], tree.root)


def test_a_large_tree_proves_its_leaves_with_logarithmic_proofs():
    leaves = sample_leaves(100_000)
    tree = MerkleTree(leaves)
    assert tree.root == merkle_root(iter(leaves))
    for index in [0, 1, 65_535, 65_536, 99_998, 99_999, *range(7, 100_000, 4_999)]:
        proof = tree.inclusion_proof(index)
        assert len(proof) <= 17
        assert verify_inclusion(leaves[index], index, 100_000, proof, tree.root)
        assert not verify_inclusion(leaves[index], index ^ 1, 100_000, proof, tree.root)


def test_proofs_of_medium_trees_agree_with_the_recursive_definition():
    for size in (1023, 1024, 1025, 3000):
        leaves = sample_leaves(size)
        tree = MerkleTree(leaves)
        for index in (0, size // 3, size // 2, size - 2, size - 1):
            assert tree.inclusion_proof(index) == reference_path(index, leaves)
        for old_size in (1, size // 3, size // 2 + 1, size - 1):
            assert tree.consistency_proof(old_size) == reference_subproof(old_size, leaves, True)


# --- consistency proofs -----------------------------------------------------------------


def test_consistency_proofs_match_the_published_vectors():
    for old_size, new_size, path in CT_CONSISTENCY:
        proof = consistency_proof(CT_LEAVES[:new_size], old_size)
        assert [node.hex() for node in proof] == path
        old_root, new_root = bytes.fromhex(CT_ROOTS[old_size]), bytes.fromhex(CT_ROOTS[new_size])
        assert verify_consistency(old_size, new_size, old_root, new_root, proof)


def test_every_consistency_proof_up_to_40_leaves_is_the_rfc_subproof_and_verifies():
    leaves = sample_leaves(40)
    roots = [reference_root(leaves[:size]) for size in range(41)]
    for new_size in range(41):
        tree = MerkleTree(leaves[:new_size])
        for old_size in range(new_size + 1):
            proof = tree.consistency_proof(old_size)
            if 0 < old_size < new_size:
                assert proof == reference_subproof(old_size, leaves[:new_size], True)
            else:
                assert proof == []
            assert verify_consistency(old_size, new_size, roots[old_size], roots[new_size], proof)


def test_a_consistency_proof_fails_for_changed_roots_nodes_or_old_size():
    leaves = sample_leaves(30)
    roots = [reference_root(leaves[:size]) for size in range(31)]
    for new_size in range(2, 31):
        tree = MerkleTree(leaves[:new_size])
        for old_size in range(1, new_size):
            proof = tree.consistency_proof(old_size)
            old_root, new_root = roots[old_size], roots[new_size]
            assert not verify_consistency(old_size, new_size, flipped(old_root), new_root, proof)
            assert not verify_consistency(old_size, new_size, old_root, flipped(new_root), proof)
            for position in range(len(proof)):
                changed = [*proof[:position], flipped(proof[position]), *proof[position + 1 :]]
                assert not verify_consistency(old_size, new_size, old_root, new_root, changed)
            assert not verify_consistency(old_size, new_size, old_root, new_root, proof[:-1])
            assert not verify_consistency(
                old_size, new_size, old_root, new_root, [*proof, proof[-1]]
            )
            for other_old in range(1, new_size):
                if other_old != old_size:
                    assert not verify_consistency(other_old, new_size, old_root, new_root, proof)


def test_a_tree_is_consistent_with_the_empty_tree_and_with_itself_only():
    leaves = sample_leaves(9)
    root = merkle_root(leaves)
    assert verify_consistency(0, 9, EMPTY_ROOT, root, [])
    assert not verify_consistency(0, 9, flipped(EMPTY_ROOT), root, [])
    assert verify_consistency(9, 9, root, root, [])
    assert not verify_consistency(9, 9, root, flipped(root), [])
    assert not verify_consistency(9, 9, root, root, [root])
    assert not verify_consistency(5, 9, merkle_root(leaves[:5]), root, [])
    assert not verify_consistency(9, 5, root, merkle_root(leaves[:5]), [])


def test_a_consistency_proof_outside_the_tree_is_refused():
    leaves = sample_leaves(5)
    with pytest.raises(ValueError, match="outside"):
        consistency_proof(leaves, 6)
    with pytest.raises(ValueError, match="outside"):
        MerkleTree(leaves).consistency_proof(-1)


def test_a_large_tree_proves_it_extends_its_prefixes():
    leaves = sample_leaves(100_000)
    tree = MerkleTree(leaves)
    for old_size in (1, 2, 3, 4096, 65_536, 65_537, 77_777, 99_999):
        proof = tree.consistency_proof(old_size)
        old_root = merkle_root(leaves[:old_size])
        assert verify_consistency(old_size, 100_000, old_root, tree.root, proof)
        assert not verify_consistency(old_size, 100_000, flipped(old_root), tree.root, proof)
