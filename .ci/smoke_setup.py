"""Smoke test setup (.ci/smoke_production.sh): the people and the dataset an operator would create.

Run with `manage.py shell -c "exec(open('.ci/smoke_setup.py').read())"` under the production
environment; prints the tokens and the dataset slug as JSON for the driver.
"""

import json

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from marketplace.models import Dataset, Datasheet, License, Membership, Offer, Organization, Role
from marketplace.workspace import editing

User = get_user_model()
supplier_org, _ = Organization.objects.get_or_create(
    slug="smoke-supplier", defaults={"name": "Smoke Supplier"}
)
user, _ = User.objects.get_or_create(username="smoke-supplier")
Membership.objects.get_or_create(user=user, organization=supplier_org, defaults={"role": Role.SUPPLIER})
dataset = Dataset.objects.filter(slug="smoke-streets").first() or editing.create_dataset(
    user=user,
    organization=supplier_org,
    slug="smoke-streets",
    title="Smoke streets",
    summary="Street scenes for the production smoke test.",
    domain="autonomous-driving",
)
sheet = Datasheet.objects.get(version__dataset=dataset, version__number=1)
for field in editing.REQUIRED_DATASHEET_FIELDS.values():
    setattr(sheet, field, f"Answered for the smoke test: {field}.")
sheet.save()
license_, _ = License.objects.get_or_create(
    name="CC-BY-4.0 (smoke)", defaults={"spdx_id": "CC-BY-4.0", "text": "Attribution."}
)
Offer.objects.get_or_create(
    dataset=dataset, license=license_, defaults={"access_mode": Offer.AccessMode.OPEN, "active": True}
)
print(json.dumps({"token": Token.objects.get_or_create(user=user)[0].key, "dataset": dataset.slug}))
