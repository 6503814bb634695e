"""Smaller things a new user noticed: attribution shown as a refusal, buyers' IP addresses shown to suppliers."""

import re

import pytest

from marketplace.models import Download, Export, Offer
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_attribution_not_required_is_not_shown_as_a_refusal(client, published_version):
    lic = f.LicenseFactory(spdx_id="CC0-1.0", name="CC0", commercial_use=False, attribution_required=False)
    f.OfferFactory(dataset=published_version.dataset, license=lic, access_mode=Offer.AccessMode.OPEN, price=0)
    html = client.get(f"/datasets/{published_version.dataset.slug}/").content.decode()
    row = html.split('<tr class="offer">')[1].split("</tr>")[0]
    cells = re.findall(r'<td class="([^"]*)">(Yes|No)</td>', row)
    # Commercial use, AI training, derivatives, redistribution, attribution: in that order.
    assert cells[0] == ("no", "No")  # a permission refused reads as one
    assert cells[-1] == ("", "No")  # no attribution required is not a refusal


def test_a_supplier_sees_downloads_without_the_buyers_ip_address_and_staff_with_it(
    api_for, supplier, buyer, published_version
):
    export = Export.objects.create(version=published_version, format="coco", options_hash="x" * 64)
    Download.objects.create(export=export, user=buyer, ip_address="203.0.113.7")
    url = f"/api/v1/datasets/{published_version.dataset.slug}/downloads/"

    [row] = api_for(supplier).get(url).json()["results"]
    assert row["user"] == "buyer" and row["ip_address"] is None

    staff = f.UserFactory(is_staff=True)
    [row] = api_for(staff).get(url).json()["results"]
    assert row["ip_address"] == "203.0.113.7"
