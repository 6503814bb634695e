"""The demo catalogue: three published datasets from different domains and one supplier draft.

Every image is drawn here with Pillow from the same geometry its labels carry, so the labels
fit the pictures. Seeded, so two runs give the same catalogue; idempotent, so running it
again changes nothing.
"""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction

from governance import ledger
from governance.models import Annotator, Guideline, GuidelineVersion
from marketplace.catalogue import publication as catalogue_publication

from ..blobs import put_blob
from ..formats import model as fmt
from ..licensing import service as licensing
from ..models import (
    AnnotationSchema,
    AttributeSpec,
    Category,
    Dataset,
    DatasetVersion,
    Datasheet,
    Item,
    Label,
    License,
    Membership,
    Offer,
    Organization,
)
from .catalogue import DATASHEETS, PALETTE, SPECS, Spec
from .delivery import delivery_path, write_delivery
from .drawing import DEMO_ACCOUNTS, EPOCH, ORGANIZATIONS, DraftItem, _jpeg, _r, with_candidates


def _users_and_orgs() -> dict[str, Organization]:
    orgs = {}
    for slug, name, description, country in ORGANIZATIONS:
        orgs[slug], _ = Organization.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description, "country": country}
        )
    users = get_user_model().objects
    for username, password, role, org_slug, is_staff in DEMO_ACCOUNTS:
        user, created = users.get_or_create(username=username, defaults={"email": f"{username}@demo.example"})
        if created:
            user.set_password(password)
            user.is_staff = user.is_superuser = is_staff
            user.save()
        if role:
            Membership.objects.get_or_create(user=user, organization=orgs[org_slug], role=role)
    return orgs


def _licenses() -> dict[str, License]:
    cc_by, _ = License.objects.get_or_create(
        spdx_id="CC-BY-4.0",
        defaults={
            "name": "Creative Commons Attribution 4.0 International",
            "url": "https://creativecommons.org/licenses/by/4.0/legalcode",
            "text": "You are free to share and adapt the material for any purpose, even commercially, provided you give appropriate credit.",
            "commercial_use": True,
            "ai_training": True,
            "derivatives": True,
            "redistribution": True,
            "attribution_required": True,
        },
    )
    research, _ = License.objects.get_or_create(
        spdx_id="",
        name="Northwind Research Use License 1.0",
        defaults={
            "text": "Non-commercial research and evaluation only. No redistribution. Demographic attributes may only be used to measure and mitigate bias.",
            "commercial_use": False,
            "ai_training": True,
            "derivatives": True,
            "redistribution": False,
            "attribution_required": True,
            "duration_days": 365,
        },
    )
    commercial, _ = License.objects.get_or_create(
        spdx_id="",
        name="Northwind Commercial AI Training License 2.0",
        defaults={
            "text": "Use to train, evaluate and ship commercial models within the licensee organisation. No redistribution of the images. 5 named seats.",
            "commercial_use": True,
            "ai_training": True,
            "derivatives": True,
            "redistribution": False,
            "attribution_required": False,
            "duration_days": 730,
            "seats": 5,
        },
    )
    return {"open": cc_by, "research": research, "commercial": commercial}


def _new_version(
    dataset: Dataset, number: int, spec: Spec, sheet: dict
) -> tuple[DatasetVersion, dict[str, Category]]:
    version = DatasetVersion.objects.create(dataset=dataset, number=number)
    Datasheet.objects.create(version=version, **sheet)
    schema = AnnotationSchema.objects.create(version=version)
    categories = {}
    for i, c in enumerate(spec.categories):
        categories[c["name"]] = Category.objects.create(schema=schema, color=PALETTE[i % len(PALETTE)], **c)
    for a in spec.attributes:
        AttributeSpec.objects.create(schema=schema, **a)
    return version, categories


def _write_items(version, categories, items: list[DraftItem], annotators, guideline_versions) -> None:
    item_rows = []
    for it in items:
        data = _jpeg(it.image)
        key, sha = put_blob(data, suffix=".jpg")
        item_rows.append(
            Item(
                version=version,
                key=it.key,
                storage_key=key,
                sha256=sha,
                size_bytes=len(data),
                width=it.image.width,
                height=it.image.height,
                split=it.split,
                synthetic=it.synthetic,
                attributes=it.attributes,
            )
        )
    Item.objects.bulk_create(item_rows)
    by_key = {row.key: row for row in Item.objects.filter(version=version)}
    labels = []
    for it in items:
        for lab in it.labels:
            labels.append(
                Label(
                    uid=lab.uid,
                    version=version,
                    item=by_key[it.key],
                    category=categories[lab.category],
                    geometry_type=lab.geometry_type,
                    geometry=lab.geometry,
                    attributes=lab.attributes,
                    is_final=lab.is_final,
                    annotator=annotators.get(lab.annotator),
                    guideline_version=guideline_versions[lab.guideline],
                    source=lab.source,
                    model_name=lab.model_name,
                    model_version=lab.model_version,
                    made_at=lab.made_at,
                    source_ref=f"{it.key}#{len(labels)}",
                )
            )
    Label.objects.bulk_create(labels, batch_size=500)
    version.guideline_versions.set({guideline_versions[lab.guideline] for it in items for lab in it.labels})


