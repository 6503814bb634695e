"""provenance.csv's rows written field by field (``records.ProvenanceRows``) are csv.writer's, byte for byte.

The export writes each label's provenance line itself from its fields' CSV text, each distinct value
encoded once by csv.writer; here values that csv.writer quotes or doubles (commas, quotes, line breaks,
a lone carriage return), non-ASCII text and every provenance field are written both ways.
"""

import csv
import io
from datetime import UTC, datetime

import pytest

from marketplace.exports import records
from marketplace.formats import model as fmt
from tests import factories as f

pytestmark = pytest.mark.django_db

AWKWARD = ["plain", 'a "quoted" one', "a, comma", "two\nlines", "a\rreturn", " spaced ", "é 中 \u2028", "x"]


@pytest.fixture
def version():
    first = f.ItemFactory(key='images/train/a, "b"\n.jpg', split="train")
    version = first.version
    items = [first, f.ItemFactory(version=version, key="images/val/ü.jpg", split="val")]
    schema = f.SchemaFactory(version=version)
    for n, text in enumerate(AWKWARD):
        category = f.CategoryFactory(schema=schema, name=f"{text} {n}")
        f.LabelFactory(
            item=items[n % 2],
            category=category,
            geometry_type=fmt.POLYGON if n % 3 else fmt.BBOX,
            geometry={"bbox": [1, 2, 3, 4], "polygons": [[1, 2, 3, 4, 5, 6]]}
            if n % 3
            else {"bbox": [1, 2, 3, 4]},
            is_final=n % 4 != 1,
            annotator=f.AnnotatorFactory(organization=version.dataset.supplier, pseudonym=text)
            if n % 2
            else None,
            guideline_version=f.GuidelineVersionFactory(guideline__dataset=version.dataset, tag=text)
            if n % 3
            else None,
            made_at=datetime(2026, 3, 2, 9, 0, n, 1234 * n, tzinfo=UTC) if n % 4 else None,
            model_name=text if n % 2 else "",
            model_version=AWKWARD[-n] if n % 2 else "",
            source="model" if n % 2 else "human",
        )
    return version


def provenance_text(version, make_writer, *, polygon_rows: bool) -> str:
    out = io.StringIO()
    selection = records.Selection(version=version, options={"candidates": True})
    writer = make_writer(out)
    writer.writerow(records.PROVENANCE_COLUMNS)
    for _ in records.iter_records(selection, provenance=writer, polygon_rows=polygon_rows):
        pass
    return out.getvalue()


@pytest.mark.parametrize("polygon_rows", [True, False])
def test_the_rows_written_field_by_field_are_csv_writers(version, polygon_rows):
    theirs = provenance_text(version, csv.writer, polygon_rows=polygon_rows)

    ours = provenance_text(version, records.ProvenanceRows, polygon_rows=polygon_rows)

    assert ours == theirs
    assert len(list(csv.reader(io.StringIO(ours)))) == 1 + len(AWKWARD)


def test_values_past_the_kept_ones_are_still_encoded_as_csv_writer_does(version, monkeypatch):
    monkeypatch.setattr(records._CsvFields, "MAX_FIELDS", 1)

    ours = provenance_text(version, records.ProvenanceRows, polygon_rows=True)

    assert ours == provenance_text(version, csv.writer, polygon_rows=True)
