"""The admin shows released versions, their rows and guideline versions read-only: no 500 on save, no
publishing from an inline, no deleting a dataset that has released versions (issue #16)."""

import pytest
from django.urls import reverse

from marketplace.models import Category, Dataset, DatasetVersion, Datasheet, Label

from .test_published_evidence import guideline_version, version  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def change_url(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


@pytest.mark.parametrize(
    "get_obj",
    [
        lambda v, g: v,
        lambda v, g: Datasheet.objects.get(version=v),
        lambda v, g: v.schema,
        lambda v, g: Category.objects.filter(schema__version=v).first(),
        lambda v, g: Label.objects.filter(version=v).first(),
        lambda v, g: g,
    ],
    ids=["version", "datasheet", "schema", "category", "label", "guideline_version"],
)
def test_released_rows_are_shown_read_only_and_a_post_changes_nothing(
    admin_client,
    version,  # noqa: F811
    guideline_version,  # noqa: F811
    get_obj,
):
    obj = get_obj(version, guideline_version)
    page = admin_client.get(change_url(obj))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content

    response = admin_client.post(change_url(obj), {"limitations": "rewritten", "text": "rewritten"})

    assert response.status_code == 403
    assert Datasheet.objects.get(version=version).limitations == "Daytime only."


def test_a_dataset_with_released_versions_cannot_be_deleted_in_the_admin(admin_client, version):  # noqa: F811
    dataset = version.dataset
    url = reverse("admin:marketplace_dataset_delete", args=[dataset.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    changelist = reverse("admin:marketplace_dataset_changelist")
    response = admin_client.post(
        changelist, {"action": "delete_selected", "_selected_action": [dataset.pk], "post": "yes"}
    )
    assert response.status_code in (200, 302, 403)
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_the_dataset_page_does_not_publish_a_draft_from_its_version_inline(admin_client, dataset):
    from tests.conftest import build_version

    draft = build_version(dataset, number=1, items=1, publish=False)
    page = admin_client.get(change_url(dataset))
    assert page.status_code == 200
    assert b'name="versions-0-status"' not in page.content
    draft.refresh_from_db()
    assert draft.status == DatasetVersion.Status.DRAFT
