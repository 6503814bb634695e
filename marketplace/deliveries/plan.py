"""Validating a delivery into a plan: every image and label checked, rows spooled to disk."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import marshal
import os
import pickle
import posixpath
import re
import tempfile
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np

from governance.models import Annotator, GuidelineVersion

from ..blobs import blob_key
from ..formats import model as fmt
from ..formats.keytable import FirstByDigest
from ..formats.provenance import ProvenanceCoverage, apply_provenance, looks_like_email, read_provenance
from ..models import (
    AttributeSpec,
    Category,
    Dataset,
    Delivery,
    Label,
)
from . import image_pool
from .archive import detect_format, read_delivery
from .images import EXTENSIONS_FOR_FORMAT, IMAGE_EXTENSIONS, ImageChecker
from .report import (
    FORMATS,
    ITEM_KEY_MAX,
    PROVENANCE_FILE,
    SPOOL_BATCH,
    FreshUids,
    Progress,
    Report,
    _aware,
    label_uid,
    normalise_split,
    uuid_of_int,
)
from .schema import CategorySpec, merge_attribute_specs, merge_schema

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- provenance defaults


def parse_defaults(
    defaults: dict | None, *, name: str = "defaults"
) -> tuple[fmt.Provenance, list[fmt.Problem]]:
    """Delivery-level provenance defaults (the provenance.jsonl defaults keys) as a Provenance."""
    if not defaults:
        return fmt.Provenance(), []
    if not isinstance(defaults, dict):
        return fmt.Provenance(), [
            fmt.Problem(file=name, message="defaults must be a JSON object", code="invalid")
        ]
    line = json.dumps({"defaults": defaults}).encode()
    _, provenance, problems = read_provenance(io.BytesIO(line), name=name)
    for p in problems:
        p.line = None  # there is one line, and it is not in a file the supplier wrote
    return provenance, problems


def merge_defaults(first: fmt.Provenance, then: fmt.Provenance) -> fmt.Provenance:
    """``first``'s fields, with what it leaves empty taken from ``then``."""
    merged = dataclasses.replace(first)
    for f in dataclasses.fields(fmt.Provenance):
        if f.name == "source":
            continue
        if getattr(merged, f.name) in (None, "") and getattr(then, f.name) not in (None, ""):
            setattr(merged, f.name, getattr(then, f.name))
    if merged.source == fmt.HUMAN and then.source != fmt.HUMAN:
        merged.source = then.source
    return merged


def find_provenance_file(names: list[str]) -> list[str]:
    found = [n for n in names if posixpath.basename(n) == PROVENANCE_FILE]
    return sorted(found, key=lambda n: (n.count("/"), n))


# --------------------------------------------------------------------------- the spool


_MARSHALLED, _PICKLED = b"M", b"P"


def _encode_batch(batch: list) -> bytes:
    """A batch as bytes: marshal when it can, else pickle; the first byte says which.

    The label spool's batches are plain tuples of str, int, float, bool, None, lists and dicts, which
    marshal writes and reads back about twice as fast as pickle (no class look-ups, no memo) and as
    exactly (the same types and values: -0.0, NaN, big ints, lone surrogates). What it refuses -- a
    dataclass, a NamedTuple, a datetime, any subclass -- raises ValueError here and goes to pickle.
    """
    try:
        return _MARSHALLED + marshal.dumps(batch)
    except ValueError:
        return _PICKLED + pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)


def _read_batches(file) -> Iterator[list]:
    """The batches of a spool file from its position on: each an 8-byte length, then _encode_batch's bytes."""
    while header := file.read(8):
        blob = memoryview(file.read(int.from_bytes(header, "little")))
        # Only ever our own file, written by _encode_batch in this process: not untrusted input.
        yield marshal.loads(blob[1:]) if blob[:1] == _MARSHALLED else pickle.loads(blob[1:])  # noqa: S301, S302


