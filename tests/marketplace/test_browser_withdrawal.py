"""A buyer holding an entitlement on a dataset that staff withdrew sees it, in a real headless
Chromium: the dataset page says it is withdrawn and why; the library marks it (#16)."""

import pytest
from django.contrib.auth import get_user_model

from marketplace.catalogue.withdrawal import withdraw_dataset
from tests import factories as f

from .test_browser_buyer import journey, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REASON = "Consent for some images of people could not be shown."


def test_an_entitled_buyer_sees_the_withdrawal(live_server, buyer, published_version):
    dataset = published_version.dataset
    f.EntitlementFactory(organization=buyer.memberships.get().organization, dataset=dataset)
    staff = get_user_model().objects.create_user("registry-staff", is_staff=True)
    withdraw_dataset(dataset=dataset, reason=REASON, user=staff)

    base = live_server.url
    with journey("withdrawn-dataset") as page:
        log_in(page, base, buyer.username, then=dataset.get_absolute_url())
        notice = page.locator("#withdrawn")
        assert notice.is_visible()
        assert REASON in notice.inner_text()
        page.goto(f"{base}/library/")
        assert page.locator(".tag.withdrawn").first.is_visible()
