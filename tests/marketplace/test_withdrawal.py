"""Staff withdraw a dataset that has released versions instead of deleting it (issue #16): a reason
the catalogue shows and the ledger records; buyers who hold entitlements still see it is withdrawn."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from governance import ledger
from governance.models import LabelEvent, TreeHead
from governance.verify_offline import verify
from marketplace.catalogue.withdrawal import withdraw_dataset
from marketplace.errors import DomainError
from marketplace.models import Dataset, DatasetWithdrawal, Offer, ReleasedDatasetError
from tests import factories as f

pytestmark = pytest.mark.django_db

REASON = "The supplier could not show consent for 12 images of people."


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("registry-staff", is_staff=True)


@pytest.fixture
def entitled_buyer(buyer, published_version):
    org = buyer.memberships.get().organization
    f.EntitlementFactory(organization=org, dataset=published_version.dataset)
    return buyer


def test_withdrawal_records_the_reason_in_the_catalogue_and_the_signed_ledger(staff, published_version):
    dataset = published_version.dataset
    offer = f.OfferFactory(dataset=dataset)
    withdrawal = withdraw_dataset(dataset=dataset, reason=f"  {REASON} ", user=staff)

    assert withdrawal.reason == REASON and withdrawal.withdrawn_by == staff
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.DELISTED
    assert not Offer.objects.get(pk=offer.pk).active
    event = LabelEvent.objects.filter(dataset=dataset, action="dataset_withdrawn").get()
    assert event.payload == {"reason": REASON}
    assert event.actor == "registry:staff"  # the ledger is never erased: no person's name in it
    # A tree head was signed over it: the withdrawal is provable offline like the publication.
    head = TreeHead.objects.filter(dataset=dataset).order_by("-tree_size").first()
    assert head.tree_size == event.seq + 1
    bundle = ledger.proof_bundle(event, head=head)
    assert verify(bundle["tree_head"], ledger.signing.public_key(), bundle["event"], bundle["proof"]).valid
    assert ledger.verify_dataset(dataset=dataset).ok
    # Still not deletable.
    with pytest.raises(ReleasedDatasetError):
        dataset.delete()


def test_withdrawal_refusals(staff, supplier, published_version):
    dataset = published_version.dataset
    with pytest.raises(DomainError) as error:
        withdraw_dataset(dataset=dataset, reason=REASON, user=supplier)  # the supplier delists, not withdraws
    assert error.value.code == "permission_denied" and error.value.status_code == 403
    with pytest.raises(DomainError) as error:
        withdraw_dataset(dataset=dataset, reason="   ", user=staff)
    assert error.value.code == "reason_required"
    with pytest.raises(DomainError) as error:
        withdraw_dataset(dataset=dataset, reason="x" * 2001, user=staff)
    assert error.value.code == "invalid" and "x" * 50 not in error.value.detail
    assert not DatasetWithdrawal.objects.exists()
    assert not LabelEvent.objects.filter(action="dataset_withdrawn").exists()

    withdraw_dataset(dataset=dataset, reason=REASON, user=staff)
    with pytest.raises(DomainError) as error:
        withdraw_dataset(dataset=dataset, reason="again", user=staff)
    assert error.value.code == "already_withdrawn" and error.value.status_code == 409
    assert LabelEvent.objects.filter(action="dataset_withdrawn").count() == 1
    # Written once: the record cannot be edited or deleted either.
    withdrawal = DatasetWithdrawal.objects.get()
    withdrawal.reason = "rewritten"
    with pytest.raises(Exception, match="never changed"):
        withdrawal.save()
    with pytest.raises(Exception, match="never deleted"):
        withdrawal.delete()


def test_withdraw_api_staff_only_outsider_sees_nothing(
    api_for, staff, supplier, outsider, entitled_buyer, published_version
):
    slug = published_version.dataset.slug
    url = reverse("api-dataset-withdraw", kwargs={"slug": slug})
    assert api_for().post(url, {"reason": REASON}, format="json").status_code == 401
    response = api_for(supplier).post(url, {"reason": REASON}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    response = api_for(entitled_buyer).post(url, {"reason": REASON}, format="json")
    assert response.status_code == 403
    response = api_for(staff).post(url, {"reason": ""}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "reason_required"
    assert not DatasetWithdrawal.objects.exists()

    response = api_for(staff).post(url, {"reason": REASON}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["withdrawal"]["reason"] == REASON
    response = api_for(staff).post(url, {"reason": REASON}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "already_withdrawn"

    detail = reverse("api-dataset-detail", kwargs={"slug": slug})
    # The entitled buyer still sees the dataset, and that it is withdrawn, and why.
    body = api_for(entitled_buyer).get(detail).json()
    assert body["withdrawal"]["reason"] == REASON and body["status"] == "delisted"
    # The outsider: gone from the catalogue, and its page is a 404 (as for any delisted dataset).
    assert api_for(outsider).get(detail).status_code == 404
    listed = api_for(outsider).get(reverse("api-dataset-list")).json()
    assert slug not in [d["slug"] for d in listed["results"]]
    assert api_for(outsider).post(url, {"reason": REASON}, format="json").status_code == 404


def test_withdrawn_dataset_page_and_library_say_so(
    client_for, staff, entitled_buyer, outsider, published_version
):
    dataset = published_version.dataset
    withdraw_dataset(dataset=dataset, reason=REASON + " <script>x</script>", user=staff)
    client = client_for(entitled_buyer)
    page = client.get(dataset.get_absolute_url())
    assert page.status_code == 200
    assert b'id="withdrawn"' in page.content and REASON.encode() in page.content
    assert b"<script>x</script>" not in page.content  # escaped
    library = client.get(reverse("library"))
    assert b"Withdrawn" in library.content
    assert client_for(outsider).get(dataset.get_absolute_url()).status_code == 404


def test_admin_withdraw_action_leads_to_the_form_and_the_form_uses_the_service(
    admin_client, published_version
):
    dataset = published_version.dataset
    changelist = reverse("admin:marketplace_dataset_changelist")
    response = admin_client.post(changelist, {"action": "withdraw", "_selected_action": [dataset.pk]})
    assert response.status_code == 302
    add_url = response["Location"]
    assert add_url.startswith(reverse("admin:marketplace_datasetwithdrawal_add"))
    assert admin_client.get(add_url).status_code == 200
    # Without a reason: the form says so, nothing written.
    response = admin_client.post(add_url, {"dataset": dataset.pk, "reason": ""})
    assert response.status_code == 200 and not DatasetWithdrawal.objects.exists()
    response = admin_client.post(add_url, {"dataset": dataset.pk, "reason": REASON})
    assert response.status_code == 302
    withdrawal = DatasetWithdrawal.objects.get()
    assert LabelEvent.objects.filter(dataset=dataset, action="dataset_withdrawn").count() == 1
    # Read-only afterwards; no delete; a second withdrawal of the same dataset is a form error.
    page = admin_client.get(reverse("admin:marketplace_datasetwithdrawal_change", args=[withdrawal.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    delete = reverse("admin:marketplace_datasetwithdrawal_delete", args=[withdrawal.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    response = admin_client.post(add_url, {"dataset": dataset.pk, "reason": "again"})
    assert response.status_code == 200
    assert DatasetWithdrawal.objects.count() == 1
    # Relisting skips a withdrawn dataset.
    admin_client.post(changelist, {"action": "relist", "_selected_action": [dataset.pk]})
    assert Dataset.objects.get(pk=dataset.pk).status == Dataset.Status.DELISTED
