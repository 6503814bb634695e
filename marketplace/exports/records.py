"""What an export reads: a version's items and labels streamed from the database in chunks."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

import orjson
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import CharField
from django.db.models.functions import Cast

from governance.models import Annotator, GuidelineVersion

from ..formats import model as fmt
from ..models import (
    Category,
    DatasetVersion,
    Export,
    Item,
    Label,
)

log = logging.getLogger(__name__)


FORMATS = tuple(Export.Format.values)
SPLITS = ("train", "val", "test", "unassigned")  # "unassigned": items without a split
ITEM_CHUNK = 1000
FETCH_ROWS = 5000  # rows a fetch from the database's cursor brings
PROGRESS_INTERVAL = 0.5  # seconds between progress writes
DOWNLOAD_SALT = "marketplace.exports.download"
PROVENANCE_COLUMNS = (
    "label_uid",
    "item",
    "category",
    "geometry_type",
    "is_final",
    "annotator",
    "made_at",
    "guideline_version",
    "source",
    "model_name",
    "model_version",
)


# --------------------------------------------------------------------------- records


@dataclass
class ExportItem(fmt.ItemRecord):
    """An item as the writers see it, plus where its image is stored."""

    storage_key: str = ""


class Progress:
    """Writes an export's progress in its own short statements, at most every PROGRESS_INTERVAL."""

    def __init__(self, export_id: int | None, total: int):
        self.export_id = export_id
        self.total = max(total, 1)
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.export_id is None or now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        Export.objects.filter(pk=self.export_id).update(progress=min(95, int(95 * done / self.total)))


@dataclass
class Selection:
    """What an export takes from a version."""

    version: DatasetVersion
    options: dict

    def items(self):
        qs = Item.objects.filter(version=self.version)
        if splits := self._splits():
            qs = qs.filter(split__in=splits)
        return qs

    def item_labels(self):
        """``labels()`` of the selected items, through the one join to their item that sorts them.

        Not ``item__in=items()``: with that subquery PostgreSQL hashes both tables and sorts every
        label row, geometry included, on disk past work_mem; with the join it walks the items in
        key order by their unique index and each item's labels by ``item_id`` (an incremental sort
        of a few rows), so rows flow as soon as the query starts and the server holds no sort.
        """
        qs = self.labels().filter(item__version=self.version)
        if splits := self._splits():
            qs = qs.filter(item__split__in=splits)
        return qs

    def _splits(self) -> list[str]:
        return ["" if s == "unassigned" else s for s in self.options.get("splits") or []]

    def categories(self) -> list[Category]:
        qs = Category.objects.filter(schema__version=self.version).order_by("source_id", "name")
        wanted = self.options.get("categories") or []
        if wanted:
            qs = qs.filter(name__in=wanted)
        return list(qs)

    def labels(self):
        qs = Label.objects.filter(version=self.version)
        if not self.options.get("candidates"):
            qs = qs.filter(is_final=True)
        wanted = self.options.get("categories") or []
        if wanted:
            qs = qs.filter(category__name__in=wanted)
        return qs


def category_defs(categories: list[Category]) -> list[fmt.CategoryDef]:
    return [
        fmt.CategoryDef(
            name=c.name,
            source_id=c.source_id,
            supercategory=c.supercategory,
            keypoints=list(c.keypoint_names),
            skeleton=[list(p) for p in c.skeleton],
            geometry_types=list(c.geometry_types),
            color=c.color,
        )
        for c in categories
    ]


class _CsvFields(dict):
    """A value -> its text in a ``csv.writer`` row, encoded by csv.writer itself the first time it is met.

    At most MAX_FIELDS values are kept (category, annotator, guideline names and the like: few); past
    that a value is encoded each time, so memory stays flat whatever the labels hold.
    """

    MAX_FIELDS = 10_000

    def __init__(self):
        super().__init__()
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)

    def encode(self, value: str) -> str:
        # Written as the first of two fields: a field's text in a row does not depend on its place,
        # except that a row of one empty field is written '""'.
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow((value, ""))
        return self._buffer.getvalue()[: -len(",\r\n")]

    def __missing__(self, value: str) -> str:
        text = self.encode(value)
        if len(self) < self.MAX_FIELDS:
            self[value] = text
        return text


class ProvenanceRows:
    """provenance.csv's rows, byte for byte as ``csv.writer(file)`` writes them, in fewer steps.

    ``writerow`` is that writer's. ``_read_labels`` writes each label's line itself from its fields'
    CSV text, each distinct value encoded once (``_CsvFields``); the uid and the time need none (hex
    digits and dashes; ``isoformat``'s digits and signs). csv.writer's eleven-field row was 2.5 us a
    label, a fifth of the export's Python per label.
    """

    def __init__(self, file):
        self.writerow = csv.writer(file).writerow
        self.write = file.write
        self.fields = _CsvFields()


