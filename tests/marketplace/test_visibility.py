"""Who sees what: drafts belong to their supplier; the catalogue to everyone; entitlements open the rest."""

import pytest

from marketplace import visibility
from marketplace.models import Dataset
from tests import factories as f
from tests.conftest import build_version

pytestmark = pytest.mark.django_db


def slugs(qs):
    return set(qs.values_list("slug", flat=True))


def test_a_draft_dataset_is_visible_to_its_supplier_only(
    draft_dataset, published_version, supplier, outsider, other_supplier, auditor
):
    assert "secret-draft" in slugs(visibility.datasets(supplier))
    for user in (outsider, other_supplier, auditor, None):
        assert "secret-draft" not in slugs(visibility.datasets(user))
        assert "street-scenes" in slugs(visibility.datasets(user))


def test_staff_see_everything(draft_dataset):
    staff = f.UserFactory(username="staff", is_staff=True)
    assert "secret-draft" in slugs(visibility.datasets(staff))


def test_a_draft_version_of_a_listed_dataset_is_hidden_from_others(
    published_version, dataset, supplier, outsider
):
    build_version(dataset, number=2, publish=False)
    assert set(visibility.versions(outsider).filter(dataset=dataset).values_list("number", flat=True)) == {1}
    assert set(visibility.versions(supplier).filter(dataset=dataset).values_list("number", flat=True)) == {
        1,
        2,
    }


def test_a_delisted_dataset_stays_visible_to_entitled_buyers_only(
    published_version, dataset, buyer, outsider
):
    Dataset.objects.filter(pk=dataset.pk).update(status=Dataset.Status.DELISTED)
    f.EntitlementFactory(organization=buyer.memberships.get().organization, dataset=dataset)
    assert "street-scenes" in slugs(visibility.datasets(buyer))
    assert "street-scenes" not in slugs(visibility.datasets(outsider))


def test_an_outsider_gets_404_on_a_draft_in_the_api(draft_dataset, api_for, outsider, other_supplier):
    for user in (None, outsider, other_supplier):
        response = api_for(user).get("/api/v1/datasets/secret-draft/")
        assert response.status_code == 404
        assert response.json() == {"code": "not_found", "detail": "Not found."}
        assert api_for(user).get("/api/v1/datasets/secret-draft/versions/1/").status_code == 404


def test_the_supplier_reads_their_draft_in_the_api(draft_dataset, api_for, supplier):
    response = api_for(supplier).get("/api/v1/datasets/secret-draft/")
    assert response.status_code == 200
    assert [v["status"] for v in response.json()["versions"]] == ["draft"]


def test_an_outsider_gets_404_on_a_draft_page(draft_dataset, client, client_for, outsider, supplier):
    assert client.get("/datasets/secret-draft/").status_code == 404
    assert client_for(outsider).get("/datasets/secret-draft/").status_code == 404
    assert client_for(supplier).get("/datasets/secret-draft/").status_code == 200


def test_an_outsider_cannot_open_a_draft_version_through_the_page(
    published_version, dataset, client, supplier
):
    build_version(dataset, number=2, publish=False)
    assert client.get("/datasets/street-scenes/?version=2").status_code == 404
    assert client.get("/datasets/street-scenes/?version=1").status_code == 200


def test_the_catalogue_list_never_shows_drafts_to_others(draft_dataset, published_version, api_for, outsider):
    listed = [d["slug"] for d in api_for(outsider).get("/api/v1/datasets/").json()["results"]]
    assert listed == ["street-scenes"]