class Spool:
    """Rows written to a temporary file in batches (``_encode_batch``) and read back in order."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.batch: list = []
        self.count = 0

    def add(self, row) -> None:
        self.batch.append(row)
        self.count += 1
        if len(self.batch) >= SPOOL_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.batch:
            blob = _encode_batch(self.batch)
            self.file.write(len(blob).to_bytes(8, "little"))
            self.file.write(blob)
            self.batch = []

    def batches(self) -> Iterator[list]:
        self._flush()
        self.file.seek(0)
        yield from _read_batches(self.file)

    def batches_apart(self) -> Iterator[list]:
        """``batches()`` through a file position of its own, for a reader in another thread.

        ``batches()`` seeks the one file object; a second thread reading it at the same time would take
        the other's position. On Linux the spool is opened again by its descriptor (``/proc/self/fd``),
        which gives an independent position; elsewhere the batches are read here, up front.

        The pending rows are written here, in the caller's thread, not when the reader starts: the
        reader's thread writing them while ``batches()`` writes them too wrote the last batch twice or
        interleaved (a duplicate item key, or an unpickling error, under load).
        """
        self._flush()
        self.file.flush()
        path = f"/proc/self/fd/{self.file.fileno()}"
        if not os.path.exists(path):
            return iter(list(self.batches()))
        return self._read_apart(path)

    @staticmethod
    def _read_apart(path: str) -> Iterator[list]:
        with open(path, "rb") as own:
            yield from _read_batches(own)

    def close(self) -> None:
        self.file.close()


class LabelSpool(Spool):
    """The label rows, ``(uid, LabelRow)`` pairs, spooled as plain tuples ``(uid.int, position, *row)``.

    Pickling a UUID goes through its ``__getstate__`` (an Enum read per label) and a named tuple
    through its class: plain tuples of ints, strings and dicts cost half as much to write, marshal
    takes them (unless a row has a datetime), and the pairs come back from ``batches()`` as they went in.

    ``position``: where the row's image is among the checked source's names (``Plan.numbering``), as
    the label pass found it, or None; the writer finds the item's id by it (``batches_with_positions``).
    """

    def add(self, row, position: int | None = None) -> None:
        uid, label = row
        super().add((uid.int, position, *label))

    def batches(self) -> Iterator[list]:
        make_uid, make_row = uuid_of_int, LabelRow._make
        for batch in super().batches():
            yield [(make_uid(t[0]), make_row(t[2:])) for t in batch]

    def batches_with_positions(self) -> Iterator[list]:
        """``batches()`` as ``(uid, LabelRow, position)`` triples."""
        make_uid, make_row = uuid_of_int, LabelRow._make
        for batch in super().batches():
            yield [(make_uid(t[0]), make_row(t[2:]), t[1]) for t in batch]


# --------------------------------------------------------------------------- validation


class LabelRow(NamedTuple):
    """A validated label, spooled until the write transaction (names, not ids, for its relations)."""

    item: str
    category: str
    geometry_type: str
    geometry: dict
    attributes: dict
    iscrowd: bool
    is_final: bool
    annotator: str
    guideline_version: int | None
    source: str
    model_name: str
    model_version: str
    made_at: datetime | None
    source_ref: str
    source_id: str = ""  # the tool's own annotation id, for the next delivery's lineage


# Column limits, read once: a model field look-up per label is measurable at a million labels.
ANNOTATOR_MAX = Annotator._meta.get_field("pseudonym").max_length
MODEL_FIELDS_MAX = {name: Label._meta.get_field(name).max_length for name in ("model_name", "model_version")}


@dataclass
class ItemRow:
    key: str
    storage_key: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    split: str
    attributes: dict


@dataclass
class Plan:
    """Everything the write transaction needs, validated."""

    format: str
    categories: dict[str, CategorySpec]
    attribute_specs: list[dict]
    items: Spool
    labels: LabelSpool
    annotators: set[str]
    guideline_ids: dict[str, int]
    counts: dict
    provenance: dict
    # The checked source's names, numbered (position(key), count()): the writer keeps each item's id
    # by its key's position there (8 bytes) instead of a copy of the key. None: keys are kept.
    numbering: object | None = None

    def close(self) -> None:
        self.items.close()
        self.labels.close()


def _guideline_index(dataset: Dataset) -> dict[str, list[int]]:
    index: dict[str, list[int]] = defaultdict(list)
    for tag, pk in GuidelineVersion.objects.filter(guideline__dataset=dataset).values_list("tag", "pk"):
        index[tag].append(pk)
    return index


def validate_delivery(
    *, source, delivery: Delivery, report: Report, progress: Progress | None = None
) -> Plan:
    """Read and check everything; spool the rows to write. Errors go to the report, not raised."""
    dataset = delivery.dataset
    progress = progress or Progress(delivery.pk)
    format = delivery.format if delivery.format in FORMATS else detect_format(source)
    if format != delivery.format:
        Delivery.objects.filter(pk=delivery.pk).update(format=format)  # the page shows it at once
    images = image_pool.checker_for(source)  # checks on every core for a large delivery
    parsed = read_delivery(source, format, image_size=images.size)
    table, defaults, sidecars = _provenance_inputs(source, delivery, report)

    # The schema builds on the latest version as it is now; a delivery of the same dataset that
    # commits in between changes the number this one gets (taken under a lock), not its schema.
    previous = dataset.versions.order_by("-number").first()
    previous_categories = list(Category.objects.filter(schema__version=previous)) if previous else []
    previous_attributes = list(AttributeSpec.objects.filter(schema__version=previous)) if previous else []
    categories = merge_schema(parsed.categories, previous_categories, report)
    attribute_specs = merge_attribute_specs(parsed.categories, previous_attributes)

    items = Spool()
    labels = LabelSpool()
    try:
        checked = _check_items(
            image_pool.ahead(images, parsed.items),
            items,
            source=source,
            images=images,
            report=report,
            progress=progress,
        )
        progress.set(45, stage="checking labels", force=True, items=items.count, labels=0)
        coverage = ProvenanceCoverage()
        # Images a reader asked about (YOLO) and that failed were reported by the reader.
        checked.rejected |= {k for k, r in images.results.items() if isinstance(r, fmt.FormatError)}
        tally = _LabelTally(guidelines=_guideline_index(dataset))
        labels_in = _with_provenance(_provenance_references(format, parsed.labels), table, defaults, coverage)
        expected = max(items.count, 1) * 2
        for n, record in enumerate(labels_in, start=1):
            packed, position = checked.sizes.find(record.item_key)
            row = _check_label(
                record,
                packed,
                categories,
                tally.guidelines,
                tally.guideline_ids,
                tally.unknown_tags,
                report,
                checked.rejected,
            )
            if n % 1000 == 0:
                progress.set(
                    45 + 40 * n / (n + expected), stage="checking labels", items=items.count, labels=n
                )
            if row is not None:
                tally.add(
                    dataset_id=dataset.pk,
                    record=record,
                    row=row,
                    labels=labels,
                    report=report,
                    position=position,
                )
        tally.report_unknown_guidelines(report)
        # The readers' own findings are complete once both streams are exhausted.
        report.extend(parsed.problems)
        unmatched = coverage.unmatched(table)
        if unmatched:
            shown = ", ".join(repr(r) for r in unmatched[:5])
            report.add(
                fmt.Problem(
                    file=sidecars[0] if sidecars else PROVENANCE_FILE,
                    message=f"{len(unmatched)} record(s) name labels the delivery does not have: {shown}"
                    + (" ..." if len(unmatched) > 5 else ""),
                    code="unmatched_provenance",
                )
            )
        if not items.count and not checked.rejected and not report.has_errors:
            report.error("", "the delivery has no image", code="no_items")
        for name, types in tally.seen_types.items():
            spec = categories[name]
            spec.geometry_types += sorted(types - set(spec.geometry_types))
        provenance = _provenance_summary(coverage, sidecars=sidecars, unmatched=len(unmatched))
        counts = {
            "items": items.count,
            "labels": tally.finals,
            "candidate_labels": tally.candidates,
            "labels_by_kind": dict(sorted(tally.kinds.items())),
            "categories": len(categories),
            "annotators": len(tally.annotators),
            "splits": dict(checked.splits),
            "bytes": checked.total_bytes,
            "duplicate_images": items.count - checked.distinct,
        }
    except BaseException:
        items.close()
        labels.close()
        raise
    return Plan(
        format=format,
        categories=categories,
        attribute_specs=attribute_specs,
        items=items,
        labels=labels,
        annotators=tally.annotators,
        guideline_ids=tally.guideline_ids,
        counts=counts,
        provenance=provenance,
        numbering=checked.sizes.source,
    )


def _provenance_inputs(source, delivery: Delivery, report: Report) -> tuple[dict, fmt.Provenance, list[str]]:
    """The sidecar's per-label table, and its defaults completed by the upload's; the sidecars found."""
    table: dict[str, fmt.Provenance] = {}
    file_defaults = fmt.Provenance()
    sidecars = find_provenance_file(source.names())
    if len(sidecars) > 1:
        report.error(
            sidecars[1], f"a second {PROVENANCE_FILE} ({sidecars[0]} is used)", code="duplicate_file"
        )
    if sidecars:
        with source.open(sidecars[0]) as stream:
            table, file_defaults, sidecar_problems = read_provenance(stream, name=sidecars[0])
        report.extend(sidecar_problems)
    upload_defaults, default_problems = parse_defaults(delivery.defaults)
    report.extend(default_problems)
    return table, merge_defaults(file_defaults, upload_defaults), sidecars


class _SizeTable:
    """Item key -> its packed size (_pack_size), as a dict; dense by the key's position among the
    source's names when the source numbers them (8 bytes a file, not a dict slot, an int and the
    key's str: ~160 bytes an image)."""

    def __init__(self, source=None):
        numbered = all(callable(getattr(source, m, None)) for m in ("position", "name_at", "count"))
        self.source = source if numbered else None
        self.dense = np.zeros(source.count() if self.source is not None else 0, dtype=np.int64)
        self.other: dict[str, int] = {}

    def _position(self, key) -> int | None:
        return self.source.position(key) if self.source is not None and isinstance(key, str) else None

    def find(self, key) -> tuple[int | None, int | None]:
        """``(self.get(key), where key is among the source's names)``: one look-up of the key."""
        position = self._position(key)
        if position is not None and self.dense[position]:
            return int(self.dense[position]), position
        return self.other.get(key), position

    def __setitem__(self, key: str, packed: int) -> None:
        position = self._position(key)
        if position is not None and 0 < packed < 2**63:
            self.dense[position] = packed
        else:
            self.other[key] = packed

    def get(self, key: str) -> int | None:
        return self.find(key)[0]

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]


