"""Every column a label's content row is made from is covered: changing any of them is found.

Each column (the label's own, and the item, class, annotator and guideline version it names) is
changed in the database behind the released-content triggers, as a table owner could: the labels
part recomputed by the verifier (its orjson encoding) must no longer be the signed one, and the
export's database-built line for that label (``marketplace.exports.content_lines``, which an
archive's offline verification checks) must change too, still built by the statement, not left to
Python. A label the statement leaves to Python is checked as well, and the verifier names the label
and field as before.
"""

import contextlib
import importlib
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from governance.ledger import content
from governance.ledger import content_verification as verify_content
from marketplace.catalogue import publication
from marketplace.exports import content_lines
from marketplace.formats import model as fmt
from marketplace.models import Label
from tests import factories as f

RELEASED = importlib.import_module("marketplace.migrations.0006_released_content_triggers")

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="ALTER TABLE ... DISABLE TRIGGER, the SQL lines"
    ),
]

MADE_AT = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def version(dataset):
    """A released version whose first label has every field of the rule set, the way ingest writes it."""
    v = f.VersionFactory(dataset=dataset, number=1)
    f.DatasheetFactory(version=v)
    schema = f.SchemaFactory(version=v)
    car = f.CategoryFactory(schema=schema, name="car", source_id=1, geometry_types=[fmt.POLYGON])
    f.CategoryFactory(schema=schema, name="truck", source_id=2, geometry_types=[fmt.POLYGON])
    guideline = f.GuidelineFactory(dataset=dataset, title="Boxes")
    for tag in ("v1", "v2"):
        f.GuidelineVersionFactory(guideline=guideline, tag=tag, text=f"Draw tight boxes ({tag}).")
    v1 = guideline.versions.get(tag="v1")
    annotator = f.AnnotatorFactory(organization=dataset.supplier, pseudonym="A-1")
    f.AnnotatorFactory(organization=dataset.supplier, pseudonym="A-2")
    for i in range(3):
        item = f.ItemFactory(version=v, key=f"images/train/{i:04d}.jpg", split="train")
        f.LabelFactory(
            item=item,
            category=car,
            geometry_type=fmt.POLYGON,
            geometry={"bbox": [10.5 + i, 20.0, 100.0, 50.0], "polygons": [[10.5, 20, 110.5, 20, 60, 70]]},
            annotator=annotator,
            made_at=MADE_AT,
            guideline_version=v1,
            source="model",
            model_name="detr",
            model_version="1.0",
        )
    publication.publish_version(version=v, release_notes="first")
    v.refresh_from_db()
    return v


@contextlib.contextmanager
def unguarded():
    """The released-content triggers and the labels' own triggers off, as a table owner can."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    RELEASED.drop_triggers_on(connection)
    tables = ("marketplace_label", "marketplace_item", "marketplace_category", "governance_annotator")
    tables += ("governance_guideline", "governance_guidelineversion")
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for table in tables:
                cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        RELEASED.create_triggers_on(connection)


def raw(sql, params=()):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def first_label(version):
    return Label.objects.filter(version=version).order_by("uid").first()


def built_line(version, uid) -> str | None:
    """The statement's own line for one label (None: it leaves that label to Python)."""
    with connection.cursor() as cursor:
        cursor.execute(content_lines.LABEL_LINES_SQL, [version.pk])
        return next(line for line, found in cursor.fetchall() if found == str(uid))


def signed_labels_part(version) -> dict:
    return content.published_event(version).payload["parts"]["labels"]


def other(model_table: str, column: str, value) -> str:
    return f"(SELECT id FROM {model_table} WHERE {column} = '{value}')"


