"""The COCO writer's polygon rows write, byte for byte, what it writes from the same labels as LabelRecords.

An export on PostgreSQL hands plain polygon labels (only ``bbox`` and ``polygons``, no attributes) to
the COCO writer as tuples (``coco_writer.POLYGON_ROW``) written from their stored text. Here the same
version is written both ways, with labels chosen to hit what could tell them apart: numbers Python
prints differently from how they are stored (negative zero, tiny and huge floats, trailing zeros,
integers beyond 64 bits, 19-digit runs), odd and several rings, crowd, candidates, non-ASCII names,
every provenance field, and labels that must stay records (attributes, RLE, keypoints, other keys).
"""

import csv
import io
from datetime import UTC, datetime

import pytest
from django.db import connection

from marketplace.exports import records
from marketplace.formats import coco_writer
from marketplace.formats import model as fmt
from marketplace.formats.writing import DirectorySink, Notes
from tests import factories as f

pytestmark = pytest.mark.django_db

PLAIN = [  # stored text of polygon labels the writer takes as rows
    '{"bbox": [7.83, 7.52, 3.95, 4.87], "polygons": [[11.78, 9.8, 11.5, 10.0, 3, 0.0001, 0.5, 12.25]]}',
    '{"bbox":[1,2,3,4],"polygons":[[1,2,3,4,5,6],[0.5,0.25,10,10,3,7.5,1,1]]}',  # compact, two rings
    '{"polygons": [[1, 2, 3, 4, 5]], "bbox": [0, 0, 5, 4]}',  # odd ring, polygons first
    '{"bbox": [-0.0, 0.0, 1.50, 2.000], "polygons": [[-0.0, 1.50, 2.000, 3, 1e-05, 0.00001]]}',
    '{"bbox": [5e-324, 1e308, 1.7976931348623157e308, 2], "polygons": [[1e-300, 1e300, 2, 3, 4, 5]]}',
    '{"bbox": [0, 1, 2, 3], "polygons": [[1234567890123456789012, 2, 3, 4, 5, 6]]}',  # > 64 bits
    '{"bbox": [0, 1, 2, 3], "polygons": [[0.1234567890123456789, 2, 3, 4, 5, 6]]}',  # 19 digits
    '{"bbox": [0, 1, 2, 3], "polygons": [[1, 2]]}',  # a ring of one point
    '{"bbox": [0.1, 0.2, 0.3, 0.4], "polygons": [[0.1, 0.2, 0.30000000000000004, 0.4, 1e16, 3]]}',
]
RECORDS = [  # (kind, stored text, attributes): labels that stay LabelRecords
    (fmt.POLYGON, '{"bbox": [1, 2, 3, 4], "polygons": [[1, 2, 3, 4, 5, 6]]}', {"colour": "blau", "n": 2**70}),
    (fmt.POLYGON, '{"bbox": [1, 2, 3, 4], "keypoints": [1, 2, 2], "polygons": [[1, 2, 3, 4, 5, 6]]}', {}),
    (fmt.POLYGON, '{"polygons": [[1, 2, 3, 4, 5, 6]]}', {}),  # no bbox
    (fmt.POLYGON, '{"bbox": [1, 2, 3, 4], "polygons": []}', {}),
    (fmt.MASK, '{"bbox": [0, 0, 1, 1], "rle": {"counts": "e3b0", "size": [4, 4]}}', {}),
    (fmt.KEYPOINTS, '{"bbox": [1.5, 2, 3, 4], "keypoints": [1.25, 2, 2, 0, 0, 0]}', {}),
    (fmt.BBOX, '{"bbox": [10.0, 20.0, 100.5, 50.0]}', {}),
]


def store_text(label, text: str) -> None:
    """The geometry's stored text exactly as given (PostgreSQL's ``json`` keeps it as written)."""
    cast = "::json" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE marketplace_label SET geometry = %s{cast} WHERE id = %s", [text, label.pk])


@pytest.fixture
def version():
    item = f.ItemFactory(key="images/train/straße 中.jpg", split="train")
    other = f.ItemFactory(version=item.version, key="images/val/b.jpg", split="val")
    schema = f.SchemaFactory(version=item.version)
    category = f.CategoryFactory(schema=schema, name='Fahrrad "schnell" é', source_id=3)
    guideline = f.GuidelineVersionFactory(guideline__dataset=item.version.dataset, tag='v1 "β"')
    annotator = f.AnnotatorFactory(organization=item.version.dataset.supplier, pseudonym="A-\u00e917")
    labels = [(fmt.POLYGON, text, {}) for text in PLAIN] + RECORDS
    for n, (kind, text, attributes) in enumerate(labels * 2):
        label = f.LabelFactory(
            item=item if n % 3 else other,
            category=category,
            geometry_type=kind,
            attributes=attributes,
            iscrowd=n % 4 == 1,
            is_final=n % 5 != 2,
            annotator=annotator if n % 2 else None,
            guideline_version=guideline if n % 3 == 1 else None,
            made_at=datetime(2026, 3, 2, 9, 0, n % 60, 1234 * n, tzinfo=UTC) if n % 4 else None,
            model_name='det "x" ü' if n % 2 else "",
            model_version="1.0" if n % 6 == 1 else "",
            source="model" if n % 2 else "human",
        )
        store_text(label, text)
    return item.version


def coco_files(version, tmp_path, name: str, *, polygon_rows: bool) -> tuple[dict[str, bytes], list, str]:
    selection = records.Selection(version=version, options={"candidates": True})
    provenance = io.StringIO()
    found = list(
        records.iter_records(selection, provenance=csv.writer(provenance), polygon_rows=polygon_rows)
    )
    rows = sum(1 for _, labels in found for label in labels if label.__class__ is tuple)
    notes = Notes()
    coco_writer.write_coco(
        DirectorySink(tmp_path / name),
        found,
        categories=records.category_defs(selection.categories()),
        notes=notes,
        info={"description": "polygon rows"},
    )
    files = {p.name: p.read_bytes() for p in sorted((tmp_path / name / "annotations").iterdir())}
    return files, [notes.as_list(), rows], provenance.getvalue()


def test_polygon_rows_write_the_records_bytes(version, tmp_path):
    as_records, (notes, no_rows), provenance = coco_files(version, tmp_path, "records", polygon_rows=False)
    as_rows, (row_notes, rows), row_provenance = coco_files(version, tmp_path, "rows", polygon_rows=True)

    assert as_rows == as_records
    assert row_notes == notes
    assert row_provenance == provenance
    assert (no_rows, rows) == (0, 2 * len(PLAIN))  # every plain polygon went through the rows
    assert set(as_rows) == {"instances_train.json", "instances_val.json"}
    written = b"".join(as_rows.values())
    assert b'"segmentation":[[-0.0,1.50,2.000,3,1e-05,0.00001]]' in written  # the stored spelling
    assert "A-\u00e917".encode() in written and b'"is_final":false' in written
