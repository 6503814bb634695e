"""Builders for the quality tests: versions labelled independently by several annotators, and the demo.

``multi_annotated_version`` makes a small version where three annotators (A-1, A-2, A-3) each drew
every car and person on every image, classified the image, and gave each person an age band. On
most images they agree closely; on the image named ``DISPUTED`` A-3 misses a car and disagrees on
the age band, and A-2 calls the image "night". Final labels are the hand-made consensus, unless
``finals=False``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.test import override_settings

from governance.models import Annotator
from marketplace.catalogue import publication as catalogue_publication
from marketplace.formats import model as fmt
from marketplace.models import Label
from tests import factories as f

ANNOTATORS = ["A-1", "A-2", "A-3"]
DISPUTED = "images/train/0002.jpg"
MADE_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KEYPOINTS = ["head", "left_foot", "right_foot"]


def multi_annotated_version(dataset, *, number=1, items=5, publish=True, finals=True, seed=7):
    """A version with three annotators' candidates on every image (see the module docstring)."""
    rng = random.Random(seed)
    version = f.VersionFactory(dataset=dataset, number=number)
    f.DatasheetFactory(version=version)
    schema = f.SchemaFactory(version=version)
    car = f.CategoryFactory(schema=schema, name="car", source_id=1, geometry_types=[fmt.BBOX])
    person = f.CategoryFactory(
        schema=schema,
        name="person",
        source_id=2,
        supercategory="person",
        geometry_types=[fmt.KEYPOINTS],
        keypoint_names=KEYPOINTS,
        skeleton=[[1, 2], [1, 3]],
        keypoint_sigmas=[0.05, 0.08, 0.08],
    )
    day = f.CategoryFactory(schema=schema, name="day", source_id=3, geometry_types=[fmt.CLASSIFICATION])
    night = f.CategoryFactory(schema=schema, name="night", source_id=4, geometry_types=[fmt.CLASSIFICATION])
    f.AttributeSpecFactory(
        schema=schema,
        name="age_band",
        type="choice",
        allowed_values=["child", "adult", "senior"],
        categories=["person"],
        describes_person=True,
        target_distribution={"child": 0.2, "adult": 0.5, "senior": 0.3},
    )
    guideline = f.GuidelineVersionFactory(guideline=f.GuidelineFactory(dataset=dataset), tag="v1.0")
    annotators = {
        p: Annotator.objects.get_or_create(organization=dataset.supplier, pseudonym=p)[0] for p in ANNOTATORS
    }

    def label(item, category, kind, geometry, attributes=None, annotator=None):
        return Label(
            version=version,
            item=item,
            category=category,
            geometry_type=kind,
            geometry=geometry,
            attributes=attributes or {},
            is_final=annotator is None,
            annotator=annotators.get(annotator),
            guideline_version=guideline,
            source=fmt.CONSENSUS if annotator is None else fmt.HUMAN,
            made_at=MADE_AT,
        )

    rows = []
    for i in range(items):
        item = f.ItemFactory(
            version=version, key=f"images/train/{i:04d}.jpg", split="val" if i == 0 else "train"
        )
        disputed = item.key == DISPUTED
        cars = [[40.0 + 200 * k, 60.0 + 10 * i, 120.0, 70.0] for k in range(2)]
        kp = [300.0, 100.0, 2, 280.0, 300.0, 2, 320.0, 300.0, 2]
        age = ["adult", "child", "senior", "adult", "adult"][i % 5]
        for who in ANNOTATORS:
            for k, box in enumerate(cars):
                if disputed and who == "A-3" and k == 1:
                    continue  # A-3 missed the second car
                noisy = [round(v + rng.uniform(-2, 2), 2) for v in box]
                rows.append(label(item, car, fmt.BBOX, {"bbox": noisy}, annotator=who))
            points = [round(v + rng.uniform(-1.5, 1.5), 2) if j % 3 != 2 else v for j, v in enumerate(kp)]
            their_age = "child" if disputed and who == "A-3" else age
            rows.append(
                label(
                    item,
                    person,
                    fmt.KEYPOINTS,
                    {"keypoints": points, "bbox": [270.0, 90.0, 60.0, 220.0]},
                    {"age_band": their_age},
                    annotator=who,
                )
            )
            rows.append(
                label(
                    item, night if disputed and who == "A-2" else day, fmt.CLASSIFICATION, {}, annotator=who
                )
            )
        if finals:
            rows += [label(item, car, fmt.BBOX, {"bbox": box}) for box in cars]
            rows.append(
                label(
                    item,
                    person,
                    fmt.KEYPOINTS,
                    {"keypoints": kp, "bbox": [270.0, 90.0, 60.0, 220.0]},
                    {"age_band": age},
                )
            )
            rows.append(label(item, day, fmt.CLASSIFICATION, {}))
    Label.objects.bulk_create(rows)
    version.guideline_versions.set([guideline])
    if publish:
        catalogue_publication.publish_version(version=version, release_notes="Three annotators")
        version.refresh_from_db()
    return version


@pytest.fixture(scope="module")
def demo_catalogue(django_db_setup, django_db_blocker, tmp_path_factory):
    """The demo catalogue, loaded once for a module and rolled back after it.

    Rolled back, not deleted: published versions and ledger events refuse deletion by design.
    Each test still runs in its own savepoint inside this transaction.
    """
    from marketplace.demo.loader import load_demo

    media = tmp_path_factory.mktemp("demo-media")
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=media), transaction.atomic():
        load_demo()
        yield
        transaction.set_rollback(True)
