"""The labels' lines PostgreSQL builds are the content rule's bytes for geometry text as it is stored.

A label's geometry is a ``json`` column: its text is kept as written (ingest writes it compact, the
ORM with spaces), keys in the order written, duplicates and exponents included. The statement reads
it as jsonb and must build the line itself for every spelling jsonb gives the rule's bytes for, and
leave to Python every text whose bytes it cannot vouch for.
"""

import pytest
from django.db import connection

from governance import verify_offline
from marketplace.exports import content_lines
from marketplace.formats import model as fmt
from tests import factories as f
from tests.governance.test_content_fast import reference_label_rows

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the lines are PostgreSQL's SQL"),
]

BUILT = [  # stored text the statement writes itself, each in the rule's bytes once jsonb has read it
    '{"bbox":[9.81,6.33,6.07,5.92],"polygons":[[14.92,9.5,15.36,10.36,14.97,11.14]]}',  # as ingest writes
    '{"bbox":[1.5,2,3,4],"keypoints":[1.25,2,2,0,0,0]}',
    '{"polygons":[[1,2,3,4,5,6],[7,8,9,10,11,12]]}',
    '{"bbox": [10.0, 20.0, 100.5, 50.0]}',  # as the ORM writes
    '{"polygons":[[1,2,3,4,5,6]],"bbox":[0,1,2,3]}',  # keys out of order
    '{"polygons": [[1, 2, 3, 4, 5, 6]], "bbox": [0, 1, 2, 3]}',
    '{"bbox":[0,1,2,3],"bbox":[4,5,6,7]}',  # a duplicate key: jsonb and Python keep the last
    '{"bbox": [0, 1, 2, 3], "bbox": [4, 5, 6, 7]}',
    '{"bbox":[0,1,2,3] }',  # whitespace
    '{"bbox":[0,1,\n2,3]}',
    '{"bbox":[-0.0,2,3,4]}',  # numeric has no negative zero: 0.0, as the rule writes it
    '{"bbox":[0, 1 ,2,3] }',  # taken as stored, its spaces removed (STORED_GEOMETRY_SQL)
    '{"bbox":{"polygons":[1]}}',
    '{"bbox": [9.81, 6.33], "polygons": [[14.92, 9.5, 15.36, 10.36], [1, 2, 3, 4]]}',
]
LEFT_TO_PYTHON = [  # each must not be written by the statement
    '{"bbox":[16.93,1.87,7.32,7.01],"keypoints":[0,0,0,24.17,7.27,2],"polygons":[[24.25,5.16,23.41,6.41,1,2]]}',
    '{"bbox":[1e2,1,2,3]}',  # jsonb writes 100, Python 100.0
    '{"bbox": [1e2, 1, 2, 3]}',
    '{"bbox":[1E-5,1,2,3]}',
    '{"bbox":[0,1,2,3],"polygons":[[1,2,3,4,5,6]],"keypoints":[1,2,2]}',
    '{"bbox":[1.50,2,3,4]}',  # Python writes 1.5
    '{"bbox":[0.00001,2,3,4]}',
    '{"bbox":[10000000000000000.0,2,3,4]}',
    '{"bbox":[0,1,2,3],"rle":{"counts":"e3b0","size":[4,4]}}',
    '{"bbox":[0,1,2,3],"area":1}',
]


def store(texts):
    label = f.LabelFactory(geometry_type=fmt.POLYGON)
    labels = [label] + [
        f.LabelFactory(item=label.item, category=label.category, geometry_type=fmt.POLYGON) for _ in texts[1:]
    ]
    with connection.cursor() as cursor:
        for each, text in zip(labels, texts, strict=True):
            cursor.execute("UPDATE marketplace_label SET geometry = %s::json WHERE id = %s", [text, each.pk])
    return label.version


def built(version) -> int:
    with connection.cursor() as cursor:
        cursor.execute(content_lines.LABEL_LINES_SQL, [version.pk])
        return sum(1 for line, _ in cursor.fetchall() if line is not None)


def python_rows(version) -> bytes:
    return b"".join(verify_offline.canonical_json(row) + b"\n" for row in reference_label_rows(version))


def test_it_builds_the_lines_of_geometries_as_stored_in_any_spelling():
    version = store(BUILT)

    assert b"".join(content_lines.label_lines(version)) == python_rows(version)
    assert built(version) == len(BUILT)


@pytest.mark.parametrize("text", LEFT_TO_PYTHON)
def test_it_leaves_a_geometry_it_cannot_vouch_for_to_python(text):
    version = store([text])

    assert b"".join(content_lines.label_lines(version)) == python_rows(version)
    assert built(version) == 0
