"""Ledger verification in parallel chunks: the same verdict as ``verification.verify_dataset``, at the floor.

The chain is cut into chunks of whole Merkle blocks (multiples of 2**``tree_heads.CHUNK_LEVEL`` events, a block).
Each chunk, on its own, streams its events (``COPY ... TO STDOUT`` on PostgreSQL, server-formatted so
no timestamp is parsed in Python), recomputes every hash with the fast canonical encoder, checks the
links inside the chunk and returns:

- its first ``prev_hash`` and its last ``hash``: the combining step checks that chunk k starts where
  chunk k-1 ended (the genesis hash for chunk 0), which is the only link a chunk cannot see;
- the roots of its full Merkle blocks, and the root of the partial block at every tree head size that
  falls inside it: the combining step builds every signed root from those without re-reading a leaf;
- the broken events it found (bounded).

Chunks run in a pool of forked processes (``verify_dataset(workers=N)``, PostgreSQL, the CLI), in
sequence (one worker, or SQLite), or as Celery tasks recording their results on a
``LedgerVerification`` job row (``create_verification``, enqueued by ``tasks.start_verification``; the API's ``POST /api/v1/ledger/verify/``), so
an operator with several workers verifies on all of them. The last chunk to finish combines.

Tree head signatures are checked once, by the combining step, with the offline verifier's own check.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson
from django.db import connection, transaction
from django.utils import timezone

from marketplace.models import Dataset

from ..models import LedgerVerification, TreeHead
from ..verify_offline import _HEX64, GENESIS_PREV_HASH
from . import content_verification, merkle, signing, tree_heads, verification
from .canonical import canonical_event
from .chain import _document, _fetch, _leaf
from .tree_heads import _cached_chunks, tree_head_document


def _block() -> int:
    """Events per Merkle block: the ledger's cached chunk size (read at call time, as the ledger does)."""
    return 1 << tree_heads.CHUNK_LEVEL


# A chunk is at least this many blocks, so a task's fixed cost (a connection, a query) stays small.
MIN_CHUNK_BLOCKS = 16
MAX_CHUNK_PROBLEMS = verification.MAX_PROBLEMS + 1
FILLER = b"\x00" * 32  # stands in for a missing or unusable leaf, as verification.verify_dataset does

__all__ = ["ChunkResult", "combine", "plan_chunks", "create_verification", "verify_chunk", "verify_dataset"]