@dataclass
class _ItemsChecked:
    """What the item pass leaves for the label pass and the counts."""

    # key -> the real (w, h, recheck?) packed in one int (_pack_size)
    sizes: _SizeTable = field(default_factory=_SizeTable)
    rejected: set[str] = field(default_factory=set)  # items refused (and reported): labels skipped silently
    # SHA-256 digest (32 bytes) -> the first item with that content: its position among the source's
    # names when it has one (no str kept, ~20 bytes an image in a FirstByDigest), else its key.
    seen_content: FirstByDigest = field(default_factory=lambda: FirstByDigest(0))

    def first_with(self, digest: bytes) -> str | None:
        first = self.seen_content.get(digest)
        if isinstance(first, int):
            return self.sizes.source.name_at(first)
        return first

    def remember(self, digest: bytes, key: str) -> None:
        position = self.sizes._position(key)
        self.seen_content.add(digest, position if position is not None else key)

    splits: Counter = field(default_factory=Counter)
    total_bytes: int = 0
    distinct: int = 0  # how many contents seen_content held when the item pass ended

    def forget_contents(self) -> None:
        """Keep the count of distinct contents, drop the table (~20 bytes an archive entry): the label
        pass, where the read peaks at ten times the images, does not need it."""
        self.distinct = len(self.seen_content)
        self.seen_content = FirstByDigest(0)


