"""How label rows are stored on PostgreSQL (issue 13: the database's cost of an ingest)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from marketplace.models import Item, Label
from marketplace.workspace import diff as workspace_diff

from . import ingest_support as support
from .ingest_support import coco_files, make_delivery

media, run = support.media, support.run  # fixtures

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's column types and indexes"),
]


def _one(sql: str, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def test_a_geometry_is_kept_as_the_json_text_ingest_wrote(dataset, media, run):
    assert run(make_delivery(dataset, coco_files(n_images=2))).ok
    label = Label.objects.filter(geometry_type="polygon").get()

    kind, text = _one(
        "SELECT pg_typeof(geometry)::text, geometry::text FROM marketplace_label WHERE id = %s", [label.pk]
    )

    assert kind == "json"  # checked text: no jsonb parse of each row on the way in
    assert text == '{"polygons":[[5,5,20,5,20,30,5,30]]}'  # as written (jsonb would respace it)
    assert label.geometry == {"polygons": [[5, 5, 20, 5, 20, 30, 5, 30]]}  # the ORM decodes it as before


def test_a_version_diff_compares_geometries_by_value(dataset, media, run):
    assert run(make_delivery(dataset, coco_files(n_images=2))).ok
    assert run(make_delivery(dataset, coco_files(n_images=2))).ok
    old, new = dataset.versions.order_by("number")
    # The same value spelt otherwise (as a row edited through the ORM is): still unchanged.
    Label.objects.filter(version=new, geometry_type="polygon").update(
        geometry={"polygons": [[5.0, 5, 20, 5, 20, 30, 5, 30]]}
    )

    labels = workspace_diff.diff_versions(old=old, new=new)["labels"]

    assert (labels["changed"], labels["unchanged"]) == (0, 3)


def test_a_label_row_pays_for_these_indexes_only():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'marketplace_label'")
        indexes = {row[0].split(" USING btree ")[1] for row in cursor.fetchall()}

    # Each one costs every ingested label row: a new one must be worth it (issue 13).
    assert indexes == {
        "(id)",
        "(version_id, uid)",
        "(uid)",
        "(item_id)",
        "(category_id)",
        "(delivery_id)",
        "(version_id) WHERE (NOT is_final)",
        "(annotator_id) WHERE (annotator_id IS NOT NULL)",
        "(guideline_version_id) WHERE (guideline_version_id IS NOT NULL)",
        # Other labels pay only its condition: the COCO export's check before its files begin.
        "(version_id) WHERE ((geometry_type)::text = 'classification'::text)",
    }


def test_a_label_cannot_name_an_item_of_another_version(dataset, media, run):
    assert run(make_delivery(dataset, coco_files(n_images=2))).ok
    assert run(make_delivery(dataset, coco_files(n_images=2))).ok
    old, new = dataset.versions.order_by("number")
    label = Label.objects.filter(version=new).first()
    elsewhere = Item.objects.filter(version=old).first()

    # One key checks both (label_item_in_its_version): the item exists, and in the label's version.
    with pytest.raises(IntegrityError, match="label_item_in_its_version"), transaction.atomic():
        Label.objects.filter(pk=label.pk).update(item=elsewhere)
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