@dataclass
class ChunkResult:
    """What one chunk found; plain JSON (``as_dict``) so a Celery task can record it on the job row."""

    lo: int
    hi: int
    events: int = 0
    first_prev: str | None = None  # prev_hash of event lo, None when event lo is missing
    last_hash: str | None = None  # hash of event hi-1, None when it is missing
    block_roots: list[str] = field(default_factory=list)  # full blocks lo/BLOCK .. hi/BLOCK-1
    partial_roots: dict[str, str] = field(default_factory=dict)  # str(tree size) -> partial block root
    broken: list[list] = field(default_factory=list)  # [seq, event id or None, reason]

    def as_dict(self) -> dict:
        return {
            "lo": self.lo,
            "hi": self.hi,
            "events": self.events,
            "first_prev": self.first_prev,
            "last_hash": self.last_hash,
            "block_roots": self.block_roots,
            "partial_roots": self.partial_roots,
            "broken": self.broken,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ChunkResult:
        return cls(**data)


def plan_chunks(size: int, parts: int) -> list[tuple[int, int]]:
    """Cut 0..size into about ``parts`` ranges of whole blocks (the last one may end mid-block)."""
    if size <= 0:
        return []
    block = _block()
    blocks = -(-size // block)
    per = max(MIN_CHUNK_BLOCKS, -(-blocks // max(parts, 1)))
    bounds = list(range(0, size, per * block)) + [size]
    return list(itertools.pairwise(bounds))


# --------------------------------------------------------------------------- one chunk

# The same server-side formatting as verification._PG_EVENT_ROWS: the timestamps come out as _iso
# writes them and the uuid as str(UUID), so a row needs no conversion but the payload's parse.
# No column says whether the payload holds an integer orjson reads as a float (19+ digits): a regex per
# row costs PostgreSQL more than the rest of the query (500k rows: 4.2 s against 1.6 s). An event whose
# hash does not match is parsed again with the standard library instead (``_digest``).
_PG_COPY = r"""
COPY (SELECT id, seq, label_uid::text, action, actor,
       to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
       to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
       guideline_version, source, model_name, model_version, payload::text,
       delivery_id, version_number, prev_hash, hash
FROM governance_labelevent WHERE dataset_id = {dataset_id} AND seq >= {lo} AND seq < {hi} ORDER BY seq)
TO STDOUT
"""
_COPY_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "v": "\v"}
_COPY_ESCAPE = re.compile(r"\\(.)")


def _unescape(field: str) -> str:
    """A text field of COPY's text format as it was stored (PostgreSQL escapes only these on output)."""
    if "\\" not in field:
        return field
    return _COPY_ESCAPE.sub(lambda m: _COPY_UNESCAPES.get(m.group(1), m.group(1)), field)


def _int_or_none(field: str) -> int | None:
    return None if field == "\\N" else int(field)


def _text_or_none(field: str) -> str | None:
    return None if field == "\\N" else _unescape(field)


def _events(dataset_id: int, slug: str, lo: int, hi: int) -> Iterator[tuple]:
    """(id, seq, document, prev_hash, hash, payload text or None) of events lo..hi-1 in seq order.

    The document is ``chain._document``'s, its payload read with orjson on PostgreSQL (the text comes
    along for ``_digest``'s second reading); on SQLite the ORM's rows, payload read by the standard library.
    """
    if connection.vendor != "postgresql":
        for row in verification._event_rows(dataset_id, lo, hi):
            yield row[0], row[1], _document(slug, *row[1:-2]), row[-2], row[-1], None
        return
    # COPY streams the rows with no cursor round trips. Each row is split here rather than by psycopg's
    # row parser, which costs three times as much per row (bench/scale).
    sql = _PG_COPY.format(dataset_id=int(dataset_id), lo=int(lo), hi=int(hi))
    orjson_loads = orjson.loads
    with connection.cursor() as cursor, cursor.connection.cursor() as raw, raw.copy(sql) as copy:
        for block in copy:
            for line in str(block, "utf-8").split("\n"):
                if not line:
                    continue
                f = line.split("\t")
                if "\\" in line:  # an escaped character or a NULL somewhere: most rows have neither
                    f = [
                        *f[:2],
                        *map(_text_or_none, f[2:12]),
                        *map(_int_or_none, f[12:14]),
                        *map(_text_or_none, f[14:]),
                    ]
                else:
                    f[12], f[13] = int(f[12]), int(f[13])
                seq = int(f[1])
                try:
                    payload = orjson_loads(f[11])
                except orjson.JSONDecodeError:
                    payload = json.loads(
                        f[11]
                    )  # what orjson refuses the standard library reads, or raises on
                document = {
                    "dataset": slug, "seq": seq, "label_uid": f[2], "action": f[3], "actor": f[4],
                    "occurred_at": f[5], "recorded_at": f[6], "guideline_version": f[7], "source": f[8],
                    "model_name": f[9], "model_version": f[10], "payload": payload,
                    "delivery_id": f[12], "version_number": f[13],
                }  # fmt: skip
                yield int(f[0]), seq, document, f[14], f[15], f[11]


def _prev_bytes(prev_hash) -> bytes | None:
    """The 32 bytes of a stored prev_hash, or None where ``event_hash`` would refuse it."""
    if isinstance(prev_hash, str) and _HEX64.fullmatch(prev_hash):
        return bytes.fromhex(prev_hash)
    return None


def _digest(document: dict, prev: bytes, hash_hex, payload_text: str | None) -> bytes | None:
    """The event's SHA-256 when it is the stored ``hash_hex``, else None: ``event_hash(...) == hash_hex``.

    orjson reads an integer beyond 64 bits as a float, which does not hash as stored: an event that does
    not match is read again with the standard library before it is called edited. A float orjson made
    of such an integer never matches by chance: the ledger stores a float of 1e16 or more as the integer
    (``chain._plain``), so no stored event hashes over one.
    """
    sha256 = hashlib.sha256
    try:
        digest = sha256(canonical_event(document) + prev).digest()
        if digest.hex() == hash_hex:
            return digest
        if payload_text is None:
            return None
        document["payload"] = json.loads(payload_text)
        digest = sha256(canonical_event(document) + prev).digest()
    except (ValueError, TypeError):
        return None
    return digest if digest.hex() == hash_hex else None


_UNCHECKED = object()  # equal to no prev_hash, None included


def _leaf_or_filler(hash_hex) -> bytes:
    try:
        return _leaf(hash_hex)
    except (ValueError, TypeError):
        return FILLER


def verify_chunk(
    *, dataset_id: int, slug: str, lo: int, hi: int, head_sizes: Iterable[int] = ()
) -> ChunkResult:
    """Verify events lo..hi-1 on their own (lo on a block boundary): hashes, inner links, Merkle blocks."""
    block = _block()
    if lo % block:
        raise ValueError(f"a chunk starts on a block boundary, not at {lo}")
    result = ChunkResult(lo=lo, hi=hi)
    wanted = {s for s in head_sizes if lo < s <= hi and s % block}
    leaves: list[bytes] = []
    position, expected_prev = lo, None
    # The last event's hash when it matched its content: then it is 64 lowercase hex, and its bytes are
    # the digest, so the next event's prev_hash needs neither the check nor the conversion again.
    checked_hash, checked_digest = _UNCHECKED, b""

    def add(leaf: bytes) -> None:
        nonlocal position
        leaves.append(leaf)
        position += 1
        if position in wanted:
            result.partial_roots[str(position)] = merkle.root(leaves).hex()
        if len(leaves) == block:
            result.block_roots.append(merkle.root(leaves).hex())
            leaves.clear()

    def broken(seq: int, event_id: int | None, reason: str) -> None:
        if len(result.broken) < MAX_CHUNK_PROBLEMS:
            result.broken.append([seq, event_id, reason])

    sha256 = hashlib.sha256
    for event_id, seq, document, prev_hash, hash_hex, payload_text in _events(dataset_id, slug, lo, hi):
        if seq > position:  # a gap: events position..seq-1 are gone
            broken(position, None, f"missing: the ledger jumps from event {position - 1} to {seq}")
            while position < seq:
                add(FILLER)
            expected_prev = None
        if seq == lo:
            result.first_prev = prev_hash
        elif expected_prev is not None and prev_hash != expected_prev:
            broken(
                seq,
                event_id,
                f"prev_hash does not link to event {seq - 1}: events removed, inserted or reordered",
            )
        prev = checked_digest if prev_hash == checked_hash else _prev_bytes(prev_hash)
        digest = None if prev is None else _digest(document, prev, hash_hex, payload_text)
        if digest is None:
            broken(seq, event_id, verification.EDITED)
            add(_leaf_or_filler(hash_hex))
            checked_hash = _UNCHECKED
        else:
            add(sha256(b"\x00" + digest).digest())  # merkle.leaf_hash of the hash's bytes
            checked_hash, checked_digest = hash_hex, digest
        result.events += 1
        expected_prev = hash_hex
        if seq == hi - 1:
            result.last_hash = hash_hex
    if position < hi:  # the chunk's tail is gone (the last chunk ends at the size read at the start)
        broken(position, None, f"missing: events {position}..{hi - 1} are not in the ledger")
        while position < hi:
            add(FILLER)
    if leaves and hi % block == 0:  # cannot happen: a full block was closed in add()
        raise AssertionError("a chunk ending on a block boundary left leaves over")
    return result


# --------------------------------------------------------------------------- combining


def combine(
    *, dataset: Dataset, size: int, chunks: list[ChunkResult], trusted_heads: Iterable[dict] = ()
) -> verification.VerificationReport:
    """The report of the whole chain from its chunks: links between chunks, signed roots, cached blocks."""
    report = verification.VerificationReport(dataset=dataset.slug)
    by_size = _checked_heads(report, dataset, trusted_heads)
    chunks = sorted(chunks, key=lambda c: c.lo)
    previous_last = GENESIS_PREV_HASH
    block_roots: list[bytes] = []
    partial: dict[int, bytes] = {}
    block = _block()
    for chunk in chunks:
        if chunk.first_prev is not None and previous_last is not None and chunk.first_prev != previous_last:
            reason = (
                "prev_hash is not the genesis hash: earlier events removed?"
                if chunk.lo == 0
                else f"prev_hash does not link to event {chunk.lo - 1}: events removed, inserted or reordered"
            )
            report._broken(chunk.lo, None, reason)
        for seq, event_id, reason in chunk.broken:
            report._broken(seq, event_id, reason)
        previous_last = chunk.last_hash
        block_roots.extend(bytes.fromhex(h) for h in chunk.block_roots)
        partial.update({int(s): bytes.fromhex(h) for s, h in chunk.partial_roots.items()})
        report.events += chunk.events

    cached = _cached_chunks(dataset.pk)
    for index, root in enumerate(block_roots):
        if index in cached and cached[index] != root.hex():
            report._problem(f"cached Merkle chunk {index} disagrees with the events (cache tampered)")

    def root_at(tree_size: int) -> bytes:
        roots = block_roots[: tree_size // block]
        if tree_size % block:
            roots = [*roots, partial[tree_size]]
        return merkle.root(roots)

    for tree_size in sorted(by_size):
        if tree_size > size:
            for origin, head in by_size[tree_size]:
                report._broken(
                    size,
                    None,
                    f"truncated: the {origin} tree head signed {head['timestamp']} covers {tree_size} events, "
                    f"the ledger has {size}",
                )
            continue
        root = root_at(tree_size).hex()
        for origin, head in by_size[tree_size]:
            if head["root_hash"] != root:
                report._problem(
                    f"{origin} tree head at size {head['tree_size']} ({head['timestamp']}): the events do not "
                    "lead to its signed root: the log was rewritten or the head forged"
                )
    report.root_hash = root_at(size).hex()
    return report


def _checked_heads(
    report: verification.VerificationReport, dataset: Dataset, trusted_heads
) -> dict[int, list]:
    """Stored and trusted heads whose signatures verify, by size; the others are reported."""
    public_key = signing.public_key()
    stored = TreeHead.objects.filter(dataset_id=dataset.pk).select_related("dataset")
    heads = [("stored", tree_head_document(h)) for h in stored]
    heads += [("trusted", dict(head)) for head in trusted_heads]
    report.tree_heads = len(heads)
    by_size: dict[int, list[tuple[str, dict]]] = {}
    for origin, head in heads:
        failures: list[str] = []
        if not verification._head_failures(head, public_key, failures) or failures:
            size = head.get("tree_size") if isinstance(head, dict) else None
            report._problem(f"{origin} tree head at size {size}: {'; '.join(failures)}")
            continue
        if head["dataset"] != dataset.slug:
            report._problem(
                f"{origin} tree head at size {head['tree_size']} is for dataset {head['dataset']}"
            )
            continue
        by_size.setdefault(head["tree_size"], []).append((origin, head))
    return by_size


def _chain_size(dataset_id: int) -> int:
    last = _fetch("SELECT max(seq) FROM governance_labelevent WHERE dataset_id = %s", [dataset_id])
    return 0 if last[0][0] is None else last[0][0] + 1


def _head_sizes(dataset: Dataset, trusted_heads: Iterable[dict]) -> list[int]:
    sizes = set(TreeHead.objects.filter(dataset_id=dataset.pk).values_list("tree_size", flat=True))
    sizes |= {
        h["tree_size"] for h in trusted_heads if isinstance(h, dict) and type(h.get("tree_size")) is int
    }
    return sorted(sizes)


# --------------------------------------------------------------------------- in-process


def verify_dataset(
    *, dataset: Dataset, trusted_heads: Iterable[dict] = (), workers: int = 1
) -> verification.VerificationReport:
    """``verification.verify_dataset``'s verdict, chunk by chunk: in ``workers`` forked processes on PostgreSQL
    outside a transaction (each reads what is committed), else in this process one chunk after another.
    """
    trusted_heads = list(trusted_heads)
    size = _chain_size(dataset.pk)
    sizes = [*_head_sizes(dataset, trusted_heads), size]
    parallel = workers > 1 and connection.vendor == "postgresql" and not connection.in_atomic_block
    plan = plan_chunks(size, max(1, workers) * 2)
    if parallel:
        results = _in_pool(dataset.pk, dataset.slug, plan, sizes, workers)
    else:
        results = [
            verify_chunk(dataset_id=dataset.pk, slug=dataset.slug, lo=lo, hi=hi, head_sizes=sizes)
            for lo, hi in plan
        ]
    return combine(dataset=dataset, size=size, chunks=results, trusted_heads=trusted_heads)


def _in_pool(dataset_id: int, slug: str, plan, sizes, workers: int) -> list[ChunkResult]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # The children must not share this process's database socket: close it before forking; each child
    # opens its own on first use and closes it when its chunk is done.
    connection.close()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_chunk_in_worker, dataset_id, slug, lo, hi, sizes) for lo, hi in plan]
        return [ChunkResult.from_dict(f.result()) for f in futures]


def _chunk_in_worker(dataset_id: int, slug: str, lo: int, hi: int, sizes: list[int]) -> dict:
    try:
        return verify_chunk(dataset_id=dataset_id, slug=slug, lo=lo, hi=hi, head_sizes=sizes).as_dict()
    finally:
        connection.close()


# --------------------------------------------------------------------------- as a job (API, Celery)


def create_verification(
    *, dataset: Dataset, user=None, trusted_heads: Iterable[dict] = (), parts: int | None = None
):
    """Create a verification job row and return ``(job, plan)``, the chunks its tasks are to verify.

    ``governance.ledger.tasks.start_verification`` enqueues the chunk tasks (the interface enqueues).
    """
    from django.conf import settings

    trusted_heads = list(trusted_heads)
    size = _chain_size(dataset.pk)
    if parts is None:
        parts = getattr(settings, "LEDGER_VERIFY_PARTS", 8)
    plan = plan_chunks(size, parts)
    job = LedgerVerification.objects.create(
        dataset=dataset,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
        tree_size=size,
        head_sizes=[*_head_sizes(dataset, trusted_heads), size],
        trusted_heads=trusted_heads,
        chunks_total=len(plan),
        status=LedgerVerification.Status.QUEUED if plan else LedgerVerification.Status.RUNNING,
    )
    return job, plan


def run_chunk(*, job_id: int, index: int, lo: int, hi: int) -> None:
    """Verify one chunk of a job and record it; the chunk that completes the job combines."""
    job = LedgerVerification.objects.select_related("dataset").filter(pk=job_id).first()
    if job is None or job.status in (LedgerVerification.Status.DONE, LedgerVerification.Status.FAILED):
        return
    if str(index) in job.chunk_results:
        return  # a retried task whose result is already recorded
    LedgerVerification.objects.filter(pk=job_id, status=LedgerVerification.Status.QUEUED).update(
        status=LedgerVerification.Status.RUNNING
    )
    result = verify_chunk(
        dataset_id=job.dataset_id, slug=job.dataset.slug, lo=lo, hi=hi, head_sizes=job.head_sizes
    )
    with transaction.atomic():
        # Lock the job row: two chunks finishing at once must not both miss (or both take) the last slot.
        job = LedgerVerification.objects.select_for_update().get(pk=job_id)
        job.chunk_results[str(index)] = result.as_dict()
        job.chunks_done = len(job.chunk_results)
        job.save(update_fields=["chunk_results", "chunks_done"])
        complete = job.chunks_done == job.chunks_total
    if complete:
        finish_verification(job_id=job_id)


def finish_verification(*, job_id: int) -> None:
    """Check the released versions' content (as ``ledger verify`` does), combine the chunks, mark the job done."""
    job = LedgerVerification.objects.select_related("dataset").get(pk=job_id)
    if job.status == LedgerVerification.Status.DONE:
        return
    # Outside the row lock: it reads every row of every released version, which can take a while.
    differences = content_verification.verify_dataset(job.dataset)
    with transaction.atomic():
        job = LedgerVerification.objects.select_for_update().select_related("dataset").get(pk=job_id)
        if job.status == LedgerVerification.Status.DONE:
            return
        chunks = [ChunkResult.from_dict(r) for r in job.chunk_results.values()]
        report = combine(
            dataset=job.dataset, size=job.tree_size, chunks=chunks, trusted_heads=job.trusted_heads
        )
        job.report = job_report(report, differences)
        job.status = LedgerVerification.Status.DONE
        job.finished_at = timezone.now()
        job.chunk_results = {}  # the report holds what matters; block roots are bulk
        job.save(update_fields=["report", "status", "finished_at", "chunk_results"])


# What a job's report (and ``ledger verify``) checked, said in the report so no reader assumes more.
CHECKED = (
    "chain: every event's canonical JSON re-encoded and hashed, every prev_hash link, chunk boundaries",
    "Merkle roots: the root at every stored and trusted tree head's size, and the cached Merkle blocks",
    "signatures: every stored and trusted tree head's Ed25519 signature",
    "content: every released version's rows against its signed content hash, guideline files re-hashed",
)


def job_report(
    report: verification.VerificationReport, differences: list[content_verification.ContentDifference]
) -> dict:
    """The chain's report with the content check's verdict: ``ok`` only when both hold."""
    shown = [_bounded(str(d)) for d in differences[: verification.MAX_PROBLEMS]]
    return {
        **report.as_dict(),
        "ok": report.ok and not differences,
        "ledger_ok": report.ok,
        "content_ok": not differences,
        "content_differences": shown,
        "checked": list(CHECKED),
    }


MAX_DIFFERENCE_CHARS = 500  # a difference names a row by its key, which the supplier chose


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_DIFFERENCE_CHARS else text[: MAX_DIFFERENCE_CHARS - 1] + "…"


def fail_verification(*, job_id: int, reason: str) -> None:
    """Mark a job failed (a chunk task gave up)."""
    LedgerVerification.objects.filter(pk=job_id).exclude(status=LedgerVerification.Status.DONE).update(
        status=LedgerVerification.Status.FAILED, error=reason[:500], finished_at=timezone.now()
    )