CHANGES = {  # field of the rule -> the UPDATE that changes it for the label (%s: the label's id)
    "key": "UPDATE marketplace_label SET uid = '00000000-0000-4000-8000-000000000001' WHERE id = %s",
    "geometry": "UPDATE marketplace_label SET geometry = jsonb_set(geometry::jsonb, '{bbox,0}', '10.25')::json "
    "WHERE id = %s",
    "polygon": "UPDATE marketplace_label SET geometry = jsonb_set(geometry::jsonb, '{polygons,0,5}', '71')::json "
    "WHERE id = %s",
    "geometry as ingest writes it": "UPDATE marketplace_label SET geometry = "
    '\'{"bbox":[10.5,20.0,100.0,50.0],"polygons":[[10.5,20,110.5,20,60,71]]}\' WHERE id = %s',
    "geometry_type": "UPDATE marketplace_label SET geometry_type = 'bbox' WHERE id = %s",
    "category": "UPDATE marketplace_label SET category_id = "
    + other("marketplace_category", "name", "truck")
    + " WHERE id = %s",
    "class name": "UPDATE marketplace_category SET name = 'lorry' WHERE id = "
    "(SELECT category_id FROM marketplace_label WHERE id = %s)",
    "item": "UPDATE marketplace_label SET item_id = "
    "(SELECT min(i.id) FROM marketplace_item i WHERE i.version_id = marketplace_label.version_id "
    "AND i.id <> marketplace_label.item_id) WHERE id = %s",
    "item key": "UPDATE marketplace_item SET key = 'images/train/x.jpg' WHERE id = "
    "(SELECT item_id FROM marketplace_label WHERE id = %s)",
    "iscrowd": "UPDATE marketplace_label SET iscrowd = NOT iscrowd WHERE id = %s",
    "is_final": "UPDATE marketplace_label SET is_final = NOT is_final WHERE id = %s",
    "annotator": "UPDATE marketplace_label SET annotator_id = "
    + other("governance_annotator", "pseudonym", "A-2")
    + " WHERE id = %s",
    "no annotator": "UPDATE marketplace_label SET annotator_id = NULL WHERE id = %s",
    "pseudonym": "UPDATE governance_annotator SET pseudonym = 'A-9' WHERE id = "
    "(SELECT annotator_id FROM marketplace_label WHERE id = %s)",
    "made_at": "UPDATE marketplace_label SET made_at = made_at + interval '1 microsecond' WHERE id = %s",
    "no made_at": "UPDATE marketplace_label SET made_at = NULL WHERE id = %s",
    "guideline_version": "UPDATE marketplace_label SET guideline_version_id = "
    + other("governance_guidelineversion", "tag", "v2")
    + " WHERE id = %s",
    "no guideline_version": "UPDATE marketplace_label SET guideline_version_id = NULL WHERE id = %s",
    "guideline tag": "UPDATE governance_guidelineversion SET tag = 'v1b' WHERE id = "
    "(SELECT guideline_version_id FROM marketplace_label WHERE id = %s)",
    "guideline title": "UPDATE governance_guideline SET title = 'Tight boxes' WHERE id = (SELECT guideline_id "
    "FROM governance_guidelineversion WHERE id = (SELECT guideline_version_id FROM marketplace_label "
    "WHERE id = %s))",
    "source": "UPDATE marketplace_label SET source = 'human' WHERE id = %s",
    "model_name": "UPDATE marketplace_label SET model_name = 'detr2' WHERE id = %s",
    "model_version": "UPDATE marketplace_label SET model_version = '1.1' WHERE id = %s",
}


def test_every_label_line_of_an_untouched_version_is_built_by_the_database(version):
    for label in Label.objects.filter(version=version):
        assert built_line(version, label.uid) is not None
    assert verify_content._part_digest(version, "labels") == signed_labels_part(version)
    assert verify_content.verify_version(version) is None


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_to_any_field_of_a_label_is_found_and_changes_its_exported_line(version, change):
    label = first_label(version)
    before = built_line(version, label.uid)
    with unguarded():
        raw(CHANGES[change], [label.pk])
        uid = Label.objects.get(pk=label.pk).uid
        line = built_line(version, uid)
        part = verify_content._part_digest(version, "labels")
        difference = verify_content.verify_version(version)
    assert part != signed_labels_part(version)
    assert difference is not None
    assert line is not None, "the statement should build this line itself"
    assert line != before


def test_a_row_the_export_leaves_to_python_is_still_checked(version):
    label = first_label(version)
    with unguarded():
        raw("UPDATE marketplace_label SET attributes = '{\"occluded\": true}' WHERE id = %s", [label.pk])
        line = built_line(version, label.uid)
        part = verify_content._part_digest(version, "labels")
        difference = verify_content.verify_version(version)
    assert line is None  # attributes other than {} are the Python rule's to write
    assert part != signed_labels_part(version)
    assert difference.table == "marketplace_label"
    assert difference.row == f"uid='{label.uid}'" and difference.field == "attributes"


def test_a_label_left_to_python_at_publication_verifies_and_its_change_is_caught(dataset):
    v = f.VersionFactory(dataset=dataset, number=1)
    f.DatasheetFactory(version=v)
    car = f.CategoryFactory(schema=f.SchemaFactory(version=v), name="car", geometry_types=[fmt.BBOX])
    item = f.ItemFactory(version=v, key="images/a.jpg")
    label = f.LabelFactory(item=item, category=car, geometry={"bbox": [5e-5, 1, 2, 3]}, attributes={"n": 2})
    publication.publish_version(version=v)
    v.refresh_from_db()
    assert built_line(v, label.uid) is None
    assert verify_content.verify_version(v) is None
    with unguarded():
        raw("UPDATE marketplace_label SET source = 'consensus' WHERE id = %s", [label.pk])
        difference = verify_content.verify_version(v)
    assert difference.row == f"uid='{label.uid}'" and difference.field == "source"


def test_a_deleted_label_is_caught(version):
    label = first_label(version)
    with unguarded():
        raw("DELETE FROM marketplace_label WHERE id = %s", [label.pk])
        part = verify_content._part_digest(version, "labels")
        difference = verify_content.verify_version(version)
    assert part["count"] == signed_labels_part(version)["count"] - 1
    assert difference.row == f"uid='{label.uid}'" and "removed" in difference.detail
