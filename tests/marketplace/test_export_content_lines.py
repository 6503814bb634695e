"""content/labels.jsonl built by PostgreSQL is, byte for byte, what the content rule writes in Python.

The database writes a label's line only where it can vouch for the bytes, and leaves the rest to
``content.label_rows``; here labels chosen to hit each case the statement must tell apart (numbers
Python prints differently, strings to escape, keys jsonb orders otherwise, times) are compared with
the rows of ``tests/governance/test_content_fast.reference_label_rows``, and the statement must have
built the lines it can.
"""

from datetime import UTC, datetime

import pytest
from django.db import connection

from governance import verify_offline
from governance.ledger import content
from marketplace.exports import content_lines
from marketplace.formats import model as fmt
from tests import factories as f
from tests.governance.test_content_fast import reference_label_rows

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the lines are PostgreSQL's SQL"),
]

POLYGON = {"bbox": [7.83, 7.52, 3.95, 4.87], "polygons": [[11.78, 9.8, 11.5, 10.0, 3, 0.0001, 0.5, 12.25]]}
BUILT_BY_THE_DATABASE = [  # (geometry, attributes): lines the statement writes itself
    (fmt.POLYGON, POLYGON, {}),
    (fmt.POLYGON, {"polygons": [[1, 2, 3, 4, 5, 6]]}, {}),
    (fmt.BBOX, {"bbox": [10.0, 20.0, 100.5, 50.0]}, {}),
    (fmt.KEYPOINTS, {"bbox": [1.5, 2, 3, 4], "keypoints": [1.25, 2, 2, 0, 0, 0]}, {}),
    (fmt.POLYGON, {"bbox": [-1.5, -2.25, 3, 4], "polygons": [[123456789012.345, 1, 2, 3, 4, 5]]}, {}),
    (fmt.POLYGON, {"bbox": [-0.0, 1, 2, 3], "polygons": [[1, 2, 3, 4, 5, 6]]}, {}),  # jsonb has no -0.0
]
LEFT_TO_PYTHON = [  # each trips one of the statement's checks
    (fmt.POLYGON, {"bbox": [-0.5, 1, 2, 3], "polygons": [[1, 2, 3, 4, 5, 6]]}, {}),  # any "-0", to be safe
    (fmt.POLYGON, {"bbox": [0, 1, 2, 3], "polygons": [[5e-5, 2, 3, 4, 5, 6]]}, {}),  # Python: 5e-05
    (fmt.POLYGON, {"bbox": [0, 1, 2, 3], "polygons": [[1e16, 2, 3, 4, 5, 6]]}, {}),  # 17 digits
    (fmt.POLYGON, {"bbox": [0, 1, 2, 3], "polygons": [[0.1234567890123456, 2, 3, 4, 5, 6]]}, {}),
    (fmt.MASK, {"rle": {"size": [4, 4], "counts": "e3b0"}, "bbox": [0, 0, 1, 1]}, {}),  # strings
    (fmt.POLYGON, {"bbox": [0, 1, 2, 3], "keypoints": [1, 2, 2], "polygons": [[1, 2, 3, 4, 5, 6]]}, {}),
    (fmt.POLYGON, POLYGON, {"colour": "blue", "n": 2**70}),  # attributes
]


def lines_and_rows(version):
    lines = b"".join(content_lines.label_lines(version))
    rows = b"".join(verify_offline.canonical_json(row) + b"\n" for row in reference_label_rows(version))
    return lines, rows


def database_built(version) -> int:
    with connection.cursor() as cursor:
        cursor.execute(content_lines.LABEL_LINES_SQL, [version.pk])
        return sum(1 for line, _ in cursor.fetchall() if line is not None)


def test_the_database_writes_the_content_rules_bytes():
    item = f.ItemFactory(key='images/a "quoted", \\ back\nslash\t\x01 é ü \u2028 中.jpg')
    version = item.version
    schema = f.SchemaFactory(version=version)
    category = f.CategoryFactory(schema=schema, name='car "fast" \\ é')
    guideline = f.GuidelineVersionFactory(guideline__dataset=version.dataset, tag='v1 "β"')
    annotator = f.AnnotatorFactory(organization=version.dataset.supplier, pseudonym="A-\u00e917")
    for n, (kind, geometry, attributes) in enumerate(BUILT_BY_THE_DATABASE + LEFT_TO_PYTHON):
        f.LabelFactory(
            item=item,
            category=category,
            geometry_type=kind,
            geometry=geometry,
            attributes=attributes,
            iscrowd=n == 2,
            is_final=n != 1,
            annotator=annotator if n % 2 else None,
            guideline_version=guideline if n % 3 else None,
            made_at=datetime(2026, 3, 2, 9, 0, n, 123456 * n % 1000000, tzinfo=UTC) if n else None,
            model_name='det "x"' if n % 2 else "",
            model_version="1.0" if n % 2 else "",
            source="model" if n % 2 else "human",
        )

    lines, rows = lines_and_rows(version)

    assert lines == rows
    assert lines.count(b"\n") == len(BUILT_BY_THE_DATABASE) + len(LEFT_TO_PYTHON)
    assert database_built(version) == len(BUILT_BY_THE_DATABASE)


def test_it_leaves_numbers_jsonb_keeps_but_python_rewrites_to_python():
    # jsonb keeps a number's digits as written ("1.50", "2.000"); Python reads 1.5 and writes "1.5".
    label = f.LabelFactory(geometry_type=fmt.BBOX, geometry={"bbox": [1.5, 2, 3, 4]})
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE marketplace_label SET geometry = %s::jsonb WHERE id = %s",
            ['{"bbox": [1.50, 2.000, 3.0, 40]}', label.pk],
        )

    lines, rows = lines_and_rows(label.version)

    assert b'"bbox":[1.5,2.0,3.0,40]' in rows
    assert lines == rows
    assert database_built(label.version) == 0


def test_it_writes_a_label_made_at_a_far_off_time_as_python_does():
    label = f.LabelFactory(made_at=datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    later = f.LabelFactory(
        item=label.item, category=label.category, made_at=datetime(9999, 12, 31, tzinfo=UTC)
    )

    lines, rows = lines_and_rows(label.version)

    assert lines == rows
    assert b'"made_at":"0999-01-02T03:04:05.000006+00:00"' in lines
    assert later.version_id == label.version_id


def test_the_export_reads_the_same_lines_from_its_helper_connection(transactional_db):
    label = f.LabelFactory(geometry_type=fmt.POLYGON, geometry=POLYGON)
    # and one the statement leaves to Python: read while the helper's cursor is open
    f.LabelFactory(item=label.item, category=label.category, attributes={"colour": "blue"})
    with content_lines.SpooledLabelLines(label.version) as spooled:
        assert spooled.start()  # outside a transaction: its own connection sees the committed rows
        spooled_lines = b"".join(spooled.chunks())

    assert spooled_lines == lines_and_rows(label.version)[1]
    assert spooled_lines.count(b"\n") == 2
    assert [row["key"] for row in content.label_rows(label.version, uids=[str(label.uid)])] == [
        str(label.uid)
    ]


def test_inside_a_transaction_it_does_not_start_a_helper():
    label = f.LabelFactory()
    with content_lines.SpooledLabelLines(label.version) as spooled:
        assert not spooled.start()