# raw_decode skips json.loads' two whitespace regex scans: the database's JSON text has none around it.
_decode = json.JSONDecoder().raw_decode


def _json(value):
    if value is None or value == "{}":
        return {}
    if isinstance(value, (dict, list)):  # a driver that decodes JSON itself
        return value
    if _LONG_RUN not in value.encode("utf-8", "surrogatepass").translate(_DIGITS):
        try:
            return orjson.loads(value)  # 3-5x the stdlib's speed, the same values
        except orjson.JSONDecodeError:
            pass
    return _decode(value)[0]


# orjson reads an integer beyond 64 bits as a float (and refuses 1e400): a run of 19 digits (a string's
# or a number's) sends the text to the stdlib decoder, which reads such numbers exactly. Found with
# bytes.translate (digits to "0", the rest to " ") and a substring search: 1-2 us, a regex takes ~10.
_DIGITS = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_LONG_RUN = b"0" * 19


def _aware(value):
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(value)  # SQLite: "2026-03-02 09:00:00", UTC
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_LABEL_FIELDS = (
    "item_id",
    "uid",
    "category_id",
    "geometry_type",
    "geometry",
    "attributes",
    "iscrowd",
    "is_final",
    "annotator_id",
    "guideline_version_id",
    "source",
    "model_name",
    "model_version",
    "made_at",
)


def _read_labels(rows, by_item: dict, keys: dict, names: tuple, provenance, polygon_rows: bool) -> None:
    """Each label row as a LabelRecord appended to its item's list, and its provenance.csv row.

    The per-label loop of an export: lookups bound to locals, no per-value call where a test does.
    With ``polygon_rows`` (the COCO writer's), a plain polygon label (only ``bbox`` and ``polygons``
    in its geometry, no attributes) is appended as a ``coco_writer.POLYGON_ROW`` tuple instead: the
    writer writes it from its stored text without a LabelRecord and its Provenance (two objects and a
    dozen attribute reads a label, a fifth of the COCO export's Python).
    """
    category_names, pseudonyms, tags = names
    label_record, provenance_of, decode = fmt.LabelRecord, fmt.Provenance, _json
    write_row = provenance.writerow if provenance is not None else None
    write_line = fields = item_field = None
    if isinstance(provenance, ProvenanceRows):
        write_line, fields = provenance.write, provenance.fields
    polygon = fmt.POLYGON if polygon_rows else None
    for (
        item_id,
        uid,
        category_id,
        kind,
        geometry,
        attributes,
        iscrowd,
        is_final,
        annotator_id,
        guideline_id,
        source,
        model_name,
        model_version,
        made_at,
    ) in rows:
        if made_at is not None and (made_at.__class__ is not datetime or made_at.tzinfo is None):
            made_at = _aware(made_at)
        uid_text = str(uid)
        if len(uid_text) != 36:
            uid_text = str(uuid.UUID(uid_text))  # SQLite stores 32 hex digits
        item_key, category = keys[item_id], category_names[category_id]
        annotator, tag = pseudonyms.get(annotator_id), tags.get(guideline_id)
        g = decode(geometry)
        if (
            kind == polygon
            and attributes == "{}"
            and geometry.__class__ is str
            and g.__class__ is dict
            and len(g) == 2
            and "bbox" in g
            and g.get("polygons")
        ):
            by_item[item_id].append(
                (
                    category,
                    geometry,
                    g,
                    bool(iscrowd),
                    bool(is_final),
                    uid_text,
                    annotator,
                    made_at,
                    tag,
                    source,
                    model_name,
                    model_version,
                )
            )
        else:
            by_item[item_id].append(
                label_record(
                    item_key,
                    category,
                    kind,
                    g,
                    {} if attributes == "{}" else decode(attributes),
                    uid_text,
                    bool(is_final),
                    bool(iscrowd),
                    provenance_of(annotator, made_at, None, tag, source, model_name, model_version),
                    geometry_text=geometry if geometry.__class__ is str else None,
                )
            )
        if write_line is not None:
            if item_field is None or item_field[0] != item_key:  # one item's labels at a time, mostly
                item_field = (item_key, fields.encode(item_key))
            write_line(
                f"{uid_text},{item_field[1]},{fields[category]},{fields[kind]},"
                f"{'true' if is_final else 'false'},{fields[annotator or '']},"
                f"{made_at.isoformat() if made_at else ''},{fields[tag or '']},{fields[source]},"
                f"{fields[model_name]},{fields[model_version]}\r\n"
            )
        elif write_row is not None:
            write_row(
                (
                    uid_text,
                    item_key,
                    category,
                    kind,
                    "true" if is_final else "false",
                    annotator or "",
                    made_at.isoformat() if made_at else "",
                    tag or "",
                    source,
                    model_name,
                    model_version,
                )
            )


