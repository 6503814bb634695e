"""Two writers on the embedded SQLite default (issue #14, point 3).

A deferred transaction that reads and then writes cannot wait for a concurrent writer: SQLite
refuses its lock upgrade at once with "database is locked", whatever the busy timeout. The
settings make every transaction IMMEDIATE, so the second writer waits at BEGIN instead. These
tests open real connections on a database file with the settings' own OPTIONS.
"""

from __future__ import annotations

import contextlib
import threading
from unittest import mock

import pytest
from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.db.backends.sqlite3.base import DatabaseWrapper

sqlite_only = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
    reason="the options under test are SQLite's; PostgreSQL queues writers on row locks",
)


def _connection(path, options):
    return DatabaseWrapper(
        {**settings.DATABASES["default"], "NAME": str(path), "OPTIONS": options}, alias=str(path)
    )


def _two_read_then_write_transactions(path, options) -> list:
    setup = _connection(path, options)
    with setup.cursor() as c:
        c.execute("CREATE TABLE seats (id INTEGER PRIMARY KEY, used INTEGER)")
        c.execute("INSERT INTO seats VALUES (1, 0)")
    setup.close()
    both_read = threading.Barrier(2)
    results: list = [None, None]

    def buy(i):
        conn = _connection(path, options)
        connections[conn.alias] = conn  # this thread's handle, so that atomic() finds it
        try:
            with transaction.atomic(using=conn.alias), conn.cursor() as c:
                c.execute("SELECT used FROM seats WHERE id = 1")
                (used,) = c.fetchone()
                # With IMMEDIATE the second never gets here in time: the barrier breaks.
                with contextlib.suppress(threading.BrokenBarrierError):
                    both_read.wait(timeout=2)
                c.execute("UPDATE seats SET used = ? WHERE id = 1", [used + 1])
            results[i] = "ok"
        except OperationalError as exc:
            results[i] = str(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=buy, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    check = _connection(path, options)
    with check.cursor() as c:
        c.execute("SELECT used FROM seats WHERE id = 1")
        results.append(c.fetchone()[0])
    check.close()
    return results


@sqlite_only
def test_the_settings_make_a_second_writer_wait_instead_of_failing(tmp_path, django_db_blocker):
    options = settings.DATABASES["default"]["OPTIONS"]
    assert options["transaction_mode"] == "IMMEDIATE"

    with django_db_blocker.unblock():  # our own database file, not the test database
        results = _two_read_then_write_transactions(tmp_path / "db.sqlite3", options)

    assert results == ["ok", "ok", 2], "both purchases counted, none lost, none refused"


@sqlite_only
def test_without_immediate_transactions_the_same_writers_fail(tmp_path, django_db_blocker):
    # The control: proves the test above would catch a regression to deferred transactions.
    options = {k: v for k, v in settings.DATABASES["default"]["OPTIONS"].items() if k != "transaction_mode"}

    with django_db_blocker.unblock():  # our own database file, not the test database
        results = _two_read_then_write_transactions(tmp_path / "db.sqlite3", options)

    assert any("locked" in str(r) for r in results[:2]), results


@pytest.mark.django_db
def test_a_write_that_still_finds_the_database_locked_answers_503_with_retry_after(api_for, buyer):
    api = api_for(buyer)
    with mock.patch(
        "marketplace.api.auth.ObtainTokenView.post", side_effect=OperationalError("database is locked")
    ):
        response = api.post("/api/v1/auth/token/", {"username": "buyer", "password": "x"}, format="json")

    assert response.status_code == 503
    assert response.json()["code"] == "database_busy" and int(response["Retry-After"]) > 0


@pytest.mark.django_db
def test_other_database_errors_are_not_disguised(client):
    with (
        mock.patch("marketplace.views.auth.LoginView.get", side_effect=OperationalError("no such table: x")),
        pytest.raises(OperationalError),
    ):
        client.get("/accounts/login/")
