"""RFC 6962 / RFC 9162 Merkle tree: root, inclusion and consistency proofs, and their verification.

Pure Python, standard library only, no Django: the ledger builds on it and the tests pin it to the
published Certificate Transparency vectors.

Hashing (RFC 9162 section 2.1.1):
    leaf_hash(entry)        = SHA-256(0x00 || entry)
    node_hash(left, right)  = SHA-256(0x01 || left || right)
    root([])                = SHA-256(b"")

The RFC defines the tree recursively, splitting n leaves at k, the largest power of two smaller than
n. That tree is exactly the one obtained by pairing nodes level by level from the left and promoting
an unpaired last node unchanged to the next level, which is how ``root`` computes it: n - 1 hashes,
no recursion, no slicing of the leaf list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class ProofError(ValueError):
    """A Merkle proof did not verify; the message says which check failed."""


def leaf_hash(entry: bytes) -> bytes:
    """Return the RFC 6962 hash of one log entry: SHA-256(0x00 || entry)."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash of the given leaf hashes (SHA-256 of b"" for an empty tree)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    sha256 = hashlib.sha256  # local name: this loop runs n - 1 times
    while len(level) > 1:
        paired = [
            sha256(_NODE_PREFIX + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the RFC 9162 audit path (PATH) for the leaf at ``index``, from the leaf up."""
    size = len(leaf_hashes)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is out of range for a tree of size {size}")
    proof = []
    level = list(leaf_hashes)
    while len(level) > 1:
        sibling = index ^ 1
        # An unpaired last node has no sibling at this level: it is promoted, not hashed.
        if sibling < len(level):
            proof.append(level[sibling])
        paired = [node_hash(a, b) for a, b in zip(level[0::2], level[1::2], strict=False)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
        index >>= 1
    return proof


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the RFC 9162 consistency proof (PROOF) that the first ``old_size`` leaves are a prefix."""
    new_size = len(leaf_hashes)
    if not 0 <= old_size <= new_size:
        raise ValueError(f"old size {old_size} is not between 0 and the tree size {new_size}")
    if old_size in (0, new_size):
        return []
    return _subproof(leaf_hashes, old_size, 0, new_size, True)


def _subproof(leaf_hashes: Sequence[bytes], m: int, lo: int, hi: int, whole_old_tree: bool) -> list[bytes]:
    """Return SUBPROOF(m, D[lo:hi], b) of RFC 9162 section 2.1.4.1, working on index ranges."""
    n = hi - lo
    if m == n:
        return [] if whole_old_tree else [root(leaf_hashes[lo:hi])]
    k = _split(n)
    if m <= k:
        return _subproof(leaf_hashes, m, lo, lo + k, whole_old_tree) + [root(leaf_hashes[lo + k : hi])]
    return _subproof(leaf_hashes, m - k, lo + k, hi, False) + [root(leaf_hashes[lo : lo + k])]


def _split(n: int) -> int:
    """Return the largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof_length(*, index: int, tree_size: int) -> int:
    """Return how many hashes an inclusion proof for ``index`` in a tree of ``tree_size`` has."""
    # Below the point where the paths to `index` and to the last leaf diverge every level has a
    # sibling; above it, only the levels where `index` is a right child do.
    inner = (index ^ (tree_size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(*, old_size: int, new_size: int) -> int:
    """Return how many hashes a consistency proof from ``old_size`` to ``new_size`` has (0 < old < new)."""
    shift = (old_size & -old_size).bit_length() - 1  # trailing zero bits of old_size
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = ((old_size - 1) >> inner).bit_count()
    # When old_size is a power of two the old root is a node of the new tree and is left out.
    seed = 0 if old_size == 1 << shift else 1
    return seed + inner - shift + border


def verify_inclusion(
    *, leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof with RFC 9162 section 2.1.3.2; raise ProofError saying what failed."""
    if not 0 <= index < tree_size:
        raise ProofError(f"leaf index {index} is out of range for a tree of size {tree_size}")
    _check_hash_sizes(leaf_hash=leaf_hash, root=root, proof=proof)
    expected = inclusion_proof_length(index=index, tree_size=tree_size)
    if len(proof) != expected:
        raise ProofError(
            f"wrong proof length: leaf {index} of a tree of size {tree_size} needs {expected} hashes, "
            f"got {len(proof)}"
        )
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("wrong proof length: the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("wrong proof length: the proof is shorter than the path to the root")
    if r != root:
        raise ProofError(f"root mismatch: the proof leads to {r.hex()}, expected {root.hex()}")


def verify_consistency(
    *, old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check a consistency proof with RFC 9162 section 2.1.4.2; raise ProofError saying what failed."""
    if old_size < 0 or new_size < 0:
        raise ProofError(f"tree sizes must not be negative (old {old_size}, new {new_size})")
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}: the log shrank")
    _check_hash_sizes(old_root=old_root, new_root=new_root, proof=proof)
    if old_size == 0 or old_size == new_size:
        if proof:
            raise ProofError(
                f"wrong proof length: sizes {old_size} and {new_size} need 0 hashes, got {len(proof)}"
            )
        if old_size == new_size and old_root != new_root:
            raise ProofError(f"root mismatch: two different roots for the same tree size {new_size}")
        return
    expected = consistency_proof_length(old_size=old_size, new_size=new_size)
    if len(proof) != expected:
        raise ProofError(
            f"wrong proof length: sizes {old_size} to {new_size} need {expected} hashes, got {len(proof)}"
        )
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("wrong proof length: the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("wrong proof length: the proof is shorter than the path to the root")
    if fr != old_root:
        raise ProofError(f"root mismatch: the proof rebuilds old root {fr.hex()}, expected {old_root.hex()}")
    if sr != new_root:
        raise ProofError(f"root mismatch: the proof leads to new root {sr.hex()}, expected {new_root.hex()}")


def _check_hash_sizes(*, proof: Sequence[bytes], **named: bytes) -> None:
    """Raise ProofError if a named hash or a proof element is not a 32-byte digest."""
    for name, value in named.items():
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise ProofError(f"{name} must be {HASH_SIZE} bytes")
    for i, value in enumerate(proof):
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise ProofError(f"proof hash {i} must be {HASH_SIZE} bytes")
