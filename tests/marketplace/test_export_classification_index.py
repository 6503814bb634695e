"""A COCO export asks whether the version has a classification label before it begins its files
(``packaging._items_first``): the partial index ``label_classifications`` answers, not a scan of every
label of the version (issue 13: ~17 ms at 50,000 labels, growing with the version)."""

import pytest
from django.db import connection

from marketplace.exports import packaging
from marketplace.exports.records import Selection
from marketplace.formats import model as fmt
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plan")
def test_the_classification_check_reads_the_partial_index():
    label = f.LabelFactory(geometry_type=fmt.POLYGON)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table: as the planner would at 500,000

    plan = (
        Selection(version=label.version, options={})
        .labels()
        .filter(geometry_type=fmt.CLASSIFICATION)
        .explain()
    )

    assert "label_classifications" in plan


def test_a_classification_label_still_holds_the_items_back():
    label = f.LabelFactory(geometry_type=fmt.POLYGON)
    selection = Selection(version=label.version, options={})
    assert packaging._items_first(selection) is not None

    f.LabelFactory(item=label.item, category=label.category, geometry_type=fmt.CLASSIFICATION, geometry={})

    assert packaging._items_first(selection) is None
