"""Verification: recompute a dataset's chain and Merkle roots and check them against every tree head."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

from django.db import connection

from marketplace.models import Dataset

from ..models import LabelEvent, TreeHead
from ..verify_offline import GENESIS_PREV_HASH

# The offline verifier's own tree head check, so the server judges a signed head exactly as auditors do.
from ..verify_offline import _check_signed_head as _head_failures
from . import chain, signing
from .canonical import event_hash  # orjson fast path, byte-identical to verify_offline's rule
from .chain import _DOC_COLUMNS, _document, _fetch, _leaf, _stream
from .tree_heads import _cached_chunks, _chunk_size, _TreeBuilder, tree_head_document


@dataclass
class VerificationReport:
    """What ``verify_dataset`` found: intact, or the first broken event and every problem seen."""

    dataset: str
    events: int = 0
    tree_heads: int = 0
    first_broken_seq: int | None = None
    first_broken_event_id: int | None = None
    reason: str = ""
    problems: list[str] = field(default_factory=list)
    root_hash: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"ok": self.ok, **asdict(self)}

    def _broken(self, seq: int, event_id: int | None, reason: str) -> None:
        if self.first_broken_seq is None or seq < self.first_broken_seq:
            self.first_broken_seq, self.first_broken_event_id, self.reason = seq, event_id, reason
        self._problem(f"event {seq}: {reason}")

    def _problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("... more problems not listed")
        if not self.reason:
            self.reason = text


MAX_PROBLEMS = 50


def verify_dataset(
    *, dataset: Dataset, trusted_heads: Iterable[dict] = (), workers: int = 1
) -> VerificationReport:
    """Recompute the dataset's chain and Merkle roots and check them against every tree head.

    Each event's hash is recomputed from its fields and its link checked against the event before it;
    each stored tree head's signature and root are checked against the events it covers; so are
    ``trusted_heads``, signed head documents kept outside the database (by an auditor, in a
    publication), which is what catches a truncated or rewritten log whose stored heads were replaced.
    The report names the first broken event (seq and reason) and lists every problem found.

    ``workers`` > 1 re-hashes event contents in that many forked processes while this one checks links
    and roots (PostgreSQL, outside a transaction only: the workers read what is committed). For the CLI
    and benchmarks; a web request should not fork.
    """
    report = VerificationReport(dataset=dataset.slug)
    by_size = _heads_by_size(report, dataset, trusted_heads)

    builder = _TreeBuilder(_chunk_size())
    cached = _cached_chunks(dataset.pk)
    _check_heads_at(report, builder, by_size)
    expected_prev = GENESIS_PREV_HASH
    slug = dataset.slug
    filler = b"\x00" * 32  # stands in for an unusable or missing leaf: later roots cannot match anyway
    parallel = workers > 1 and connection.vendor == "postgresql" and not connection.in_atomic_block
    if parallel:
        pool, content_checks = _start_content_checks(dataset.pk, slug, workers)
        rows = ((event_id, seq, None, prev, h) for event_id, seq, prev, h in _link_rows(dataset.pk))
    else:
        rows = ((row[0], row[1], row[2:-2], row[-2], row[-1]) for row in _event_rows(dataset.pk))
    for event_id, seq, columns, prev_hash, hash_hex in rows:
        position = builder.size
        if seq != position:
            if seq > position:  # a gap: events position..seq-1 are gone
                report._broken(
                    position, None, f"missing: the ledger jumps from event {position - 1} to {seq}"
                )
                for _ in range(seq - position):
                    builder.add(filler)
            else:
                report._broken(seq, event_id, "seq out of order")
        elif prev_hash != expected_prev:
            reason = (
                "prev_hash is not the genesis hash: earlier events removed?"
                if seq == 0
                else f"prev_hash does not link to event {seq - 1}: events removed, inserted or reordered"
            )
            report._broken(seq, event_id, reason)
        if columns is not None and not _content_matches(slug, seq, columns, prev_hash, hash_hex):
            report._broken(seq, event_id, EDITED)
        expected_prev = hash_hex
        try:
            leaf = _leaf(hash_hex)
        except ValueError:
            leaf = filler
        completed = builder.add(leaf)
        if completed is not None:
            index = len(builder.chunk_roots) - 1
            if index in cached and cached[index] != completed.hex():
                report._problem(f"cached Merkle chunk {index} disagrees with the events (cache tampered)")
        report.events += 1
        if builder.size in by_size:
            _check_heads_at(report, builder, by_size)

    if parallel:
        try:
            for future in content_checks:
                for seq, event_id in future.result():
                    report._broken(seq, event_id, EDITED)
        finally:
            pool.shutdown()
    for size in sorted(s for s in by_size if s > builder.size):
        for origin, head in by_size[size]:
            report._broken(
                builder.size,
                None,
                f"truncated: the {origin} tree head signed {head['timestamp']} covers {size} events, "
                f"the ledger has {builder.size}",
            )
    report.root_hash = builder.root().hex()
    return report


def _heads_by_size(report: VerificationReport, dataset: Dataset, trusted_heads: Iterable[dict]) -> dict:
    """Stored and trusted tree heads whose signature holds, by tree size; the others are reported."""
    public_key = signing.public_key()
    stored_heads = TreeHead.objects.filter(dataset_id=dataset.pk).select_related("dataset")
    heads = [("stored", tree_head_document(h)) for h in stored_heads]
    heads += [("trusted", dict(head)) for head in trusted_heads]
    report.tree_heads = len(heads)
    by_size: dict[int, list[tuple[str, dict]]] = {}
    for origin, head in heads:
        failures: list[str] = []
        if not _head_failures(head, public_key, failures) or failures:
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


# PostgreSQL formats the two timestamps exactly as _iso does and the uuid exactly as str(UUID), so the
# rows need no conversion in Python: a million datetime parses would take longer than the hashing.
_PG_EVENT_ROWS = """
SELECT id, seq, label_uid::text, action, actor,
       to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
       to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
       guideline_version, source, model_name, model_version, payload::text,
       delivery_id, version_number, prev_hash, hash
