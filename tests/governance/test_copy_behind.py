"""COPY statements handed to a helper thread (governance.ledger.copying): order, errors, all or nothing."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from governance.ledger.copying import copy_behind, copy_rows

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY FROM STDIN: PostgreSQL"),
]

COPY_PARENT = "COPY copy_behind_parent (n) FROM STDIN"
COPY_CHILD = "COPY copy_behind_child (n, parent) FROM STDIN"


@pytest.fixture
def tables():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE copy_behind_parent (n int PRIMARY KEY)")
        cursor.execute(
            "CREATE TABLE copy_behind_child (id serial, n int PRIMARY KEY, parent int REFERENCES copy_behind_parent "
            "DEFERRABLE INITIALLY DEFERRED)"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE copy_behind_child, copy_behind_parent")


def _lines(numbers, parent=None) -> str:
    return "".join(f"{n}\n" if parent is None else f"{n}\t{parent}\n" for n in numbers)


def _count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), coalesce(sum(n), 0) FROM {table}")
        return cursor.fetchone()


def test_statements_run_in_order_and_commit_with_the_transaction(tables):
    with transaction.atomic(), copy_behind(immediate_constraints=True):
        for batch in range(20):
            # Each child refers to the parent the statement before it wrote: out of order, its
            # foreign key (checked at the end of each statement here) would fail.
            copy_rows(COPY_PARENT, _lines([batch]))
            copy_rows(COPY_CHILD, _lines(range(batch * 1000, batch * 1000 + 1000), parent=batch))
    assert _count("copy_behind_parent") == (20, sum(range(20)))
    assert _count("copy_behind_child") == (20_000, sum(range(20_000)))


def test_a_query_in_the_block_sees_every_row_handed_over_before_it(tables):
    with transaction.atomic(), copy_behind():
        for batch in range(10):
            copy_rows(COPY_PARENT, _lines(range(batch * 5000, batch * 5000 + 5000)))
            assert _count("copy_behind_parent")[0] == (batch + 1) * 5000


def test_a_failed_statement_is_raised_in_the_caller_and_nothing_after_it_is_sent(tables):
    with pytest.raises(IntegrityError), transaction.atomic(), copy_behind(immediate_constraints=True):
        copy_rows(COPY_PARENT, _lines([1]))
        for batch in range(50):
            # The third batch refers to a parent that does not exist: with immediate constraints the
            # statement fails in the helper; the caller hears of it at a later hand-over or at the end.
            copy_rows(
                COPY_CHILD, _lines(range(batch * 100, batch * 100 + 100), parent=1 if batch != 2 else 2)
            )
    assert _count("copy_behind_parent") == (0, 0)  # rolled back: nothing of the block remains
    assert _count("copy_behind_child") == (0, 0)
    # The sequence is not transactional: it shows how many rows the server was sent. Batches after the
    # failed one were dropped, not sent (all 50 would have taken 5,000 values).
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value FROM copy_behind_child_id_seq")
        assert cursor.fetchone()[0] <= 300


def test_deferred_constraints_are_restored_after_the_block(tables):
    with transaction.atomic():
        with copy_behind(immediate_constraints=True):
            copy_rows(COPY_PARENT, _lines([1]))
        # Deferred again: a child before its parent is fine, checked at the commit.
        copy_rows(COPY_CHILD, _lines([10], parent=7))
        copy_rows(COPY_PARENT, _lines([7]))
    assert _count("copy_behind_child") == (1, 10)


def test_an_error_in_the_caller_stops_the_helper_and_rolls_back(tables):
    class Stop(Exception):
        pass

    with pytest.raises(Stop), transaction.atomic(), copy_behind():
        for batch in range(5):
            copy_rows(COPY_PARENT, _lines(range(batch * 1000, batch * 1000 + 1000)))
        raise Stop
    assert _count("copy_behind_parent") == (0, 0)
    # The connection is usable afterwards (the helper is gone, the transaction rolled back).
    with transaction.atomic():
        copy_rows(COPY_PARENT, _lines([1, 2, 3]))
    assert _count("copy_behind_parent") == (3, 6)


def test_outside_a_block_a_statement_runs_at_once(tables):
    with transaction.atomic():
        copy_rows(COPY_PARENT, _lines([4, 5]))
        assert _count("copy_behind_parent") == (2, 9)
