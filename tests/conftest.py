"""Personas and a small published dataset that most tests start from.

Personas: `supplier` (of `dataset`), `buyer` (entitled to nothing until a test grants it),
`auditor`, `outsider` (a buyer of another org: logged in, entitled to nothing), and
`other_supplier` (supplies another dataset). Clients: `client_for(user)` logs in a session;
`api_for(user)` authenticates by token, as API users do.
"""

import os

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketplace.catalogue import publication as catalogue_publication
from marketplace.formats import model as fmt
from marketplace.models import Role

from . import factories as f


def _persona(username: str, role: Role, org=None):
    membership = f.MembershipFactory(
        user=f.UserFactory(username=username), role=role, organization=org or f.OrganizationFactory()
    )
    return membership.user


@pytest.fixture
def supplier_org(db):
    return f.OrganizationFactory(name="Northwind", slug="northwind")


@pytest.fixture
def supplier(supplier_org):
    return _persona("supplier", Role.SUPPLIER, supplier_org)


@pytest.fixture
def buyer(db):
    return _persona("buyer", Role.BUYER)


@pytest.fixture
def auditor(db):
    return _persona("auditor", Role.AUDITOR)


@pytest.fixture
def outsider(db):
    return _persona("outsider", Role.BUYER)


@pytest.fixture
def other_supplier(db):
    user = _persona("other-supplier", Role.SUPPLIER)
    f.DatasetFactory(supplier=user.memberships.get().organization, slug="their-dataset")
    return user


def build_version(dataset, *, number=1, items=3, publish=True, guideline_version=None, annotator=None):
    """A version with a datasheet, a two-class schema, `items` images and two labels per image."""
    version = f.VersionFactory(dataset=dataset, number=number)
    f.DatasheetFactory(version=version)
    schema = f.SchemaFactory(version=version)
    car = f.CategoryFactory(schema=schema, name="car", source_id=1, geometry_types=[fmt.BBOX, fmt.POLYGON])
    person = f.CategoryFactory(
        schema=schema,
        name="person",
        source_id=2,
        geometry_types=[fmt.KEYPOINTS],
        keypoint_names=["head", "left_foot", "right_foot"],
        skeleton=[[1, 2], [1, 3]],
    )
    for i in range(items):
        item = f.ItemFactory(version=version, key=f"images/train/{i:04d}.jpg", split="train" if i else "val")
        f.LabelFactory(
            item=item,
            category=car,
            geometry={"bbox": [10.0 + i, 20.0, 100.0, 50.0]},
            guideline_version=guideline_version,
            annotator=annotator,
        )
        f.LabelFactory(
            item=item,
            category=person,
            geometry_type=fmt.KEYPOINTS,
            geometry={
                "keypoints": [50.0, 60.0, 2, 40.0, 200.0, 2, 60.0, 200.0, 1],
                "bbox": [35.0, 55.0, 30.0, 150.0],
            },
            attributes={"age_band": "adult"},
            guideline_version=guideline_version,
            annotator=annotator,
        )
    if publish:
        catalogue_publication.publish_version(version=version, release_notes=f"Release {number}")
        version.refresh_from_db()
    return version


@pytest.fixture
def dataset(supplier_org):
    return f.DatasetFactory(
        supplier=supplier_org, slug="street-scenes", title="Street Scenes", domain="autonomous-driving"
    )


@pytest.fixture
def published_version(dataset):
    return build_version(dataset, number=1)


@pytest.fixture
def draft_dataset(supplier_org):
    """A dataset with a draft version only: visible to its supplier alone."""
    ds = f.DatasetFactory(supplier=supplier_org, slug="secret-draft", title="Secret Draft")
    build_version(ds, number=1, publish=False)
    return ds


@pytest.fixture
def client_for(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def api_for():
    def make(user=None):
        api = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return api

    return make


# --------------------------------------------------------------------------- real services


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


@pytest.fixture(scope="session")
def s3_endpoint():
    """A local S3 endpoint: moto's server in a subprocess, spoken to over HTTP like real S3."""
    import subprocess
    import sys
    from pathlib import Path

    port = _free_port()
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_storage(s3_endpoint, settings):
    """Switch default storage to django-storages' S3 backend on the moto endpoint, with a fresh bucket."""
    import uuid

    import boto3

    bucket = f"registry-{uuid.uuid4().hex[:12]}"
    credentials = {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }
    boto3.client("s3", endpoint_url=s3_endpoint, **credentials).create_bucket(Bucket=bucket)
    settings.STORAGE_BACKEND = "s3"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": s3_endpoint,
                "access_key": "testing",
                "secret_key": "testing",
                "region_name": "us-east-1",
                "file_overwrite": False,
                "querystring_auth": True,
                "querystring_expire": 300,
            },
        },
    }
    return {
        "bucket": bucket,
        "endpoint": s3_endpoint,
        "client": boto3.client("s3", endpoint_url=s3_endpoint, **credentials),
    }


@pytest.fixture(scope="session", autouse=True)
def _own_cache_keys():
    """With CACHE_URL naming Redis, xdist workers share one server: each gets its own key prefix.

    Otherwise one worker's throttle counts and login failures would count against the other's tests,
    and clearing the cache would clear the other's.
    """
    from django.conf import settings
    from django.test import override_settings

    default = settings.CACHES["default"]
    if "redis" not in default["BACKEND"].lower():
        yield
        return
    prefix = f"{default.get('KEY_PREFIX', '')}-test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    with override_settings(CACHES={**settings.CACHES, "default": {**default, "KEY_PREFIX": prefix}}):
        yield


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counts and login failures live in the cache: each test starts from none."""
    from django.core.cache import caches

    clear_own_keys(caches["default"])


def clear_own_keys(cache) -> None:
    """Empty ``cache``; on Redis only the keys under its own prefix (FLUSHDB would empty every worker's).

    ``cache`` is the backend itself (``caches[alias]``), not ``django.core.cache.cache``: that is a
    proxy whose type names no backend, so a test of its type name never saw Redis and every test
    flushed the whole Redis database, the other xdist worker's throttle counts included.
    """
    from django.core.cache.backends.redis import RedisCache

    if isinstance(cache, RedisCache):
        client = cache._cache.get_client(write=True)
        keys = list(client.scan_iter(match=cache.make_key("*"), count=1000))
        if keys:
            client.delete(*keys)
        return
    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Personas log in constantly; a deliberately slow hasher would dominate the suite's time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pytest_configure(config):
    """Under xdist, each worker's tasks go through a broker queue of its own.

    Three tests start a real Celery worker on their xdist worker's test database. On one shared queue,
    a worker started by one test took the tasks another test sent at the same time (its job is in the
    other database), and that test's job never finished: ``pytest -n 2`` on the verify-chain and the
    export worker tests together failed so.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    from django.conf import settings

    from config.celery import app

    queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-{worker}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    app.conf.task_default_queue = queue


@pytest.fixture(autouse=True)
def _celery_in_process(request, settings):
    """Tasks run in-process in tests, even when CI configures a broker for the whole run.

    Only tests marked `celery_worker` send tasks through the real broker (to a worker they start).
    Celery reads its configuration once, so the switch is made on the app, not in Django settings.
    """
    from config.celery import app

    through_broker = request.node.get_closest_marker("celery_worker") is not None and bool(
        settings.CELERY_BROKER_URL
    )
    saved = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = not through_broker
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved
