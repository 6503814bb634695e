"""The labels' lines take a geometry's stored text as it is where it already is the rule's bytes.

``content_lines.STORED_GEOMETRY_SQL`` spares the statement reading each geometry as jsonb (a third of
its cost) for the spellings ingest (compact) and the ORM (spaced) write. It must give the rule's bytes
wherever it gives anything, and NULL (the jsonb path, then Python) for every text it cannot vouch for.
"""

import json

import pytest
from django.db import connection

from governance import verify_offline
from marketplace.exports import content_lines

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the lines are PostgreSQL's SQL"),
]

TAKEN_AS_STORED = [
    '{"bbox":[9.81,6.33,6.07,5.92],"polygons":[[14.92,9.5,15.36,10.36,14.97,11.14]]}',  # as ingest writes
    '{"bbox": [9.81, 6.33, 6.07, 5.92], "polygons": [[14.92, 9.5, 15.36, 10.36], [1, 2, 3, 4]]}',  # the ORM
    '{"bbox": [10.0, 20.0, 100.5, 50.0]}',
    '{"polygons":[[1,2,3,4,5,6],[7,8,9,10,11,12]]}',
    '{"bbox":[0, 1 ,2,3] }',  # spaces between tokens anywhere
    '{"bbox":[-1.5,2,3,4],"polygons":[[123456789012.345,1,2,3,4,5]]}',
    '{"bbox":{"polygons":[1]}}',  # nested: still one key an object, in order
]
LEFT_TO_JSONB = [
    '{"polygons":[[1,2,3,4,5,6]],"bbox":[0,1,2,3]}',  # keys out of order
    '{"polygons": [[1, 2, 3, 4, 5, 6]], "bbox": [0, 1, 2, 3]}',
    '{"bbox":[0,1,2,3],"bbox":[4,5,6,7]}',  # a duplicate key
    '{"bbox":[0,1,2,3],"polygons":[[1,2,3,4,5,6]],"polygons":[[1,2,3,4,5,6]]}',
    '{"bbox":[0,1,\n2,3]}',  # whitespace other than a space
    '{"bbox":[0,1,\t2,3]}',
    '{"bbox":[1e2,1,2,3]}',  # an exponent
    '{"bbox":[1E2,1,2,3]}',
    '{"bbox":[1.50,2,3,4]}',  # Python writes 1.5
    '{"bbox":[1.50 ,2,3,4]}',
    '{"bbox":[2,3,4,1.50]}',
    '{"bbox":[0.00001,2,3,4]}',  # Python writes 1e-05
    '{"bbox":[-0.0,2,3,4]}',  # any "-0"
    '{"bbox":[-0.5,2,3,4]}',
    '{"bbox":[10000000000000000.0,2,3,4]}',  # 17 digits and a point
    '{"bbox":[0,1,2,3],"keypoints":[1,2,2]}',  # another key
    '{"bbox":[0,1,2,3],"rle":{"counts":"e3b0","size":[4,4]}}',
    '{"bbox":[0,1,2,3],"p\\"olygons":[[1,2,3,4,5,6]]}',  # an escaped quote
    '{ "bbox":[0,1,2,3]}',
    '{"area":1,"bbox":[0,1,2,3]}',
]


def taken(text: str) -> str | None:
    with connection.cursor() as cursor:
        sql = content_lines.STORED_GEOMETRY_SQL.format(text="s")
        cursor.execute(f"SELECT {sql} FROM (SELECT %s::json::text AS s) AS stored", [text])
        return cursor.fetchone()[0]


@pytest.mark.parametrize("text", TAKEN_AS_STORED)
def test_it_takes_a_stored_text_that_is_the_rules_bytes_but_for_its_spaces(text):
    assert taken(text) == verify_offline.canonical_json(json.loads(text)).decode()


@pytest.mark.parametrize("text", LEFT_TO_JSONB)
def test_it_leaves_any_other_text_to_the_jsonb_path(text):
    assert taken(text) is None
