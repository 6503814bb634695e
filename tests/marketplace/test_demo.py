"""The demo catalogue a newcomer sees after `make demo`."""

import io

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db.models import Count
from PIL import Image

from marketplace.formats import model as fmt
from marketplace.models import Dataset, DatasetVersion, Item, Label, License

pytestmark = pytest.mark.django_db


def counts():
    return (
        Dataset.objects.count(),
        DatasetVersion.objects.count(),
        Item.objects.count(),
        Label.objects.count(),
    )


def test_the_demo_loads_and_running_it_again_changes_nothing(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    out = io.StringIO()
    call_command("demo", stdout=out)
    first = counts()
    files = sorted(p.name for p in tmp_path.rglob("*.jpg"))
    call_command("demo", stdout=io.StringIO())
    assert counts() == first
    assert sorted(p.name for p in tmp_path.rglob("*.jpg")) == files
    assert "supplier" in out.getvalue() and "buyer" in out.getvalue() and "auditor" in out.getvalue()


def test_the_demo_is_a_credible_catalogue(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    call_command("demo", stdout=io.StringIO())
    listed = Dataset.objects.listed()
    assert listed.count() >= 3
    assert len(set(listed.values_list("domain", flat=True))) >= 3
    final_kinds = set(
        Label.objects.filter(version__status="published").values_list("geometry_type", flat=True)
    )
    assert final_kinds == set(fmt.GEOMETRY_TYPES)
    assert Label.objects.filter(version__status="published", is_final=True).count() >= 300
    # One dataset has two or three annotators' candidates on every item.
    per_item = (
        Label.objects.filter(is_final=False).values("item").annotate(n=Count("annotator", distinct=True))
    )
    assert per_item and all(2 <= row["n"] <= 3 for row in per_item)
    assert License.objects.filter(spdx_id="CC-BY-4.0").exists()
    assert License.objects.filter(spdx_id="", commercial_use=True).exists()
    assert Dataset.objects.filter(
        status=Dataset.Status.DRAFT
    ).exists()  # a supplier's draft, for the visibility story


def test_the_demo_images_are_real_and_match_their_rows(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    call_command("demo", stdout=io.StringIO())
    for item in Item.objects.order_by("?")[:10]:
        with default_storage.open(item.storage_key) as fh:
            image = Image.open(fh, formats=["JPEG"])
            assert image.size == (item.width, item.height)


def test_every_demo_label_has_a_valid_geometry(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    call_command("demo", stdout=io.StringIO())
    for label in Label.objects.select_related("item"):
        assert (
            fmt.validate_geometry(label.geometry_type, label.geometry, label.item.width, label.item.height)
            == []
        ), label
