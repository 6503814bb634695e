"""COPY statements sent by a helper thread while the caller prepares the next batch's rows.

Ingest writes its labels and their ledger events as batches of COPY text. Sent from the thread that
builds them, each batch alternates the two cores: the client builds text while the server waits,
then the client waits while the server parses, indexes and checks the rows (at 500,000 labels about
30 s of client CPU and 37 s of server CPU, one after the other). With :func:`copy_behind`, the
statements go to a helper thread in order, through a bounded queue, on the transaction's own
connection: the client builds batch k + 1 while the server inserts batch k. Waiting on the server
releases the GIL, so the helper costs the builder little.

- Order: one helper, one queue: the statements run in the order they were given.
- All or nothing holds: the statements run inside the caller's transaction. The first failure stops
  the helper (the rest of the queue is dropped, not sent) and is raised in the caller, at its next
  :func:`copy_rows` or when the block ends; the caller's transaction then rolls back as before.
- ``immediate_constraints``: the deferred foreign-key checks run at the end of each statement, in
  the helper, overlapping the client's work, instead of all at once at commit with the client idle.
  Only for blocks whose rows refer to rows written before them (ingest's labels and events do).
- Outside a block, or on SQLite, :func:`copy_rows` runs the statement at once, as before.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

from django.db import connection

_DEPTH = 2  # batches built ahead of the server: bounded memory (a batch is a few MB of text)
_active = threading.local()


class _CopyBehind:
    def __init__(self, raw, depth: int = _DEPTH):
        self._raw = raw
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="copy-behind", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None and not self._stopping:  # after a failure or a stop: dropped
                    _copy(self._raw, *item)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()

    def put(self, sql: str, text: str) -> None:
        self.raise_error()
        self._queue.put((sql, text))

    def drain(self, execute, sql, params, many, context):
        """A Django execute wrapper: the caller's own statements run after the ones handed over."""
        self._queue.join()
        self.raise_error()
        return execute(sql, params, many, context)

    @property
    def error(self) -> BaseException | None:
        return self._error

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self, *, stop: bool) -> None:
        """Wait for the helper: after the queued statements (``stop=False``) or the one it is running."""
        self._stopping = stop
        self._queue.put(None)
        self._thread.join()


def _copy(raw, sql: str, text: str) -> None:
    # Django's error classes (IntegrityError, OperationalError ...), whichever thread runs it.
    with connection.wrap_database_errors, raw.cursor() as cursor, cursor.copy(sql) as copy:
        copy.write(text)


@contextlib.contextmanager
def copy_behind(*, immediate_constraints: bool = False) -> Iterator[None]:
    """Within the block, :func:`copy_rows` hands its statements to a helper thread (PostgreSQL only).

    Use inside the transaction that must hold the rows; the block ends when every statement has run.
    The caller must not read, within the block, rows it has handed over (they may not be written yet).
    """
    if connection.vendor != "postgresql" or getattr(_active, "pipe", None) is not None:
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    if immediate_constraints:
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    pipe = _CopyBehind(raw)
    _active.pipe = pipe
    try:
        # Any statement of the caller's (a savepoint, a query) waits for the COPYs handed over before it.
        with connection.execute_wrapper(pipe.drain):
            yield
    except BaseException as exc:
        _active.pipe = None
        pipe.close(stop=True)  # the transaction is rolled back by the caller, after the helper is done
        if pipe.error is not None and pipe.error is not exc:
            raise pipe.error from exc  # the first failure, not what it caused in the caller
        raise
    _active.pipe = None
    pipe.close(stop=False)
    pipe.raise_error()
    if immediate_constraints:
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def copy_rows(sql: str, text: str) -> None:
    """Run ``COPY ... FROM STDIN`` with ``text`` (COPY's text format): now, or in the block's helper."""
    pipe = getattr(_active, "pipe", None)
    if pipe is None:
        connection.ensure_connection()
        _copy(connection.connection, sql, text)
    else:
        pipe.put(sql, text)
