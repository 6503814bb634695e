"""An export reads each item with exactly its labels: two sorted streams merged, checked against the ORM."""

import csv
import io

import pytest

from marketplace.exports import records
from marketplace.formats import model as fmt
from marketplace.models import Item, Label
from tests import factories as f


def reference(version, *, splits=(), candidates=False):
    items = Item.objects.filter(version=version).order_by("key")
    if splits:
        items = items.filter(split__in=splits)
    out = []
    for item in items:
        labels = Label.objects.filter(item=item).order_by("id")
        if not candidates:
            labels = labels.filter(is_final=True)
        out.append((item.key, [(str(label.uid), label.geometry) for label in labels]))
    return out


@pytest.mark.django_db
@pytest.mark.parametrize(("splits", "candidates"), [((), False), (("val",), False), ((), True)])
def test_each_item_comes_with_exactly_its_labels(splits, candidates):
    first = f.ItemFactory(key="images/a/000.jpg")
    version = first.version
    category = f.CategoryFactory(schema=f.SchemaFactory(version=version), name="car")
    items = [first] + [
        f.ItemFactory(
            version=version,
            key=f"images/{'b' if n % 3 else 'a'}/{n:03d}.jpg",
            split="val" if n % 2 else "train",
        )
        for n in range(1, 40)
    ]
    for n, item in enumerate(items):
        for k in range(n % 4):  # some items without a label, some with several
            f.LabelFactory(
                item=item,
                category=category,
                geometry_type=fmt.BBOX,
                geometry={"bbox": [n, k, 1.5, 2]},
                is_final=k != 2,
            )
    selection = records.Selection(version=version, options={"splits": list(splits), "candidates": candidates})
    rows = io.StringIO()
    got = [
        (item.key, [(label.uid, label.geometry) for label in labels])
        for item, labels in records.iter_records(selection, provenance=csv.writer(rows))
    ]
    assert got == reference(version, splits=splits, candidates=candidates)
    assert len(rows.getvalue().splitlines()) == sum(len(labels) for _, labels in got)
