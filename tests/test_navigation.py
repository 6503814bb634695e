"""The header's links and the landing page follow the user's roles; the auditor's index is scoped."""

import pytest
from django.urls import reverse

from marketplace.models import Notification, Role
from tests import factories as f
from tests.conftest import build_version

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("role", "home"),
    [(Role.SUPPLIER, "/workspace/"), (Role.BUYER, "/library/"), (Role.AUDITOR, "/governance/")],
)
def test_logging_in_without_next_lands_on_the_roles_home(client, role, home):
    user = f.MembershipFactory(role=role).user
    user.set_password("pw-123456-x")
    user.save()
    response = client.post(reverse("login"), {"username": user.username, "password": "pw-123456-x"})
    assert response.status_code == 302
    assert client.get(response["Location"]).url == home


def test_staff_lands_on_the_admin_and_a_user_without_role_on_the_catalogue(client_for):
    staff = f.UserFactory(is_staff=True)
    assert client_for(staff).get("/home/").url == "/admin/"
    nobody = f.UserFactory()
    assert client_for(nobody).get("/home/").url == "/"


def test_the_header_shows_each_role_its_pages_and_the_unread_count(
    client_for, supplier, auditor, buyer, dataset
):
    page = client_for(supplier).get("/").content.decode()
    for ident in ("nav-workspace", "nav-deliveries", "nav-requests", "nav-notifications"):
        assert f'id="{ident}"' in page
    assert 'id="nav-governance"' not in page and 'id="nav-admin"' not in page

    page = client_for(auditor).get("/").content.decode()
    assert 'id="nav-governance"' in page and 'id="nav-workspace"' not in page

    page = client_for(buyer).get("/").content.decode()
    assert (
        'id="nav-library"' in page and 'id="nav-workspace"' not in page and 'id="nav-governance"' not in page
    )
    assert 'title="unread"' not in page
    for n in range(2):
        Notification.objects.create(
            recipient=buyer, kind=Notification.Kind.NEW_VERSION, dataset=dataset, subject=f"n{n}"
        )
    page = client_for(buyer).get("/").content.decode()
    assert '<span class="count" title="unread">2</span>' in page


def test_the_auditor_index_lists_released_versions_only(client_for, auditor, dataset, draft_dataset):
    build_version(dataset, number=1)
    build_version(dataset, number=2, publish=False)
    page = client_for(auditor).get("/governance/").content.decode()
    assert 'data-dataset="street-scenes" data-version="1"' in page
    assert 'data-version="2"' not in page and "secret-draft" not in page


def test_the_auditor_index_shows_an_outsider_nothing(client_for, outsider, dataset):
    build_version(dataset, number=1)
    page = client_for(outsider).get("/governance/").content.decode()
    assert "street-scenes" not in page and "No released version is open to you." in page


def test_the_auditor_index_needs_a_login(client):
    assert client.get("/governance/").status_code == 302


def test_a_visitor_finds_sign_up_in_the_header_and_it_leads_to_the_form(client, client_for, buyer):
    page = client.get("/").content.decode()
    assert 'id="nav-signup" href="/accounts/signup/"' in page
    assert client.get("/accounts/signup/").status_code == 200
    assert 'id="nav-signup"' not in client_for(buyer).get("/").content.decode()
