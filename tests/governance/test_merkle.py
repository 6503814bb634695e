"""RFC 6962 / 9162 Merkle tree: published vectors, negative cases, properties and a reference definition."""

import hashlib
import random

import pytest

from governance.ledger import merkle
from governance.ledger.merkle import ProofError

# Test vectors published by transparency-dev/merkle (the Go library behind Certificate Transparency and
# Trillian), copied from testonly/constants.go (LeafInputs, RootHashes), proof/verify_test.go
# (inclusionProofs, consistencyProofs: leaf numbers there are 1-based, here they are 0-based indices)
# and testonly/reference_test.go (TestRefInclusionProof, TestRefConsistencyProof).
# https://github.com/transparency-dev/merkle
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
LEAF_HASHES = [merkle.leaf_hash(leaf) for leaf in LEAVES]

EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}

# (index, tree size, expected audit path)
INCLUSION_VECTORS = [
    (0, 1, []),
    (0, 2, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"]),
    (1, 2, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"]),
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
]

# (old size, new size, expected consistency proof)
CONSISTENCY_VECTORS = [
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
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def hexes(hashes):
    return [h.hex() for h in hashes]


def unhex(hex_list):
    return [bytes.fromhex(h) for h in hex_list]


def root_of(size):
    return bytes.fromhex(ROOTS[size])


def flip_bit(value: bytes, bit: int = 3) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


# --- A literal transcription of the recursive definitions in RFC 9162 section 2.1, for cross-checks.


def ref_split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_root(leaf_hashes):
    n = len(leaf_hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hashes[0]
    k = ref_split(n)
    return merkle.node_hash(ref_root(leaf_hashes[:k]), ref_root(leaf_hashes[k:]))


def ref_path(m, leaf_hashes):
    n = len(leaf_hashes)
    if n == 1:
        return []
    k = ref_split(n)
    if m < k:
        return ref_path(m, leaf_hashes[:k]) + [ref_root(leaf_hashes[k:])]
    return ref_path(m - k, leaf_hashes[k:]) + [ref_root(leaf_hashes[:k])]


def ref_subproof(m, leaf_hashes, whole_old_tree):
    n = len(leaf_hashes)
    if m == n:
        return [] if whole_old_tree else [ref_root(leaf_hashes)]
    k = ref_split(n)
    if m <= k:
        return ref_subproof(m, leaf_hashes[:k], whole_old_tree) + [ref_root(leaf_hashes[k:])]
    return ref_subproof(m - k, leaf_hashes[k:], False) + [ref_root(leaf_hashes[:k])]


def random_leaf_hashes(rng, n):
    return [merkle.leaf_hash(rng.randbytes(rng.randrange(0, 40))) for _ in range(n)]


# --- Hashing and roots


def test_leaf_and_node_hashes_use_the_rfc_domain_separation_prefixes():
    assert merkle.leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert merkle.node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()


def test_the_empty_tree_root_is_the_hash_of_the_empty_string():
    assert merkle.root([]).hex() == EMPTY_ROOT


@pytest.mark.parametrize("size", sorted(ROOTS))
def test_it_computes_the_published_root_for_each_size(size):
    assert merkle.root(LEAF_HASHES[:size]).hex() == ROOTS[size]


def test_the_fast_root_equals_the_recursive_rfc_definition_for_every_size_up_to_300():
    rng = random.Random(6962)
    leaf_hashes = random_leaf_hashes(rng, 300)
    for size in range(0, 301):
        assert merkle.root(leaf_hashes[:size]) == ref_root(leaf_hashes[:size]), size


def test_the_fast_root_equals_the_recursive_rfc_definition_on_a_large_uneven_tree():
    leaf_hashes = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(2**16 + 2**9 + 3)]
    assert merkle.root(leaf_hashes) == ref_root(leaf_hashes)


def test_the_root_accepts_any_sequence_and_leaves_it_untouched():
    leaf_hashes = tuple(LEAF_HASHES)
    assert merkle.root(leaf_hashes).hex() == ROOTS[8]
    assert leaf_hashes == tuple(LEAF_HASHES)


# --- Inclusion proofs: published vectors


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION_VECTORS)
def test_it_builds_the_published_inclusion_proofs(index, size, expected):
    assert hexes(merkle.inclusion_proof(LEAF_HASHES[:size], index)) == expected


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION_VECTORS)
def test_it_verifies_the_published_inclusion_proofs(index, size, expected):
    merkle.verify_inclusion(
        leaf_hash=LEAF_HASHES[index], index=index, tree_size=size, proof=unhex(expected), root=root_of(size)
    )


def test_it_refuses_to_build_an_inclusion_proof_for_a_missing_leaf():
    with pytest.raises(ValueError, match="out of range"):
        merkle.inclusion_proof(LEAF_HASHES, 8)


# --- Inclusion proofs: negative cases (the mutations of transparency-dev's corruptInclusionProof)


def corrupted_inclusion_probes(index, size, proof, root, leaf):
    probes = {
        "index - 1": {"index": index - 1},
        "index + 1": {"index": index + 1},
        "index ^ 2": {"index": index ^ 2},
        "size * 2": {"tree_size": size * 2},
        "size // 2": {"tree_size": size // 2},
        "wrong leaf": {"leaf_hash": hashlib.sha256(b"WrongLeaf").digest()},
        "empty root": {"root": bytes.fromhex(EMPTY_ROOT)},
        "random root": {"root": SOME_HASH},
        "trailing garbage": {"proof": proof + [b""]},
        "trailing root": {"proof": proof + [root]},
        "preceding garbage": {"proof": [b""] + proof},
        "preceding root": {"proof": [root] + proof},
    }
    for i in range(len(proof)):
        probes[f"flipped bit in proof[{i}]"] = {"proof": proof[:i] + [flip_bit(proof[i])] + proof[i + 1 :]}
    if proof:
        probes["removed component"] = {"proof": proof[:-1]}
    if len(proof) > 1:
        probes["inserted component"] = {"proof": [proof[0], SOME_HASH] + proof[1:]}
        probes["swapped order"] = {"proof": proof[::-1]}
    original = {"leaf_hash": leaf, "index": index, "tree_size": size, "proof": proof, "root": root}
    for name, change in probes.items():
        yield name, {**original, **change}


@pytest.mark.parametrize(("index", "size", "expected"), [v for v in INCLUSION_VECTORS if v[1] > 1])
def test_it_rejects_every_corruption_of_the_published_inclusion_proofs(index, size, expected):
    proof = unhex(expected)
    accepted = []
    for name, args in corrupted_inclusion_probes(index, size, proof, root_of(size), LEAF_HASHES[index]):
        try:
            merkle.verify_inclusion(**args)
        except ProofError:
            continue
        accepted.append(name)
    assert accepted == []


def test_it_rejects_a_tampered_leaf():
    tampered = merkle.leaf_hash(b"\x20\x22")  # leaf 3 was 0x2021
    with pytest.raises(ProofError, match="root mismatch"):
        merkle.verify_inclusion(
            leaf_hash=tampered,
            index=3,
            tree_size=8,
            proof=merkle.inclusion_proof(LEAF_HASHES, 3),
            root=root_of(8),
        )


def test_it_rejects_a_proof_for_the_wrong_index():
    proof = merkle.inclusion_proof(LEAF_HASHES, 5)
    with pytest.raises(ProofError, match="root mismatch"):
        merkle.verify_inclusion(leaf_hash=LEAF_HASHES[5], index=4, tree_size=8, proof=proof, root=root_of(8))


def test_it_reports_an_index_outside_the_tree():
    with pytest.raises(ProofError, match="leaf index 8 is out of range for a tree of size 8"):
        merkle.verify_inclusion(leaf_hash=LEAF_HASHES[0], index=8, tree_size=8, proof=[], root=root_of(8))


def test_it_reports_a_truncated_proof_as_the_wrong_length():
    proof = merkle.inclusion_proof(LEAF_HASHES, 5)[:-1]
    with pytest.raises(
        ProofError, match="wrong proof length: leaf 5 of a tree of size 8 needs 3 hashes, got 2"
    ):
        merkle.verify_inclusion(leaf_hash=LEAF_HASHES[5], index=5, tree_size=8, proof=proof, root=root_of(8))


def test_it_rejects_a_proof_checked_against_the_wrong_tree_size():
    proof = merkle.inclusion_proof(LEAF_HASHES, 5)
    with pytest.raises(
        ProofError, match="wrong proof length: leaf 5 of a tree of size 16 needs 4 hashes, got 3"
    ):
        merkle.verify_inclusion(leaf_hash=LEAF_HASHES[5], index=5, tree_size=16, proof=proof, root=root_of(8))
    with pytest.raises(ProofError, match="root mismatch"):
        merkle.verify_inclusion(
            leaf_hash=LEAF_HASHES[5], index=5, tree_size=6, proof=proof[:2], root=root_of(8)
        )


def test_a_proof_alone_does_not_pin_the_tree_size_so_the_size_must_come_from_the_signed_head():
    # Leaf 5 has the same path shape in trees of 7 and 8 leaves: the verifier cannot tell them apart.
    # Only a signature over (size, root) together binds them, which is why callers must take both from
    # a signed tree head and never from the party presenting the proof.
    proof = merkle.inclusion_proof(LEAF_HASHES, 5)
    merkle.verify_inclusion(leaf_hash=LEAF_HASHES[5], index=5, tree_size=7, proof=proof, root=root_of(8))


def test_it_rejects_a_proof_whose_hashes_are_in_swapped_order():
    proof = merkle.inclusion_proof(LEAF_HASHES, 2)
    proof[0], proof[1] = proof[1], proof[0]
    with pytest.raises(ProofError, match="root mismatch"):
        merkle.verify_inclusion(leaf_hash=LEAF_HASHES[2], index=2, tree_size=8, proof=proof, root=root_of(8))


def test_it_rejects_hashes_of_the_wrong_size():
    with pytest.raises(ProofError, match="leaf_hash must be 32 bytes"):
        merkle.verify_inclusion(leaf_hash=b"", index=0, tree_size=1, proof=[], root=root_of(1))
    with pytest.raises(ProofError, match="root must be 32 bytes"):
        merkle.verify_inclusion(leaf_hash=LEAF_HASHES[0], index=0, tree_size=1, proof=[], root=b"")


def test_a_single_leaf_tree_has_an_empty_proof_and_its_leaf_is_the_root():
    merkle.verify_inclusion(leaf_hash=LEAF_HASHES[0], index=0, tree_size=1, proof=[], root=LEAF_HASHES[0])


def test_it_rejects_any_leaf_in_an_empty_tree():
    with pytest.raises(ProofError, match="out of range"):
        merkle.verify_inclusion(
            leaf_hash=SOME_HASH, index=0, tree_size=0, proof=[], root=bytes.fromhex(EMPTY_ROOT)
        )


# --- Consistency proofs: published vectors


@pytest.mark.parametrize(("old_size", "new_size", "expected"), CONSISTENCY_VECTORS)
def test_it_builds_the_published_consistency_proofs(old_size, new_size, expected):
    assert hexes(merkle.consistency_proof(LEAF_HASHES[:new_size], old_size)) == expected


@pytest.mark.parametrize(("old_size", "new_size", "expected"), CONSISTENCY_VECTORS)
def test_it_verifies_the_published_consistency_proofs(old_size, new_size, expected):
    merkle.verify_consistency(
        old_size=old_size,
        new_size=new_size,
        old_root=root_of(old_size),
        new_root=root_of(new_size),
        proof=unhex(expected),
    )


def test_it_refuses_to_build_a_consistency_proof_from_a_larger_tree():
    with pytest.raises(ValueError, match="old size 9"):
        merkle.consistency_proof(LEAF_HASHES, 9)


def test_an_empty_tree_is_consistent_with_every_tree():
    merkle.verify_consistency(
        old_size=0, new_size=8, old_root=bytes.fromhex(EMPTY_ROOT), new_root=root_of(8), proof=[]
    )
    assert merkle.consistency_proof(LEAF_HASHES, 0) == []


# --- Consistency proofs: negative cases (the mutations of transparency-dev's corruptConsistencyProof)


def corrupted_consistency_probes(old_size, new_size, old_root, new_root, proof):
    wrong_root = hashlib.sha256(b"WrongRoot").digest()
    probes = {
        "old size - 1": {"old_size": old_size - 1},
        "old size + 1": {"old_size": old_size + 1},
        "old size ^ 2": {"old_size": old_size ^ 2},
        "new size * 2": {"new_size": new_size * 2},
        "new size // 2": {"new_size": new_size // 2},
        "wrong old root": {"old_root": wrong_root},
        "wrong new root": {"new_root": wrong_root},
        "swapped roots": {"old_root": new_root, "new_root": old_root},
        "empty proof": {"proof": []},
        "trailing garbage": {"proof": proof + [b""]},
        "trailing old root": {"proof": proof + [old_root]},
        "trailing new root": {"proof": proof + [new_root]},
        "preceding garbage": {"proof": [b""] + proof},
        "preceding old root": {"proof": [old_root] + proof},
        "preceding new root": {"proof": [new_root] + proof},
        "preceding proof[0]": {"proof": [proof[0]] + proof},
        "truncated proof": {"proof": proof[:-1]},
    }
    for i in range(len(proof)):
        tampered = proof[:i] + [flip_bit(proof[i], 4)] + proof[i + 1 :]
        probes[f"flipped bit in proof[{i}]"] = {"proof": tampered}
    if len(proof) > 1:
        probes["swapped order"] = {"proof": proof[::-1]}
    original = {
        "old_size": old_size,
        "new_size": new_size,
        "old_root": old_root,
        "new_root": new_root,
        "proof": proof,
    }
    for name, change in probes.items():
        yield name, {**original, **change}


@pytest.mark.parametrize(("old_size", "new_size", "expected"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_it_rejects_every_corruption_of_the_published_consistency_proofs(old_size, new_size, expected):
    accepted = []
    probes = corrupted_consistency_probes(
        old_size, new_size, root_of(old_size), root_of(new_size), unhex(expected)
    )
    for name, args in probes:
        try:
            merkle.verify_consistency(**args)
        except ProofError:
            continue
        accepted.append(name)
    assert accepted == []


def test_it_reports_a_log_that_shrank():
    with pytest.raises(ProofError, match="old size 8 is larger than new size 7"):
        merkle.verify_consistency(old_size=8, new_size=7, old_root=root_of(8), new_root=root_of(7), proof=[])


def test_it_reports_two_roots_for_the_same_size():
    with pytest.raises(ProofError, match="root mismatch: two different roots for the same tree size 8"):
        merkle.verify_consistency(old_size=8, new_size=8, old_root=root_of(7), new_root=root_of(8), proof=[])


def test_it_reports_a_rewritten_history_as_an_old_root_mismatch():
    rewritten = LEAF_HASHES[:2] + [merkle.leaf_hash(b"forged")] + LEAF_HASHES[3:]
    proof = merkle.consistency_proof(rewritten, 6)
    with pytest.raises(ProofError, match="root mismatch: the proof rebuilds old root"):
        merkle.verify_consistency(
            old_size=6, new_size=8, old_root=root_of(6), new_root=merkle.root(rewritten), proof=proof
        )


def test_it_reports_a_truncated_consistency_proof_as_the_wrong_length():
    proof = merkle.consistency_proof(LEAF_HASHES, 6)[:-1]
    with pytest.raises(ProofError, match="wrong proof length: sizes 6 to 8 need 3 hashes, got 2"):
        merkle.verify_consistency(
            old_size=6, new_size=8, old_root=root_of(6), new_root=root_of(8), proof=proof
        )


def test_it_reports_a_proof_given_for_identical_sizes():
    with pytest.raises(ProofError, match="need 0 hashes, got 1"):
        merkle.verify_consistency(
            old_size=8, new_size=8, old_root=root_of(8), new_root=root_of(8), proof=[root_of(8)]
        )


# --- Properties over random trees


def sizes_to_check():
    rng = random.Random(9162)
    edges = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 127, 128, 129, 255, 256, 257, 300]
    return sorted(set(edges + rng.sample(range(1, 301), 15)))


@pytest.mark.parametrize("size", sizes_to_check())
def test_every_inclusion_proof_matches_the_rfc_and_verifies_and_a_flipped_byte_fails(size):
    rng = random.Random(size)
    leaf_hashes = random_leaf_hashes(rng, size)
    tree_root = merkle.root(leaf_hashes)
    for index in range(size):
        proof = merkle.inclusion_proof(leaf_hashes, index)
        assert proof == ref_path(index, leaf_hashes), index
        assert len(proof) == merkle.inclusion_proof_length(index=index, tree_size=size)
        merkle.verify_inclusion(
            leaf_hash=leaf_hashes[index], index=index, tree_size=size, proof=proof, root=tree_root
        )

        tampered_leaf = bytearray(leaf_hashes[index])
        tampered_leaf[rng.randrange(32)] ^= 1 << rng.randrange(8)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(
                leaf_hash=bytes(tampered_leaf), index=index, tree_size=size, proof=proof, root=tree_root
            )
        if proof:
            tampered_proof = [bytearray(h) for h in proof]
            tampered_proof[rng.randrange(len(proof))][rng.randrange(32)] ^= 1 << rng.randrange(8)
            with pytest.raises(ProofError):
                merkle.verify_inclusion(
                    leaf_hash=leaf_hashes[index],
                    index=index,
                    tree_size=size,
                    proof=[bytes(h) for h in tampered_proof],
                    root=tree_root,
                )


@pytest.mark.parametrize("size", sizes_to_check())
def test_every_consistency_proof_matches_the_rfc_and_verifies_and_a_flipped_byte_fails(size):
    rng = random.Random(-size)
    leaf_hashes = random_leaf_hashes(rng, size)
    new_root = merkle.root(leaf_hashes)
    for old_size in range(0, size + 1):
        old_root = merkle.root(leaf_hashes[:old_size])
        proof = merkle.consistency_proof(leaf_hashes, old_size)
        if 0 < old_size < size:
            assert proof == ref_subproof(old_size, leaf_hashes, True), old_size
            assert len(proof) == merkle.consistency_proof_length(old_size=old_size, new_size=size)
        merkle.verify_consistency(
            old_size=old_size, new_size=size, old_root=old_root, new_root=new_root, proof=proof
        )
        if proof:
            tampered = [bytearray(h) for h in proof]
            tampered[rng.randrange(len(proof))][rng.randrange(32)] ^= 1 << rng.randrange(8)
            with pytest.raises(ProofError):
                merkle.verify_consistency(
                    old_size=old_size,
                    new_size=size,
                    old_root=old_root,
                    new_root=new_root,
                    proof=[bytes(h) for h in tampered],
                )
