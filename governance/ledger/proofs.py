"""Proofs against a signed tree head: inclusion of an event, consistency of two heads, bundles."""

from __future__ import annotations

from collections.abc import Sequence

from ..models import LabelEvent, TreeHead
from . import merkle, signing
from .chain import LedgerError, LedgerIntegrityError, _fetch, _leaf, event_document
from .events import geometries_of_events, payload_states
from .tree_heads import _cached_chunks, _chunk_size, latest_tree_head, tree_head_document


class _Prover:
    """Builds proofs against one tree size from cached chunk roots and the leaves of at most a few chunks."""

    def __init__(self, dataset_id: int, tree_size: int):
        self.dataset_id = dataset_id
        self.size = tree_size
        self.chunk = _chunk_size()
        self._chunk_roots: list[bytes] | None = None

    def leaves(self, lo: int, hi: int) -> list[bytes]:
        rows = _fetch(
            "SELECT hash FROM governance_labelevent WHERE dataset_id = %s AND seq >= %s AND seq < %s ORDER BY seq",
            [self.dataset_id, lo, hi],
        )
        if len(rows) != hi - lo:
            raise LedgerIntegrityError(
                f"events {lo}..{hi - 1} are not all in the ledger: run `ledger verify`"
            )
        return [_leaf(h) for (h,) in rows]

    def chunk_roots(self) -> list[bytes]:
        """Roots of every chunk of the tree, the last one partial; computed from events where not cached."""
        if self._chunk_roots is None:
            full = self.size // self.chunk
            cached = _cached_chunks(self.dataset_id, below=full)
            roots = []
            for index in range(full):
                if index in cached:
                    roots.append(bytes.fromhex(cached[index]))
                else:
                    roots.append(merkle.root(self.leaves(index * self.chunk, (index + 1) * self.chunk)))
            if self.size % self.chunk:
                roots.append(merkle.root(self.leaves(full * self.chunk, self.size)))
            self._chunk_roots = roots
        return self._chunk_roots

    def root(self) -> bytes:
        return merkle.root(self.chunk_roots())

    def range_root(self, lo: int, hi: int) -> bytes:
        """Root of leaves lo..hi-1 (an RFC 6962 subtree), from chunk roots when it starts on a chunk."""
        if lo % self.chunk == 0 and hi - lo >= self.chunk:
            first, full_end = lo // self.chunk, hi // self.chunk
            roots = self.chunk_roots()[first:full_end] if hi != self.size else self.chunk_roots()[first:]
            if hi != self.size and hi % self.chunk:
                roots = [*roots, merkle.root(self.leaves(full_end * self.chunk, hi))]
            return merkle.root(roots)
        return merkle.root(self.leaves(lo, hi))

    def inclusion(self, index: int) -> list[bytes]:
        # Levels below CHUNK_LEVEL pair leaves inside the chunk; the levels above pair chunk roots.
        chunk_index = index // self.chunk
        lo = chunk_index * self.chunk
        inner = merkle.inclusion_proof(self.leaves(lo, min(lo + self.chunk, self.size)), index - lo)
        return inner + merkle.inclusion_proof(self.chunk_roots(), chunk_index)

    def consistency(self, old_size: int) -> list[bytes]:
        """RFC 9162 section 2.1.4.1 PROOF(m, D[n]) with subtree roots from ``range_root``."""
        if old_size in (0, self.size):
            return []

        def subproof(m: int, lo: int, hi: int, whole_old_tree: bool) -> list[bytes]:
            n = hi - lo
            if m == n:
                return [] if whole_old_tree else [self.range_root(lo, hi)]
            k = 1 << ((n - 1).bit_length() - 1)
            if m <= k:
                return subproof(m, lo, lo + k, whole_old_tree) + [self.range_root(lo + k, hi)]
            return subproof(m - k, lo + k, hi, False) + [self.range_root(lo, lo + k)]

        return subproof(old_size, 0, self.size, True)


def inclusion_proof_for(event: LabelEvent, *, head: TreeHead | None = None, _prover=None) -> dict:
    """Return ``{"leaf_index", "tree_size", "audit_path"}`` proving the event is in ``head`` (default: the latest).

    Raises LedgerError when no signed head covers the event yet (it was appended after the last
    publication), LedgerIntegrityError when the stored ledger does not lead to the signed root.
    """
    head = head or latest_tree_head(event.dataset_id)
    if head is None or head.tree_size <= event.seq:
        raise LedgerError(f"event {event.seq} is not covered by a signed tree head yet")
    prover = _prover or _Prover(event.dataset_id, head.tree_size)
    path = prover.inclusion(event.seq)
    try:
        merkle.verify_inclusion(
            leaf_hash=_leaf(event.hash),
            index=event.seq,
            tree_size=head.tree_size,
            proof=path,
            root=bytes.fromhex(head.root_hash),
        )
    except merkle.ProofError as error:
        raise LedgerIntegrityError(
            f"event {event.seq} does not prove into the signed root: {error}"
        ) from None
    return {"leaf_index": event.seq, "tree_size": head.tree_size, "audit_path": [h.hex() for h in path]}


def consistency_proof_for(old_head: TreeHead, new_head: TreeHead) -> list[str]:
    """Return the RFC 9162 consistency proof (hex) that ``old_head``'s tree is a prefix of ``new_head``'s."""
    if old_head.dataset_id != new_head.dataset_id:
        raise LedgerError("the two tree heads belong to different datasets")
    if old_head.tree_size > new_head.tree_size:
        raise LedgerError("the old tree head is larger than the new one")
    proof = _Prover(new_head.dataset_id, new_head.tree_size).consistency(old_head.tree_size)
    try:
        merkle.verify_consistency(
            old_size=old_head.tree_size,
            new_size=new_head.tree_size,
            old_root=bytes.fromhex(old_head.root_hash),
            new_root=bytes.fromhex(new_head.root_hash),
            proof=proof,
        )
    except merkle.ProofError as error:
        raise LedgerIntegrityError(f"the stored ledger does not link the two tree heads: {error}") from None
    return [h.hex() for h in proof]


def proof_bundle(event: LabelEvent, *, head: TreeHead | None = None) -> dict:
    """Return what ``verify_offline.py --bundle`` checks: the signed head, the event and its proof."""
    head = head or latest_tree_head(event.dataset_id)
    bundle = {
        "tree_head": tree_head_document(head) if head else None,
        "event": event_document(event),
        "proof": inclusion_proof_for(event, head=head),
        "public_key": public_key_pem(),
    }
    if event.label_uid is not None:
        # The geometries the event binds by hash, from the label rows (``events``' rule), for the
        # verifier to check against it; an event without label states has none to carry.
        geometries = geometries_of_events([event])
        if geometries or any(True for _ in payload_states(event.payload)):
            bundle["geometries"] = geometries
    return bundle


def proofs_for(events: Sequence[LabelEvent], *, head: TreeHead) -> list[tuple[dict | None, str]]:
    """(proof, "") for each event of ``head``'s dataset, or (None, why not) where there is no valid proof."""
    prover = _Prover(head.dataset_id, head.tree_size)
    results: list[tuple[dict | None, str]] = []
    for event in events:
        if event.dataset_id != head.dataset_id:
            results.append((None, "the event belongs to another dataset"))
            continue
        try:
            results.append((inclusion_proof_for(event, head=head, _prover=prover), ""))
        except LedgerError as error:
            results.append((None, str(error)))
    return results


def public_key_pem() -> str:
    """The registry's public key (PEM) that verifies tree head signatures."""
    return signing.public_key_pem()
