"""Signed tree heads: the Merkle root over a dataset's events, signed, and the cache of chunk roots."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from marketplace.models import Dataset, DatasetVersion

from ..models import LedgerChunk, TreeHead
from ..verify_offline import tree_head_message
from . import merkle, signing
from .chain import LedgerIntegrityError, _chain_hashes, _fetch, _iso, _leaf, _lock_chain_head

# 2**10 = 1024 events per cached block: a proof reads one block of leaves and n/1024 block roots.
CHUNK_LEVEL = 10


class _TreeBuilder:
    """Takes leaves in order; keeps the roots of full chunks and the leaves of the current one."""

    def __init__(self, chunk: int):
        self.chunk = chunk
        self.chunk_roots: list[bytes] = []
        self.partial: list[bytes] = []
        self.size = 0

    def add(self, leaf: bytes) -> bytes | None:
        """Add a leaf; return the root of the chunk it completes, if it completes one."""
        self.partial.append(leaf)
        self.size += 1
        if len(self.partial) == self.chunk:
            completed = merkle.root(self.partial)
            self.chunk_roots.append(completed)
            self.partial = []
            return completed
        return None

    def root(self) -> bytes:
        """The RFC 6962 root of the leaves so far: the chunk roots are nodes of that tree."""
        if not self.partial:
            return merkle.root(self.chunk_roots)
        return merkle.root([*self.chunk_roots, merkle.root(self.partial)])


def _chunk_size() -> int:
    return 1 << CHUNK_LEVEL


def tree_head_document(head: TreeHead) -> dict:
    """Return the signed tree head as ``verify_offline.py`` reads it."""
    return {
        "dataset": head.dataset.slug,
        "tree_size": head.tree_size,
        "root_hash": head.root_hash,
        "timestamp": _iso(head.timestamp),
        "key_id": head.key_id,
        "signature": head.signature,
    }


def sign_tree_head(*, dataset: Dataset, version: DatasetVersion | None = None, at=None) -> TreeHead:
    """Compute the Merkle root over all of the dataset's events, sign it, store and return the head.

    ``at`` dates the head (default: now); only a loader of past history (the demo) passes it.

    Refuses (LedgerIntegrityError) when the stored ledger no longer extends a head signed before, or a
    cached chunk disagrees with the events: signing over a rewritten log would launder it.
    """
    with transaction.atomic():
        slug, last_seq, _ = _lock_chain_head(dataset)
        size = last_seq + 1
        earlier = list(TreeHead.objects.filter(dataset_id=dataset.pk).order_by("tree_size", "pk"))
        earlier_at = {}
        for head in earlier:
            earlier_at.setdefault(head.tree_size, []).append(head)
        stored = _cached_chunks(dataset.pk)
        builder, missing = _TreeBuilder(_chunk_size()), []
        for head in earlier_at.get(0, []):
            _check_extends(head, builder)
        for seq, hash_hex in _chain_hashes(dataset.pk):
            if seq != builder.size:
                raise LedgerIntegrityError(f"event {builder.size} is missing from the ledger of {slug}")
            completed = builder.add(_leaf(hash_hex))
            if completed is not None:
                index = len(builder.chunk_roots) - 1
                if index not in stored:
                    missing.append(index)
                elif stored[index] != completed.hex():
                    raise LedgerIntegrityError(
                        f"cached chunk {index} of {slug} disagrees with events {index * builder.chunk}.."
                    )
            for head in earlier_at.get(builder.size, []):
                _check_extends(head, builder)
        if builder.size != size:
            raise LedgerIntegrityError(f"the ledger of {slug} has {builder.size} events, expected {size}")
        if earlier and earlier[-1].tree_size > size:
            raise LedgerIntegrityError(
                f"a tree head of {slug} was signed at size {earlier[-1].tree_size}, the ledger has {size}"
            )
        LedgerChunk.objects.bulk_create(
            [
                LedgerChunk(
                    dataset_id=dataset.pk, level=CHUNK_LEVEL, index=i, root_hash=builder.chunk_roots[i].hex()
                )
                for i in missing
            ],
            ignore_conflicts=True,
        )
        head = TreeHead(
            dataset_id=dataset.pk,
            version=version,
            tree_size=size,
            root_hash=builder.root().hex(),
            # A head is never dated before one already signed: verifiers check that time only moves on.
            timestamp=max([at, *(h.timestamp for h in earlier)]) if at else timezone.now(),
            key_id=signing.key_id(),
        )
        head.dataset = dataset if dataset.slug == slug else Dataset.objects.get(pk=dataset.pk)
        head.signature = signing.sign(tree_head_message(tree_head_document(head)))
        head.save()
        return head


def _check_extends(head: TreeHead, builder: _TreeBuilder) -> None:
    if builder.root().hex() != head.root_hash:
        raise LedgerIntegrityError(
            f"the ledger no longer extends the tree head signed at size {head.tree_size} ({head.timestamp}): "
            "run `manage.py ledger verify`"
        )


def _cached_chunks(dataset_id: int, below: int | None = None) -> dict[int, str]:
    sql = 'SELECT "index", root_hash FROM governance_ledgerchunk WHERE dataset_id = %s AND level = %s'
    params = [dataset_id, CHUNK_LEVEL]
    if below is not None:
        sql += ' AND "index" < %s'
        params.append(below)
    return dict(_fetch(sql, params))


def latest_tree_head(dataset: Dataset | int) -> TreeHead | None:
    """The newest (largest) signed tree head of a dataset."""
    dataset_id = dataset if isinstance(dataset, int) else dataset.pk
    return (
        TreeHead.objects.filter(dataset_id=dataset_id)
        .select_related("dataset", "version")
        .order_by("-tree_size", "-timestamp", "-pk")
        .first()
    )
