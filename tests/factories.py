"""factory_boy factories for every model the tests build. Keep them realistic and small."""

import hashlib
from datetime import date

import factory
from django.contrib.auth import get_user_model

from governance.models import Annotator, Guideline, GuidelineVersion
from marketplace import models
from marketplace.formats import model as fmt


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pass-word-123")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Membership

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    role = models.Role.BUYER


class LicenseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.License

    name = factory.Sequence(lambda n: f"License {n}")
    spdx_id = ""
    commercial_use = True
    ai_training = True


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Dataset

    slug = factory.Sequence(lambda n: f"dataset-{n}")
    title = factory.Sequence(lambda n: f"Dataset {n}")
    summary = "Street scenes with boxes."
    supplier = factory.SubFactory(OrganizationFactory)
    domain = "autonomous-driving"
    task_types = factory.LazyFunction(lambda: ["detection"])
    tags = factory.LazyFunction(lambda: ["street"])


class VersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.DatasetVersion

    dataset = factory.SubFactory(DatasetFactory)
    number = factory.Sequence(lambda n: n + 1)


class DatasheetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Datasheet

    version = factory.SubFactory(VersionFactory)
    purpose = "Detection research."


class SchemaFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.AnnotationSchema

    version = factory.SubFactory(VersionFactory)


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Category

    schema = factory.SubFactory(SchemaFactory)
    name = factory.Sequence(lambda n: f"class{n}")
    source_id = factory.Sequence(lambda n: n + 1)
    geometry_types = factory.LazyFunction(lambda: [fmt.BBOX])


class AttributeSpecFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.AttributeSpec

    schema = factory.SubFactory(SchemaFactory)
    name = factory.Sequence(lambda n: f"attr{n}")


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Item

    version = factory.SubFactory(VersionFactory)
    key = factory.Sequence(lambda n: f"images/train/{n:05d}.jpg")
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.key.encode()).hexdigest())
    storage_key = factory.LazyAttribute(lambda o: f"blobs/{o.sha256}.jpg")
    width = 640
    height = 480
    split = "train"


class GuidelineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Guideline

    dataset = factory.SubFactory(DatasetFactory)
    title = factory.Sequence(lambda n: f"Guideline {n}")


class GuidelineVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GuidelineVersion

    guideline = factory.SubFactory(GuidelineFactory)
    tag = factory.Sequence(lambda n: f"v1.{n}")
    text = factory.LazyAttribute(lambda o: f"Draw tight boxes ({o.tag}).")
    effective_date = date(2026, 1, 1)


class AnnotatorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Annotator

    organization = factory.SubFactory(OrganizationFactory)
    pseudonym = factory.Sequence(lambda n: f"A-{n}")


class LabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Label

    item = factory.SubFactory(ItemFactory)
    version = factory.LazyAttribute(lambda o: o.item.version)
    category = factory.LazyAttribute(lambda o: CategoryFactory(schema=SchemaFactory(version=o.item.version)))
    geometry_type = fmt.BBOX
    geometry = factory.LazyFunction(lambda: {"bbox": [10.0, 20.0, 100.0, 50.0]})


class OfferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Offer

    dataset = factory.SubFactory(DatasetFactory)
    license = factory.SubFactory(LicenseFactory)
    access_mode = models.Offer.AccessMode.PURCHASE
    price = 100


class EntitlementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Entitlement

    organization = factory.SubFactory(OrganizationFactory)
    dataset = factory.SubFactory(DatasetFactory)
    license = factory.SubFactory(LicenseFactory)