def _check_items(
    records: Iterable[fmt.ItemRecord], items: Spool, *, source, images: ImageChecker, report: Report, progress
) -> _ItemsChecked:
    """Check every declared image (path, duplicates, the image itself, its size) and spool its row."""
    image_files = sum(1 for n in source.names() if n.lower().endswith(IMAGE_EXTENSIONS)) or 1
    progress.set(5, stage="checking images", force=True, items=0)
    sizes = _SizeTable(source)
    # Only 8 bytes of each digest are kept; a match on them is confirmed by hashing the first copy again.
    confirm = (lambda position: _sha256_of(source, source.name_at(position))) if sizes.source else None
    checked = _ItemsChecked(sizes=sizes, seen_content=FirstByDigest(len(sizes.dense), confirm=confirm))
    for n, record in enumerate(records, start=1):
        row = _check_item(record, checked, images=images, report=report)
        if row is None:
            continue
        items.add(row)
        progress.set(5 + 40 * n / max(image_files, n), stage="checking images", items=n)
    checked.forget_contents()
    return checked


def _sha256_of(source, name: str) -> bytes | None:
    """The SHA-256 digest of one of the source's files, read again (None if it cannot be read)."""
    digest = hashlib.sha256()
    try:
        with source.open(name) as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    except (fmt.FormatError, OSError, KeyError):
        return None
    return digest.digest()


