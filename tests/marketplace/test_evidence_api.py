"""The API refuses changes to what a released version holds with a clear code, never a 500 (#16).

Workspace edits of a released version's datasheet and schema, deleting a dataset with released
versions, re-using a guideline version's tag for new text; each with the supplier's and an
outsider's credentials, and the stored rows unchanged afterwards.
"""

import pytest
from django.urls import reverse

from governance.models import GuidelineVersion
from marketplace.errors import ErrorCode
from marketplace.models import Category, Dataset, Datasheet
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def released(published_version):
    guideline = f.GuidelineFactory(dataset=published_version.dataset, title="Boxes")
    gv = f.GuidelineVersionFactory(guideline=guideline, tag="v1", text="Draw tight boxes.")
    return published_version, gv


def _ws(name, version, **kwargs):
    return reverse(name, kwargs={"slug": version.dataset.slug, "number": version.number, **kwargs})


def _snapshot(version):
    sheet = Datasheet.objects.filter(version=version).values().first()
    sheet.pop("updated_at", None)
    cats = list(Category.objects.filter(schema__version=version).order_by("pk").values())
    return sheet, cats


@pytest.mark.parametrize("method", ["patch", "put"])
def test_datasheet_of_a_released_version(api_for, supplier, other_supplier, released, method):
    version, _ = released
    before = _snapshot(version)
    url = _ws("api-ws-datasheet", version)
    body = {"limitations": "None at all.", "biases": "None."}
    response = getattr(api_for(supplier), method)(url, body, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == ErrorCode.VERSION_FROZEN
    # Someone else's dataset is not there at all.
    assert getattr(api_for(other_supplier), method)(url, body, format="json").status_code == 404
    assert _snapshot(version) == before


def test_schema_of_a_released_version(api_for, supplier, other_supplier, released):
    version, _ = released
    before = _snapshot(version)
    url = _ws("api-ws-schema", version)
    body = {"categories": [{"name": "renamed", "geometry_types": ["bbox"]}], "attributes": []}
    response = api_for(supplier).put(url, body, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == ErrorCode.VERSION_FROZEN
    assert api_for(other_supplier).put(url, body, format="json").status_code == 404
    assert _snapshot(version) == before


def test_a_dataset_with_released_versions_cannot_be_deleted_through_the_api(
    api_for, supplier, outsider, released, admin_user
):
    version, _ = released
    slug = version.dataset.slug
    for user in (supplier, admin_user):
        for url in (
            reverse("api-ws-dataset-detail", kwargs={"slug": slug}),
            reverse("api-dataset-detail", kwargs={"slug": slug}),
        ):
            response = api_for(user).delete(url)
            assert response.status_code == 405, (user, url)
            assert response.json()["code"] == ErrorCode.METHOD_NOT_ALLOWED
    # To an outsider too, the same answer for this dataset and for one that does not exist: no leak.
    for some in (slug, "no-such-dataset"):
        assert (
            api_for(outsider).delete(reverse("api-ws-dataset-detail", kwargs={"slug": some})).status_code
            == 405
        )
    assert Dataset.objects.filter(slug=slug).exists()


def test_a_guideline_version_cannot_be_rewritten_under_its_tag(api_for, supplier, other_supplier, released):
    version, gv = released
    url = reverse("api-ws-guidelines", kwargs={"slug": version.dataset.slug})
    body = {"title": "Boxes", "tag": "v1", "text": "Boxes may be loose."}
    response = api_for(supplier).post(url, body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == ErrorCode.TAG_TAKEN
    assert api_for(other_supplier).post(url, body, format="json").status_code == 404
    stored = GuidelineVersion.objects.get(pk=gv.pk)
    assert (stored.text, stored.sha256) == ("Draw tight boxes.", gv.sha256)
    # New text is a new tag.
    response = api_for(supplier).post(url, {**body, "tag": "v2"}, format="json")
    assert response.status_code == 201


def test_the_model_refusals_carry_error_codes_the_api_renders(api_for, released):
    """The codes the models raise (rendered by the API's handler as {"code": ...}) are ErrorCode members."""
    from governance.models import GuidelineImmutableError
    from marketplace.models import ReleasedDatasetError

    version, gv = released
    with pytest.raises(ReleasedDatasetError) as error:
        version.dataset.delete()
    assert error.value.code == ErrorCode.DATASET_RELEASED
    gv.text = "Boxes may be loose."
    with pytest.raises(GuidelineImmutableError) as error:
        gv.save()
    assert error.value.code == ErrorCode.GUIDELINE_IMMUTABLE
    lic = f.LicenseFactory(name="Custom", text="Use it well.")
    f.EntitlementFactory(dataset=version.dataset, license=lic)
    lic.text = "Use it however."
    with pytest.raises(Exception) as error:
        lic.save()
    assert error.value.code == ErrorCode.LICENSE_ACCEPTED
