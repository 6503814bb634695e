"""The cross-tenant walk: every operation of the OpenAPI schema, as people who must not see a victim's data.

A victim supplier has a listed dataset (public) with a draft second version, and a draft dataset; a
victim buyer has bought, requested, exported and downloaded. Everything created after the public part
is the victim's private data, whatever model it lives in, so the walk keeps working as endpoints and
models are added. For every operation, each path parameter is bound to the victim's private objects
(found through the model the path names), and the walk expects:

- no 2xx or 3xx on an operation bound to anything private;
- no write that succeeds on the victim's public dataset;
- no response at all, even a 2xx on public data or a list, that mentions the victim's private rows
  (their rows carry the word "canary"; the public ones never do).

Personas: anonymous, an outsider (buyer role, holds nothing), a buyer of another dataset (holds a
license elsewhere), a supplier of another dataset.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.core.cache import caches
from django.utils import timezone

from marketplace.licensing import service as licensing
from marketplace.models import Dataset, Delivery, Download, Export, Role
from tests import factories as f
from tests.conftest import build_version, clear_own_keys

from .buyer_support import fast_passwords, purchase_offer, request_offer  # noqa: F401

pytestmark = pytest.mark.django_db

CANARY = "canary"
METHODS = ("get", "post", "put", "patch", "delete")
MAX_CANDIDATES = 4  # per path parameter: enough to hit every kind of private row, few enough to be quick


def snapshot() -> dict:
    return {model: set(model.objects.values_list("pk", flat=True)) for model in apps.get_models()}


def added_since(before: dict) -> dict:
    """The rows of every model created since `before`, by model."""
    after = snapshot()
    return {
        model: pks - before.get(model, set())
        for model, pks in after.items()
        if pks - before.get(model, set())
    }


@dataclass
class Scenario:
    slug: str
    number: int
    dataset_private: bool  # the dataset itself is hidden (a draft)
    version_private: bool  # the version is hidden (a draft of a listed dataset)


@dataclass
class World:
    private: dict  # model -> pks created as the victim's private data
    persona_rows: dict  # model -> pks created for the personas (never used as a victim's id)
    scenarios: list[Scenario]


def build_world(persona_name: str):
    """The victim's public data, then their private data, then the persona; returns (world, persona)."""
    victim_supplier_org = f.OrganizationFactory(slug="victim-vision", name="Victim Vision")
    victim_supplier = f.MembershipFactory(
        user=f.UserFactory(username="victim-supplier"), organization=victim_supplier_org, role=Role.SUPPLIER
    ).user
    annotator = f.AnnotatorFactory(organization=victim_supplier_org, pseudonym="V-1")
    public = f.DatasetFactory(supplier=victim_supplier_org, slug="victim-public", title="Victim Public")
    build_version(public, number=1, annotator=annotator)
    offer = purchase_offer(public, price=100)
    request_mode = request_offer(public)

    before_private = snapshot()
    buyers_org = f.OrganizationFactory(slug="canary-buyers", name="Canary Buyers Ltd")
    victim_buyer = f.MembershipFactory(
        user=f.UserFactory(username="canary-buyer"), organization=buyers_org, role=Role.BUYER
    ).user
    order = licensing.purchase(
        user=victim_buyer, offer=offer, idempotency_key="canary-key", accept_license=True
    )
    licensing.mark_paid(user=victim_supplier, order=order, reference="canary-reference", amount="100.00")
    licensing.request_access(
        user=victim_buyer, offer=request_mode, accept_license=True, message="canary message"
    )
    v2 = build_version(public, number=2, publish=False, annotator=annotator)
    v2.release_notes = "canary notes of a draft"
    v2.save()
    draft = f.DatasetFactory(supplier=victim_supplier_org, slug="canary-draft", title="Canary Draft")
    build_version(draft, number=1, publish=False, annotator=annotator)
    custom = f.LicenseFactory(name="Canary custom terms", owner=victim_supplier_org)  # a supplier's own terms
    f.OfferFactory(dataset=draft, license=custom)
    published = public.versions.get(number=1)
    export = Export.objects.create(
        version=published,
        format=Export.Format.COCO,
        options_hash="canary",
        status=Export.Status.READY,
        notes=["canary export"],
        requested_by=victim_buyer,
        finished_at=timezone.now(),
    )
    Download.objects.create(export=export, user=victim_buyer, organization=buyers_org)
    Delivery.objects.create(
        dataset=draft,
        archive="deliveries/canary.zip",
        original_name="canary.zip",
        uploaded_by=victim_supplier,
    )
    private = added_since(before_private)

    before_persona = snapshot()
    persona = make_persona(persona_name)
    persona_rows = added_since(before_persona)
    scenarios = [
        Scenario("canary-draft", 1, dataset_private=True, version_private=True),
        Scenario("victim-public", 2, dataset_private=False, version_private=True),
        Scenario("victim-public", 1, dataset_private=False, version_private=False),
    ]
    return World(private=private, persona_rows=persona_rows, scenarios=scenarios), persona