FROM governance_labelevent WHERE dataset_id = %s AND seq >= %s AND seq < %s ORDER BY seq
"""


def _event_rows(dataset_id: int, lo: int = 0, hi: int = 2**63 - 1) -> Iterator[tuple]:
    """Yield (id, *_DOC_COLUMNS, prev_hash, hash) of events lo..hi-1 in seq order, ready for _document."""
    if connection.vendor == "postgresql":
        loads = json.loads
        for row in _stream(_PG_EVENT_ROWS, [dataset_id, lo, hi]):
            yield (*row[:11], loads(row[11]), *row[12:])
        return
    rows = (
        LabelEvent.objects.filter(dataset_id=dataset_id, seq__gte=lo, seq__lt=hi)
        .order_by("seq")
        .values_list("id", *_DOC_COLUMNS, "prev_hash", "hash")
    )
    yield from rows.iterator(chunk_size=chain.BATCH_SIZE)


EDITED = "hash does not match the event's content: edited"


def _content_matches(slug: str, seq: int, columns: Sequence, prev_hash: str, hash_hex: str) -> bool:
    try:
        return event_hash(_document(slug, seq, *columns), prev_hash) == hash_hex
    except (ValueError, TypeError):
        return False


def _link_rows(dataset_id: int) -> Iterator[tuple]:
    return _stream(
        "SELECT id, seq, prev_hash, hash FROM governance_labelevent WHERE dataset_id = %s ORDER BY seq",
        [dataset_id],
    )


def _start_content_checks(dataset_id: int, slug: str, workers: int):
    """Fork ``workers`` processes that each re-hash one seq range; return the pool and their futures."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    last = _fetch("SELECT max(seq) FROM governance_labelevent WHERE dataset_id = %s", [dataset_id])[0][0]
    size = (last or 0) + 1
    bounds = [size * k // workers for k in range(workers + 1)]
    # The children must not share this process's database socket: close it before forking (all
    # children start at the first submit), and each child opens its own.
    connection.close()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    futures = [
        pool.submit(_content_mismatches, dataset_id, slug, lo, hi) for lo, hi in itertools.pairwise(bounds)
    ]
    return pool, futures


def _content_mismatches(dataset_id: int, slug: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """(seq, id) of the events in seq range lo..hi-1 whose content does not match their hash (in a worker)."""
    try:
        return [
            (row[1], row[0])
            for row in _event_rows(dataset_id, lo, hi)
            if not _content_matches(slug, row[1], row[2:-2], row[-2], row[-1])
        ]
    finally:
        connection.close()


def _check_heads_at(report: VerificationReport, builder: _TreeBuilder, by_size: dict) -> None:
    heads = by_size.get(builder.size)
    if not heads:
        return
    root = builder.root().hex()
    for origin, head in heads:
        if head["root_hash"] != root:
            report._problem(
                f"{origin} tree head at size {head['tree_size']} ({head['timestamp']}): the events do not "
                "lead to its signed root: the log was rewritten or the head forged"
            )