def _check_item(record: fmt.ItemRecord, checked: _ItemsChecked, *, images: ImageChecker, report: Report):
    """One item's row, or None after reporting why it cannot be written."""
    where = record.source_ref or record.key
    if len(record.key) > ITEM_KEY_MAX:
        report.error(**_where(where), message=f"path longer than {ITEM_KEY_MAX} characters", code="invalid")
        checked.rejected.add(record.key)
        return None
    if record.key in checked.sizes or record.key in checked.rejected:
        report.error(
            **_where(where), message=f"image {record.key!r} is declared twice", code="duplicate_image"
        )
        return None
    result = images.check(record.key)
    images.forget(record.key)
    if isinstance(result, fmt.FormatError):
        report.extend(result.problems)
        checked.rejected.add(record.key)
        return None
    declared = (record.width, record.height)
    if None not in declared and declared != (result.width, result.height):
        hint = ""
        if declared == (result.raw_width, result.raw_height):
            hint = " (the size before its EXIF orientation is applied)"
        report.error(
            **_where(where),
            message=f"{record.key!r} is declared {declared[0]}x{declared[1]}{hint} but the image "
            f"is {result.width}x{result.height}",
            code="size_mismatch",
        )
        checked.rejected.add(record.key)
        return None
    if not record.key.lower().endswith(EXTENSIONS_FOR_FORMAT[result.format]):
        report.add(
            fmt.Problem(
                file=record.key,
                message=f"the file is a {result.format} image; stored as {result.suffix}",
                code="extension_mismatch",
            )
        )
    digest = bytes.fromhex(result.sha256)
    first = checked.first_with(digest)
    if first is not None:
        report.add(
            fmt.Problem(file=record.key, message=f"same content as {first!r}", code="duplicate_content")
        )
    else:
        checked.remember(digest, record.key)
    split = normalise_split(record.split)
    attributes = dict(record.attributes)
    if record.split and record.split != split:
        attributes.setdefault("subset", record.split)
    checked.splits[split or "unassigned"] += 1
    # The third value: did the reader check the geometry against this very size? Readers
    # validate against the size they declare, and a declared size that is not the real
    # one was refused above, so only undeclared sizes need the check again.
    checked.sizes[record.key] = _pack_size(result.width, result.height, None in declared)
    checked.total_bytes += result.size_bytes
    return ItemRow(
        key=record.key,
        storage_key=blob_key(result.sha256, result.suffix),
        sha256=result.sha256,
        size_bytes=result.size_bytes,
        width=result.width,
        height=result.height,
        split=split,
        attributes=attributes,
    )


def _pack_size(width: int, height: int, recheck: bool) -> int:
    """An image's real size and whether its labels' geometry needs checking against it, as one int."""
    return (width << 33) | (height << 1) | int(recheck)


def _unpack_size(packed: int) -> tuple[int, int, bool]:
    return packed >> 33, (packed >> 1) & 0xFFFFFFFF, bool(packed & 1)