def make_persona(name: str):
    if name == "anonymous":
        return None
    org = f.OrganizationFactory(slug=f"{name}-org", name=f"{name} org")
    if name == "outsider":
        return f.MembershipFactory(user=f.UserFactory(username=name), organization=org, role=Role.BUYER).user
    if name == "buyer-of-another-dataset":
        user = f.MembershipFactory(user=f.UserFactory(username=name), organization=org, role=Role.BUYER).user
        elsewhere = f.DatasetFactory(supplier=f.OrganizationFactory(slug="elsewhere"), slug="elsewhere-data")
        build_version(elsewhere)
        licensing.purchase(
            user=user, offer=purchase_offer(elsewhere), idempotency_key="own", accept_license=True
        )
        return user
    if name == "supplier-of-another-dataset":
        user = f.MembershipFactory(
            user=f.UserFactory(username=name), organization=org, role=Role.SUPPLIER
        ).user
        own = f.DatasetFactory(supplier=org, slug="own-data")
        build_version(own)
        build_version(own, number=2, publish=False)
        return user
    raise ValueError(name)


# --------------------------------------------------------------------------- binding parameters to objects


def _norm(token: str) -> str:
    token = re.sub(r"[^a-z0-9]", "", token.lower())
    if token.endswith("ies"):
        return token[:-3] + "y"
    if token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def models_named(token: str) -> list:
    """Models a path word names: "orders" -> Order, "access-requests" -> AccessRequest, "task" -> ReviewTask."""
    token = _norm(token)
    if not token:
        return []
    exact = [m for m in apps.get_models() if m._meta.model_name == token]
    return exact or [m for m in apps.get_models() if m._meta.model_name.endswith(token)]


def model_for(path: str, name: str) -> list:
    """The models a path parameter refers to: `{offer_id}` by its name, `{id}` by the word before it."""
    if name in ("id", "pk"):
        before = path.split("{" + name + "}")[0].rstrip("/").split("/")
        return models_named(before[-1]) if before else []
    return models_named(re.sub(r"_(id|pk)$", "", name))


def candidates(world: World, path: str, name: str, schema: dict) -> list:
    """Values that point at the victim's private rows, for one non-dataset path parameter."""
    if schema.get("enum"):
        return schema["enum"][:MAX_CANDIDATES]
    models = model_for(path, name)
    if models and schema.get("type") == "integer":
        values = sorted({pk for m in models for pk in world.private.get(m, ())})
        return values[:MAX_CANDIDATES] or [987654321]
    # A string parameter that is a field of a private row (a label's uid...).
    values = []
    for model, pks in world.private.items():
        if name in {fld.name for fld in model._meta.concrete_fields}:
            values += [
                str(v) for v in model.objects.filter(pk__in=pks).values_list(name, flat=True)[:MAX_CANDIDATES]
            ]
    if values:
        return values[:MAX_CANDIDATES]
    if schema.get("type") == "integer":
        # Unknown noun: any private id that no persona row shares, so a hit cannot be the persona's own.
        theirs = {pk for pks in world.persona_rows.values() for pk in pks}
        ids = sorted({pk for pks in world.private.values() for pk in pks if isinstance(pk, int)} - theirs)
        return ids[:MAX_CANDIDATES] or [987654321]
    return ["canary-unknown"]


def is_dataset_slug(path: str, name: str) -> bool:
    return name == "dataset_slug" or (
        name == "slug" and path.split("{slug}")[0].rstrip("/").endswith("datasets")
    )


def bindings(world: World, path: str, params: list[dict]):
    """Every way to point this path at the victim's data: (values, whether the target is private)."""
    names = [p["name"] for p in params]
    if not names:
        yield {}, False
        return
    by_name = {p["name"]: p.get("schema", {}) for p in params}
    dataset_bound = any(is_dataset_slug(path, n) for n in names)
    seen = set()
    for scenario in world.scenarios if dataset_bound else [None]:
        choices, private = {}, False
        for name in names:
            if scenario and is_dataset_slug(path, name):
                choices[name] = [scenario.slug]
                private = private or scenario.dataset_private
            elif scenario and name == "number":
                choices[name] = [scenario.number]
                private = private or scenario.version_private
            else:
                choices[name] = candidates(world, path, name, by_name[name])
                private = True  # pointing at a private row (or at nothing that exists)
        for combo in itertools.product(*(choices[n] for n in names)):
            values = dict(zip(names, combo, strict=True))
            key = tuple(sorted(values.items()))
            if key not in seen:
                seen.add(key)
                yield values, private


