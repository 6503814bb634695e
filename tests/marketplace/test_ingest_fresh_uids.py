"""FreshUids: uuid4's uids, drawn from one os.urandom call per batch."""

from __future__ import annotations

import os
import uuid

import pytest

from marketplace.deliveries import report
from marketplace.deliveries.report import FreshUids, label_uid


def test_fresh_uids_are_uuid4s_of_the_same_random_bytes(monkeypatch):
    # The same 16 bytes per uid as uuid.uuid4 would have read: the same uid, bits and all.
    stream = os.urandom(16 * 10)
    reads = []

    def urandom(n):
        reads.append(n)
        return stream[:n]

    monkeypatch.setattr(report.os, "urandom", urandom)
    fresh = FreshUids(batch=5)
    got = [fresh() for _ in range(7)]
    assert reads == [80, 80]  # one read per batch, not per uid
    chunks = [stream[16 * i : 16 * (i + 1)] for i in range(5)] + [stream[0:16], stream[16:32]]
    assert got == [uuid.UUID(bytes=c, version=4) for c in chunks]


@pytest.mark.parametrize("fill", [b"\x00", b"\xff", b"\x5a"])
def test_fresh_uids_set_the_version_and_variant_bits_as_uuid4_does(monkeypatch, fill):
    monkeypatch.setattr(report.os, "urandom", lambda n: fill * n)
    uid = FreshUids(batch=3)()
    assert uid.version == 4 and uid.variant == uuid.RFC_4122
    assert uid == uuid.UUID(bytes=fill * 16, version=4)


def test_fresh_uids_are_distinct_and_label_uid_uses_them_only_without_a_source_uid():
    fresh = FreshUids(batch=64)
    uids = {label_uid(1, None, fresh) for _ in range(1000)} | {label_uid(1, "", fresh)}
    assert len(uids) == 1001 and all(u.version == 4 for u in uids)
    own = "0b4b7a1e-8a3c-4e38-9f0e-2d2bd0c1f2a5"
    assert label_uid(1, own, fresh) == uuid.UUID(own)
    assert label_uid(1, "7", fresh) == uuid.uuid5(report.UID_NAMESPACE, "1:7")


def test_a_uuid_made_from_its_int_is_uuids_own():
    import pickle

    for value in (0, 1, uuid.uuid4().int, (1 << 128) - 1):
        made, real = report.uuid_of_int(value), uuid.UUID(int=value)
        assert type(made) is uuid.UUID
        assert (made, hash(made), str(made), repr(made), made.is_safe, made.bytes) == (
            real,
            hash(real),
            str(real),
            repr(real),
            real.is_safe,
            real.bytes,
        )
        assert pickle.loads(pickle.dumps(made)) == real  # noqa: S301 - our own bytes
        with pytest.raises(TypeError):
            made.int = 5  # immutable, as UUID's own