@dataclass
class _LabelTally:
    """What the label pass counts and remembers: uids, annotators, kinds, guideline tags."""

    guidelines: dict[str, list[int]]
    guideline_ids: dict[str, int] = field(default_factory=dict)
    unknown_tags: dict[str, list] = field(default_factory=dict)
    annotators: set[str] = field(default_factory=set)
    uids: set[uuid.UUID] = field(default_factory=set)
    kinds: Counter = field(default_factory=Counter)
    finals: int = 0
    candidates: int = 0
    seen_types: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    fresh_uids: FreshUids = field(default_factory=FreshUids)

    def add(
        self,
        *,
        dataset_id: int,
        record: fmt.LabelRecord,
        row: LabelRow,
        labels: LabelSpool,
        report: Report,
        position: int | None = None,
    ):
        """Spool a checked label (``position``: its image's, see LabelSpool) unless its source uid
        repeats one of the delivery's."""
        uid = label_uid(dataset_id, record.uid, self.fresh_uids)
        if record.uid:  # a fresh uuid4 never collides: only the source's own ids are remembered
            if uid in self.uids:
                report.error(
                    **_locate(record),
                    message=f"label uid {record.uid!r} is used by another label of the delivery",
                    code="duplicate_uid",
                )
                return
            self.uids.add(uid)
        if row.annotator:
            self.annotators.add(row.annotator)
        self.seen_types[row.category].add(row.geometry_type)
        if row.is_final:
            self.finals += 1
            self.kinds[row.geometry_type] += 1
        else:
            self.candidates += 1
        labels.add((uid, row), position)

    def report_unknown_guidelines(self, report: Report) -> None:
        for tag, (where, count) in self.unknown_tags.items():
            known = ", ".join(sorted(self.guidelines)) or "none"
            report.error(
                **_where(where),
                message=f"guideline version {tag!r} is not one of this dataset's guideline versions "
                f"(known: {known}); {count} label(s) name it. Add it on the dataset's guideline first.",
                code="unknown_guideline",
            )


def _provenance_summary(coverage: ProvenanceCoverage, *, sidecars: list[str], unmatched: int) -> dict:
    total = coverage.total or 1
    return {
        **coverage.as_dict(),
        "shares": {
            "per_label": round((coverage.per_label + coverage.native) / total, 4),
            "defaults": round(coverage.defaults / total, 4),
            "none": round(coverage.nothing / total, 4),
        },
        "sidecar": sidecars[0] if sidecars else None,
        "unmatched_records": unmatched,
    }


def _provenance_references(format: str, labels: Iterable[fmt.LabelRecord]) -> Iterator[fmt.LabelRecord]:
    """For YOLO, match provenance.jsonl records by ``<label file>:<line>`` only.

    apply_provenance tries a label's ``source_id`` first; the YOLO reader's is the bare line
    number, so a record ``{"label": 3}`` would give its provenance to line 3 of every label file.
    The id is not stored anywhere, so it is dropped here, for matching only.
    """
    for label in labels:
        if format == "yolo":
            label.source_id = None
        yield label


def _with_provenance(labels, table, defaults: fmt.Provenance, coverage: ProvenanceCoverage):
    """apply_provenance, or -- with no sidecar and no defaults -- just the coverage count.

    apply_provenance copies every label twice to merge nothing: at a million labels that is
    seconds spent for no change.
    """
    if table or defaults != fmt.Provenance():
        yield from apply_provenance(labels, table, defaults, coverage=coverage)
        return
    for label in labels:
        if label.provenance.annotator or label.provenance.made_at:
            coverage.native += 1
        else:
            coverage.nothing += 1
        yield label


def _line_of(where: str) -> int | None:
    m = re.search(r":(\d+)$", where)
    return int(m.group(1)) if m else None


def _locate(record: fmt.LabelRecord) -> dict:
    return _where(record.source_ref or record.item_key)


def _where(ref: str) -> dict:
    """file, pointer and line of a reference such as ``a.json#/annotations/3`` or ``labels/a.txt:7``."""
    file, _, pointer = ref.partition("#")
    line = _line_of(file)
    if line is not None:
        file = file.rsplit(":", 1)[0]
    return {"file": file, "pointer": pointer or None, "line": line}