def body_for(schema: dict, operation: dict) -> dict:
    """A request body with every required field filled, so only a permission check can stop it."""
    content = operation.get("requestBody", {}).get("content", {})
    media = content.get("application/json") or next(iter(content.values()), {})
    target = resolve(schema, media.get("schema", {}))
    body = {
        "accept_license": True,
        "approve": True,
        "reason": "walk",
        "message": "walk",
        "reference": "walk",
        "format": "coco",
    }
    for name in target.get("required", []):
        prop = resolve(schema, target.get("properties", {}).get(name, {}))
        body.setdefault(name, sample_value(schema, prop))
    return body


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    if "allOf" in node and len(node["allOf"]) == 1:
        return resolve(schema, node["allOf"][0])
    return node


def sample_value(schema: dict, prop: dict):
    if prop.get("enum"):
        return prop["enum"][0]
    kind = prop.get("type")
    if kind == "boolean":
        return True
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "array":
        return []
    if kind == "object":
        return {}
    if prop.get("format") == "date":
        return "2026-01-01"
    return "canary-draft" if "slug" in str(prop) else "walk"


# --------------------------------------------------------------------------- the walk


PERSONAS = ["anonymous", "outsider", "buyer-of-another-dataset", "supplier-of-another-dataset"]


@pytest.mark.parametrize("persona_name", PERSONAS)
def test_no_operation_shows_or_touches_another_tenants_data(persona_name, api_for):
    world, persona = build_world(persona_name)
    client = api_for(persona)
    schema = api_for().get("/api/schema/?format=json").json()
    clear_own_keys(caches["default"])  # throttling counts start from zero

    leaks: list[str] = []
    walked, private_calls = set(), 0
    for path, operations in sorted(schema["paths"].items()):
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            params = [p for p in operation.get("parameters", []) if p["in"] == "path"]
            query = {
                p["name"]: "walk"
                for p in operation.get("parameters", [])
                if p["in"] == "query" and p.get("required")
            }
            for values, private in bindings(world, path, params):
                url = path
                for name, value in values.items():
                    url = url.replace("{" + name + "}", str(value))
                call = getattr(client, method)
                if method == "get":
                    response = call(url, query)
                else:
                    response = call(url, body_for(schema, operation), format="json")
                walked.add((method, path))
                private_calls += private
                where = f"{method.upper()} {url} as {persona_name}"
                ok = 200 <= response.status_code < 400
                text = _text(response)
                if private and ok:
                    leaks.append(f"{where}: {response.status_code} on the victim's private data")
                elif not private and ok and method != "get" and values:
                    leaks.append(f"{where}: {response.status_code}, a write on the victim's dataset")
                if ok and CANARY in text.lower():
                    leaks.append(f"{where}: {response.status_code} shows the victim's private rows")

    every = {(m, p) for p, ops in schema["paths"].items() for m in ops if m in METHODS}
    assert walked == every  # every operation was called at least once
    assert private_calls > len(every)  # and most of them aimed at private data
    assert not leaks, "\n".join(leaks)


def _text(response) -> str:
    if getattr(response, "streaming", False):
        return "<stream>"
    return response.content.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- the walk's own machinery


def test_path_words_name_the_models_they_address():
    from marketplace.models import AccessRequest, Entitlement, Item, Offer, Order

    assert model_for("/api/v1/orders/{id}/", "id") == [Order]
    assert model_for("/api/v1/access-requests/{id}/decide/", "id") == [AccessRequest]
    assert model_for("/api/v1/entitlements/{id}/", "id") == [Entitlement]
    assert model_for("/api/v1/deliveries/{id}/", "id") == [Delivery]
    assert model_for("/api/v1/offers/{offer_id}/purchase/", "offer_id") == [Offer]
    assert model_for("/x/{item_id}/preview/", "item_id") == [Item]


def test_the_victims_private_rows_are_told_apart_from_the_public_ones():
    world, _ = build_world("outsider")
    private_datasets = set(
        Dataset.objects.filter(pk__in=world.private[Dataset]).values_list("slug", flat=True)
    )
    assert private_datasets == {"canary-draft"}
    assert not any(
        model._meta.model_name == "user" and "outsider" in str(pks) for model, pks in world.private.items()
    )