def iter_records(
    selection: Selection,
    *,
    progress: Progress | None = None,
    provenance: csv.writer | ProvenanceRows | None = None,
    polygon_rows: bool = False,
) -> Iterator[tuple[ExportItem, list[fmt.LabelRecord]]]:
    """Items in key order with their labels: one query for the items, one for their labels, merged.

    Both are sorted once by the database in the same order (the item's key, then the label's id) and
    read a chunk at a time from server-side cursors, so a chunk costs the same whatever the version's
    size. (Asking for each 1,000 items' labels by an IN list let PostgreSQL read every label of the
    version for each chunk when its statistics were stale: quadratic.) Memory holds one item's labels;
    small lookups (category, annotator and guideline names) are read once. ``polygon_rows``: plain
    polygon labels come as ``coco_writer.POLYGON_ROW`` tuples (``_read_labels``), for the COCO writer.
    """
    version = selection.version
    category_names = dict(Category.objects.filter(schema__version=version).values_list("pk", "name"))
    annotator_ids = selection.labels().exclude(annotator=None).values("annotator_id").distinct()
    pseudonyms = dict(Annotator.objects.filter(pk__in=annotator_ids).values_list("pk", "pseudonym"))
    tags = dict(
        GuidelineVersion.objects.filter(guideline__dataset=version.dataset_id).values_list("pk", "tag")
    )
    names = (category_names, pseudonyms, tags)
    items = selection.items().order_by("key")
    labels = selection.item_labels().order_by("item__key", "id")
    # The uid as the database's text: psycopg would build a UUID object for each, and we its text.
    labels = labels.annotate(uid_text=Cast("uid", output_field=CharField()))
    label_rows = _streamed(labels.values_list(*("uid_text" if f == "uid" else f for f in _LABEL_FIELDS)))
    pending = next(label_rows, None)
    done = 0
    for row in _streamed(items.values_list(*_ITEM_FIELDS)):
        pk, key = row[0], row[1]
        rows = []
        while pending is not None and pending[0] == pk:
            rows.append(pending)
            pending = next(label_rows, None)
        by_item: dict[int, list[fmt.LabelRecord]] = {pk: []}
        if rows:
            _read_labels(rows, by_item, {pk: key}, names, provenance, polygon_rows)
        yield _export_item(row), by_item[pk]
        done += 1
        if progress is not None and done % ITEM_CHUNK == 0:
            progress.update(done)
    if pending is not None:  # a label the item order did not reach: never write an export without it
        raise RuntimeError(f"export: label of item {pending[0]} out of the items' order")
    if progress is not None:
        progress.update(done)


def iter_items(selection: Selection) -> Iterator[ExportItem]:
    """The selected items alone, in ``iter_records``' order (COCO's images arrays, written first)."""
    for row in _streamed(selection.items().order_by("key").values_list(*_ITEM_FIELDS)):
        yield _export_item(row)


_ITEM_FIELDS = ("pk", "key", "width", "height", "split", "attributes", "storage_key", "sha256")


def _export_item(row: tuple) -> ExportItem:
    pk, key, width, height, split, attributes, storage_key, sha = row
    return ExportItem(
        key=key,
        width=width,
        height=height,
        split=split,
        attributes=_json(attributes),
        source_id=pk,
        source_ref=sha,
        storage_key=storage_key,
    )


def _streamed(query) -> Iterator[tuple]:
    """The rows of a values_list() query, in its order, from a server-side cursor (PostgreSQL), raw.

    Without Django's per-value converters: converting a hundred thousand JSON values through
    JSONField.from_db_value costs more than the rest of an export; the few conversions needed are
    done by hand (_json, _aware, the uid's text in _read_labels).
    """
    sql, params = query.query.sql_with_params()
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        if connection.vendor != "postgresql":
            while rows := cursor.fetchmany(FETCH_ROWS):
                yield from rows
            return
        # A server-side cursor's FETCH runs only when asked: fetched in turn, the server would idle
        # while we handle a chunk and we while it reads the next. A helper thread asks for the next
        # chunk as soon as one arrives (psycopg waits on the socket without the GIL), so PostgreSQL
        # reads and formats rows on the other core meanwhile. The connection serialises its use;
        # the cursor is used by one thread at a time (the next fetch starts after the last ended).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-fetch") as pool:
            pending = pool.submit(cursor.fetchmany, FETCH_ROWS)
            while rows := pending.result():
                pending = pool.submit(cursor.fetchmany, FETCH_ROWS)
                yield from rows


def open_image(item: ExportItem) -> BinaryIO:
    return default_storage.open(item.storage_key, "rb")