def _build_dataset(spec: Spec, supplier: Organization, licenses: dict, *, seed: int) -> Dataset:
    rng = random.Random(seed)
    dataset = Dataset.objects.create(
        slug=spec.slug,
        title=spec.title,
        summary=spec.summary,
        domain=spec.domain,
        task_types=spec.task_types,
        tags=spec.tags,
        supplier=supplier,
        description=DATASHEETS[spec.slug].get("purpose", ""),
    )
    guideline = Guideline.objects.create(dataset=dataset, title=spec.guideline)
    gvs = {}
    for tag, effective, notes in spec.guideline_versions:
        text = f"{spec.guideline} {tag}\n\n{notes}\n\nDraw tight boxes; label every visible instance; mark occlusion."
        gvs[tag] = GuidelineVersion.objects.create(
            guideline=guideline, tag=tag, text=text, effective_date=effective, change_notes=notes
        )
    tags = list(gvs)
    annotators = {}
    for pseudonym in spec.annotators:
        role = (
            Annotator.Role.REVIEWER
            if pseudonym.startswith("R-")
            else (Annotator.Role.EXPERT if pseudonym.startswith("E-") else Annotator.Role.ANNOTATOR)
        )
        annotators[pseudonym], _ = Annotator.objects.get_or_create(
            organization=supplier,
            pseudonym=pseudonym,
            defaults={
                "role": role,
                "expertise": [spec.domain],
                "qualifications": ["certified bridge inspector"] if role == Annotator.Role.EXPERT else [],
                "training_records": [
                    {"what": f"{spec.guideline} {tags[0]} onboarding", "when": "2026-01-15", "passed": True}
                ],
            },
        )
    labellers = [p for p in spec.annotators if not p.startswith("R-")]
    splits = ["train", "train", "train", "val"]
    items: list[DraftItem] = []
    sheet = DATASHEETS[spec.slug]
    last_count = 0
    previous_version = None  # governance ledger: events record what changed since this version
    for number, count in enumerate(
        spec.versions + ([spec.versions[-1] + spec.draft_extra] if spec.draft_extra else []), start=1
    ):
        released = number <= len(spec.versions)
        tag = tags[min(number - 1, len(tags) - 1)]
        for i in range(last_count, count):
            made_at = EPOCH + timedelta(days=30 * (number - 1) + i // 4, minutes=13 * i)
            it = spec.drawer(rng, i, splits[i % len(splits)] if i % 10 != 9 else "test")
            for lab in it.labels:
                lab.guideline = tag
                lab.made_at = made_at
                if lab.source != fmt.MODEL:
                    lab.annotator = labellers[i % len(labellers)]
                if lab.geometry_type == fmt.POLYLINE and spec.slug == "urban-street-scenes":
                    lab.source, lab.model_name, lab.model_version = fmt.MODEL, "lane-prelabel", "0.9.3"
                    lab.annotator = None
            if spec.candidates:
                with_candidates(rng, it, labellers, made_at)
            items.append(it)
        if number > 1:
            # A fix between versions: the same labels (same uids), one box tightened per ten items.
            for it in items[:last_count:10]:
                for lab in it.labels:
                    if lab.geometry_type == fmt.BBOX and lab.is_final:
                        x, y, bw, bh = lab.geometry["bbox"]
                        lab.geometry = {
                            **lab.geometry,
                            "bbox": [_r(x + 1), _r(y + 1), _r(bw - 2), _r(bh - 2)],
                        }
                        lab.guideline = tag
                        break
        last_count = count
        version, categories = _new_version(dataset, number, spec, sheet)
        if not released:
            # The draft stays empty: its delivery is a file the supplier uploads (demo.delivery).
            jpegs = {it.key: _jpeg(it.image) for it in items}
            write_delivery(
                path=delivery_path(spec.slug, number),
                items=items,
                categories=spec.categories,
                jpeg_of=jpegs.get,
            )
            continue
        _write_items(version, categories, items, annotators, gvs)
        _record_ledger_events(dataset, version, previous_version, gvs)  # governance ledger
        previous_version = version
        notes = (
            "First release."
            if number == 1
            else f"{count - spec.versions[number - 2]} new images; tightened boxes under guideline {tag}."
        )
        catalogue_publication.publish_version(
            version=version, release_notes=notes, at=EPOCH + timedelta(days=45 * number)
        )
    return dataset


# --------------------------------------------------------------------------- governance ledger

# Reviewer R-3 reviews and accepts the first box of every fifth image of the street dataset's first
# version, three days on: among them the boxes tightened in v2, whose histories then tell it all.
REVIEW_EVERY, REVIEW_DELAY = 5, timedelta(days=3)


def _record_ledger_events(
    dataset: Dataset, version: DatasetVersion, previous: DatasetVersion | None, gvs: dict
) -> None:
    """Ledger events for a demo version: what its labels' sources say, then the reviews.

    New labels are "created" by their annotator or model at the time they were made (the pedestrian
    candidates too) and a consensus label is a "consensus" event; boxes tightened since the previous
    version are "modified" with before and after. Publishing then signs a tree head over it all.
    """
    ledger.append_events(
        dataset=dataset, events=ledger.label_version_events(version=version, previous=previous)
    )
    reviewer = Annotator.objects.filter(
        organization_id=dataset.supplier_id, pseudonym="R-3", role=Annotator.Role.REVIEWER
    ).first()
    if reviewer is None or previous is not None or not dataset.slug.startswith("urban-street"):
        return
    labels = (
        Label.objects.filter(version=version, is_final=True, source=fmt.HUMAN, geometry_type=fmt.BBOX)
        .select_related("item", "category", "annotator", "guideline_version", "version")
        .order_by("item__key", "id")
    )
    first_box = {}
    for label in labels:
        first_box.setdefault(label.item.key, label)
    events = []
    for key, label in first_box.items():
        if int(key.rsplit("_", 1)[1].split(".")[0]) % REVIEW_EVERY:  # images/train/street_0010.jpg -> 10
            continue
        at = (label.made_at or EPOCH) + REVIEW_DELAY
        in_force = max(
            (g for g in gvs.values() if g.effective_date <= at.date()), key=lambda g: g.effective_date
        )
        for action, minutes in (("reviewed", 0), ("accepted", 4)):
            events.append(
                ledger.label_event(
                    label,
                    action=action,
                    actor=reviewer.pseudonym,
                    occurred_at=at + timedelta(minutes=minutes),
                    guideline_version=in_force.tag,
                    extra={"review": "second-pass check against the guideline"},
                )
            )
    ledger.append_events(dataset=dataset, events=events)


# --------------------------------------------------------------------------- end governance ledger


def _retail_draft(supplier: Organization) -> None:
    """A second supplier's dataset that has no released version: only they may see it."""
    dataset = Dataset.objects.create(
        slug="retail-shelf-products",
        title="Retail Shelf Products (in preparation)",
        supplier=supplier,
        summary="Packaged goods on supermarket shelves, boxes per product facing.",
        domain="retail",
        task_types=["detection"],
        tags=["retail", "shelves"],
    )
    version = DatasetVersion.objects.create(dataset=dataset, number=1)
    Datasheet.objects.create(version=version, purpose="Planogram compliance.")
    schema = AnnotationSchema.objects.create(version=version)
    Category.objects.create(
        schema=schema, name="product_facing", source_id=1, geometry_types=[fmt.BBOX], color=PALETTE[0]
    )


@transaction.atomic
def load_demo() -> list[tuple[str, str, str]]:
    """Create the demo catalogue if it is not there; return the demo accounts (user, password, role)."""
    orgs = _users_and_orgs()
    licenses = _licenses()
    supplier = orgs["northwind-vision"]
    for seed, spec in enumerate(SPECS, start=1):
        if Dataset.objects.filter(slug=spec.slug).exists():
            continue
        _build_dataset(spec, supplier, licenses, seed=seed)
    streets = Dataset.objects.get(slug="urban-street-scenes")
    people = Dataset.objects.get(slug="pedestrian-poses")
    bridges = Dataset.objects.get(slug="bridge-inspection")
    Offer.objects.get_or_create(
        dataset=streets,
        license=licenses["open"],
        access_mode=Offer.AccessMode.OPEN,
        defaults={"description": "Free download with attribution."},
    )
    Offer.objects.get_or_create(
        dataset=people,
        license=licenses["research"],
        access_mode=Offer.AccessMode.REQUEST,
        defaults={"description": "Research use; the supplier reviews each request."},
    )
    Offer.objects.get_or_create(
        dataset=people,
        license=licenses["commercial"],
        access_mode=Offer.AccessMode.PURCHASE,
        defaults={
            "price": Decimal("12000.00"),
            "description": "Commercial training license, 5 seats, 2 years.",
        },
    )
    Offer.objects.get_or_create(
        dataset=bridges,
        license=licenses["commercial"],
        access_mode=Offer.AccessMode.PURCHASE,
        defaults={"price": Decimal("4900.00"), "description": "Per organisation, 5 seats, 2 years."},
    )
    # The demo buyer bought Bridge Inspection the way a user would: an invoiced order, an
    # entitlement that expires with the license, the buyer's acceptance (their seat), a ledger event.
    licensing.purchase(
        user=get_user_model().objects.get(username="buyer"),
        offer=Offer.objects.get(dataset=bridges, access_mode=Offer.AccessMode.PURCHASE),
        idempotency_key="demo-bridge-inspection",
        accept_license=True,
    )
    if not Dataset.objects.filter(slug="retail-shelf-products").exists():
        _retail_draft(orgs["lattice-labs"])
    return [(u, p, (r.label if r else "staff")) for u, p, r, _, _ in DEMO_ACCOUNTS]