def _check_label(
    record: fmt.LabelRecord,
    packed: int | None,
    categories: dict[str, CategorySpec],
    guidelines: dict[str, list[int]],
    guideline_ids: dict[str, int],
    unknown_tags: dict[str, list],
    report: Report,
    rejected: set[str],
) -> LabelRow | None:
    """One label's row, or None after reporting why it cannot be written.

    ``packed``: its image's checked size (``_SizeTable.find``), None if the delivery has no such image.
    """
    size = _unpack_size(packed) if packed is not None else None
    if size is None:
        if record.item_key not in rejected:
            report.error(
                **_locate(record),
                message=f"label refers to image {record.item_key!r}, which the delivery does not have",
                code="unknown_image",
            )
        return None
    ok = True
    category = categories.get(record.category)
    if category is None:
        report.error(
            **_locate(record), message=f"unknown category {record.category!r}", code="unknown_category"
        )
        ok = False
    if size[2]:
        for message in fmt.validate_geometry(record.geometry_type, record.geometry, size[0], size[1]):
            report.error(**_locate(record), message=message, code="invalid_geometry")
            ok = False
    elif record.geometry_type not in fmt.GEOMETRY_TYPES:
        report.error(
            **_locate(record),
            message=f"unknown geometry type {record.geometry_type!r}",
            code="invalid_geometry",
        )
        ok = False
    kp = record.geometry.get("keypoints")
    if ok and kp is not None and category.keypoint_names and len(kp) != 3 * len(category.keypoint_names):
        report.error(
            **_locate(record),
            message=f"{len(kp) // 3} keypoints, but category {category.name!r} has {len(category.keypoint_names)}",
            code="invalid_geometry",
        )
        ok = False
    prov = record.provenance
    annotator = prov.annotator or ""
    if annotator and looks_like_email(annotator):
        report.error(
            **_locate(record),
            message="the annotator must be a pseudonymous id, not an e-mail address",
            code="personal_data",
        )
        ok = False
    elif len(annotator) > ANNOTATOR_MAX:
        report.error(
            **_locate(record), message=f"annotator id {annotator[:80]!r}... is too long", code="invalid"
        )
        ok = False
    for value, name in ((prov.model_name, "model_name"), (prov.model_version, "model_version")):
        limit = MODEL_FIELDS_MAX[name]
        if value and len(value) > limit:
            report.error(
                **_locate(record), message=f"{name} is longer than {limit} characters", code="invalid"
            )
            ok = False
    if prov.source not in fmt.SOURCES:
        report.error(**_locate(record), message=f"unknown source {prov.source!r}", code="invalid")
        ok = False
    elif prov.source == fmt.MODEL and not prov.model_name:
        report.error(
            **_locate(record),
            message="a label made by a model must name the model (model_name)",
            code="missing_model_name",
        )
        ok = False
    guideline_id = None
    tag = prov.guideline_version
    if tag:
        ids = guidelines.get(tag, [])
        if len(ids) == 1:
            guideline_id = guideline_ids[tag] = ids[0]
        elif len(ids) > 1:
            report.error(
                **_locate(record),
                message=f"guideline version {tag!r} exists in several of the dataset's guidelines",
                code="ambiguous_guideline",
            )
            ok = False
        else:
            seen = unknown_tags.get(tag)
            if seen is None:
                unknown_tags[tag] = [record.source_ref or record.item_key, 1]
            else:
                seen[1] += 1
            ok = False
    if not ok:
        return None
    return LabelRow(
        item=record.item_key,
        category=record.category,
        geometry_type=record.geometry_type,
        geometry=record.geometry,
        attributes=record.attributes,
        iscrowd=bool(record.iscrowd),
        is_final=bool(record.is_final),
        annotator=annotator,
        guideline_version=guideline_id,
        source=prov.source,
        model_name=prov.model_name or "",
        model_version=prov.model_version or "",
        made_at=_aware(prov.made_at),
        source_ref=(record.source_ref or "")[:300],
        # An id too long to keep is not kept: cut short, two ids could look alike.
        source_id=record.stable_id if record.stable_id and len(record.stable_id) <= 200 else "",
    )
