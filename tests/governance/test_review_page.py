"""The review queue shows each queued image and what each annotator said, and offers as reviewers only
the annotators who labelled the dataset."""

import io

import numpy as np
import pytest
from PIL import Image

from governance.models import Annotator, LabelEvent, ReviewTask
from marketplace.models import Item, Label
from tests import factories as f
from tests.browser import chromium_page

from ..conftest import build_version
from .quality_support import ANNOTATORS, DISPUTED, multi_annotated_version

pytestmark = pytest.mark.django_db

BACKGROUND = (208, 211, 217)  # the grey of an image whose original is not stored (factory items)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def queued(dataset, supplier, client_for):
    version = multi_annotated_version(dataset)
    page = f"/governance/datasets/{dataset.slug}/versions/{version.number}/quality/review/"
    client_for(supplier).post(page, {"action": "build", "threshold": "0.8"})
    task = ReviewTask.objects.get(item__key=DISPUTED)
    return version, page, task


def thumbnail(client, version, task, annotator=None):
    tail = f"by/{annotator.pk}.jpg" if annotator else "thumbnail.jpg"
    return client.get(
        f"/governance/datasets/{version.dataset.slug}/versions/{version.number}/quality/review/{task.pk}/{tail}"
    )


def drawn_near(image: Image.Image, box: tuple[int, int, int, int]) -> bool:
    """Whether anything but the background is drawn inside ``box`` (left, top, right, bottom)."""
    pixels = np.asarray(image.convert("RGB").crop(box), dtype=np.int16)
    return bool((np.abs(pixels - np.array(BACKGROUND)).sum(axis=-1) > 90).any())


def test_each_annotator_has_a_thumbnail_of_what_they_drew(client_for, supplier, queued):
    version, _, task = queued
    client = client_for(supplier)
    final = thumbnail(client, version, task)
    assert final.status_code == 200 and final["Content-Type"] == "image/jpeg"
    a1, a3 = (
        Annotator.objects.get(pseudonym=p, organization=version.dataset.supplier) for p in ("A-1", "A-3")
    )
    by_a1 = Image.open(io.BytesIO(thumbnail(client, version, task, a1).content))
    by_a3 = Image.open(io.BytesIO(thumbnail(client, version, task, a3).content))
    assert by_a1.size == by_a3.size == (512, 384)  # 640 x 480 scaled to 512 at most
    # A-3 missed the second car (x 240..360, y 80..150 at full size, 0.8 here): its top edge.
    second_car_top = (200, 58, 280, 70)
    assert drawn_near(by_a1, second_car_top)
    assert not drawn_near(by_a3, second_car_top)
    first_car_top = (40, 58, 110, 70)
    assert drawn_near(by_a3, first_car_top)


@pytest.mark.parametrize("who", ["buyer", "auditor", "outsider", "other_supplier"])
def test_the_thumbnails_are_the_suppliers_alone(client_for, request, queued, who):
    version, _, task = queued
    client = client_for(request.getfixturevalue(who))
    a1 = Annotator.objects.get(pseudonym="A-1", organization=version.dataset.supplier)
    assert thumbnail(client, version, task).status_code == 404
    assert thumbnail(client, version, task, a1).status_code == 404


def test_another_organisations_annotator_has_no_thumbnail(client_for, supplier, queued):
    version, _, task = queued
    stranger = f.AnnotatorFactory(pseudonym="A-1")  # same pseudonym, another supplier
    assert thumbnail(client_for(supplier), version, task, stranger).status_code == 404


def test_only_the_annotators_who_labelled_the_dataset_may_be_named_reviewer(client_for, supplier, queued):
    version, page, task = queued
    supplier_org = version.dataset.supplier
    other = f.DatasetFactory(supplier=supplier_org, slug="harbour")
    elsewhere = f.AnnotatorFactory(organization=supplier_org, pseudonym="H-1")
    build_version(other, number=1, annotator=elsewhere)  # labelled another dataset of the same supplier
    f.AnnotatorFactory(organization=supplier_org, pseudonym="N-0")  # never labelled anything
    client = client_for(supplier)

    html = client.get(page).content.decode()
    offered = html.split('name="reviewer"')[1].split("</select>")[0]
    for pseudonym in ANNOTATORS:
        assert f"<option>{pseudonym}</option>" in offered
    assert "H-1" not in offered and "N-0" not in offered

    response = client.post(page, {"action": "accept", "task": task.pk, "reviewer": "H-1"}, follow=True)
    assert "Name one of the annotators who labelled this dataset" in response.content.decode()
    assert ReviewTask.objects.get(pk=task.pk).status == "open"
    assert not LabelEvent.objects.filter(action="accepted").exists()

    api = client.post(
        f"/api/v1/datasets/{version.dataset.slug}/versions/{version.number}/review-queue/{task.pk}/accept/",
        {"reviewer": "H-1"},
        content_type="application/json",
    )
    assert api.status_code == 400 and api.json()["code"] == "invalid_reviewer"
    client.post(page, {"action": "accept", "task": task.pk, "reviewer": "A-2"})
    assert ReviewTask.objects.get(pk=task.pk).reviewer.pseudonym == "A-2"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_review_queue_shows_thumbnails_and_each_annotators_labels_in_chromium(
    live_server, dataset, supplier
):
    version = multi_annotated_version(dataset)
    with chromium_page() as page:
        page.goto(live_server.url + "/accounts/login/")
        page.fill("#id_username", "supplier")
        page.fill("#id_password", "pass-word-123")
        page.click("button:has-text('Log in')")
        page.wait_for_load_state()
        page.goto(
            f"{live_server.url}/governance/datasets/{dataset.slug}/versions/{version.number}/quality/review/"
        )
        page.fill("input[name=threshold]", "0.8")
        page.click("text=Add to queue")
        task = ReviewTask.objects.get(item__key=DISPUTED)
        row = page.locator(f"#task-{task.pk}")
        row.locator("img.review-thumb").first.wait_for()
        images = row.locator("img.review-thumb")
        assert images.count() == 1 + len(ANNOTATORS)  # the final labels, then one per annotator
        for i in range(images.count()):
            images.nth(i).scroll_into_view_if_needed()
            page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0", arg=images.nth(i).element_handle()
            )
        item = Item.objects.get(version=version, key=DISPUTED)
        for pseudonym in ANNOTATORS:
            said = row.locator(f".said[data-annotator='{pseudonym}']").inner_text()
            labels = Label.objects.filter(item=item, is_final=False, annotator__pseudonym=pseudonym)
            for name in set(labels.values_list("category__name", flat=True)):
                assert said.count(name) == labels.filter(category__name=name).count(), (pseudonym, said)
        assert "night" in row.locator(".said[data-annotator='A-2']").inner_text()  # A-2 called it night
