"""Issue 13: lineage in bounded memory matches exactly as issue 12's in-memory matcher did.

``reference_match_labels`` is issue 12's ``match_labels`` (commit da7b9ff), frozen here: the bounded
matcher (``lineage.match_buckets``, both sides on disk by buckets of whole items) must give every
random delivery the same matches, the same source-id decision and the same report examples.
"""

from __future__ import annotations

import uuid

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.deliveries import lineage
from marketplace.deliveries.lineage import (
    BY_GEOMETRY,
    BY_RELABEL,
    BY_SOURCE_ID,
    BY_UID,
    EXAMPLES,
    NEW,
    SOURCE_ID_TRUST,
    Matches,
    Side,
    Thresholds,
    _codes,
    cross_pairs,
    match_optimal,
    similarity,
)

# --------------------------------------------------------------------------- the frozen reference


def reference_match_labels(old: Side, new: Side, *, thresholds: Thresholds | None = None) -> Matches:
    """``lineage.match_labels`` as issue 12 landed it (da7b9ff): every label in memory, one pass each."""
    limits = thresholds or Thresholds()
    n_old, n_new = len(old), len(new)
    matched_old = np.full(n_new, -1, dtype=np.int64)
    method = np.zeros(n_new, dtype=np.int8)
    sim = np.zeros(n_new, dtype=np.float64)
    taken = np.zeros(n_old, dtype=bool)
    result = Matches(matched_old, method, sim, np.zeros(0, dtype=np.int64), thresholds=limits)
    if n_old == 0 or n_new == 0:
        result.removed = np.arange(n_old, dtype=np.int64)
        return result

    def take(jn: np.ndarray, io: np.ndarray, how: int, s) -> None:
        matched_old[jn] = io
        method[jn] = how
        sim[jn] = s
        taken[io] = True

    item_old, item_new = _codes(old.item, new.item)
    cat_old, cat_new = _codes(old.category, new.category)
    kind_old, kind_new = _codes(old.kind, new.kind)
    grp_old, grp_new = _codes(old.group, new.group)

    # 1. uid: a previous label with the very same uid (uids are unique within a version).
    has_uid = new.has_uid if new.has_uid is not None else np.ones(n_new, dtype=bool)
    order = np.argsort(old.uid, kind="stable")
    pos = np.clip(np.searchsorted(old.uid[order], new.uid), 0, n_old - 1)
    hit = has_uid & (old.uid[order][pos] == new.uid)
    take(np.flatnonzero(hit), order[pos[hit]], BY_UID, 1.0)

    # 2. source id, scoped by the item, one-to-one, when consistent.
    free_new = np.flatnonzero((matched_old < 0) & (new.source_id != ""))
    free_old = np.flatnonzero(~taken & (old.source_id != ""))
    if free_new.size and free_old.size:
        sid_old, sid_new = _codes(old.source_id[free_old], new.source_id[free_new])
        n_sid = int(max(sid_old.max(), sid_new.max())) + 1
        key_old = item_old[free_old] * n_sid + sid_old
        key_new = item_new[free_new] * n_sid + sid_new
        a, b = cross_pairs(key_new, key_old)
        unique = (np.bincount(a, minlength=free_new.size)[a] == 1) & (
            np.bincount(b, minlength=free_old.size)[b] == 1
        )
        jn, io = free_new[a[unique]], free_old[b[unique]]
        same_kind = kind_new[jn] == kind_old[io]
        close = np.zeros(len(jn), dtype=bool)
        for kind in np.unique(new.kind[jn[same_kind]]):
            sel = np.flatnonzero(same_kind & (new.kind[jn] == kind))
            close[sel] = similarity(old, new, io[sel], jn[sel], str(kind), limits) >= limits.for_kind(
                str(kind)
            )
        consistent = same_kind & (grp_new[jn] == grp_old[io]) & ((cat_new[jn] == cat_old[io]) | close)
        result.source_id_pairs, result.source_id_consistent = int(len(jn)), int(consistent.sum())
        # Trust is decided on geometry alone: a tool that renumbers its shapes keeps classes
        # plausible (two cars swap ids) but not boxes, while a corrected export keeps most boxes.
        if len(jn) and close.sum() >= SOURCE_ID_TRUST * len(jn):
            result.source_ids = "used"
            take(jn[consistent], io[consistent], BY_SOURCE_ID, 1.0)
        elif len(jn):
            result.source_ids = "ignored"

    # 3. geometry, per item + class + kind + group; 4. relabel, per item + kind + group.
    for how, with_class in ((BY_GEOMETRY, True), (BY_RELABEL, False)):
        free_new = np.flatnonzero(matched_old < 0)
        free_old = np.flatnonzero(~taken)
        if free_new.size == 0 or free_old.size == 0:
            break
        n_cat = int(max(cat_old.max(), cat_new.max())) + 1 if with_class else 1
        n_kind = int(max(kind_old.max(), kind_new.max())) + 1
        n_grp = int(max(grp_old.max(), grp_new.max())) + 1

        def key(item, cat, kind, grp, rows, n_cat=n_cat, n_kind=n_kind, n_grp=n_grp, with_class=with_class):
            c = cat[rows] if with_class else 0
            return ((item[rows] * n_cat + c) * n_kind + kind[rows]) * n_grp + grp[rows]

        key_new = key(item_new, cat_new, kind_new, grp_new, free_new)
        key_old = key(item_old, cat_old, kind_old, grp_old, free_old)
        a, b = cross_pairs(key_new, key_old)
        for kind in np.unique(new.kind[free_new[a]]) if a.size else ():
            sel = np.flatnonzero(new.kind[free_new[a]] == kind)
            jn, io = free_new[a[sel]], free_old[b[sel]]
            s = similarity(old, new, io, jn, str(kind), limits)
            threshold = (
                limits.for_kind(str(kind))
                if how == BY_GEOMETRY
                else max(limits.relabel, limits.for_kind(str(kind)))
            )
            if how == BY_RELABEL:
                s = np.where(cat_new[jn] != cat_old[io], s, 0.0)  # same class was the geometry pass's
            mj, mi, ms = match_optimal(a[sel], b[sel], s, key_new[a[sel]], threshold)
            take(free_new[mj], free_old[mi], how, ms)
    result.removed = np.flatnonzero(~taken)
    return result


def reference_examples(old: Side, new: Side, m: Matches) -> dict:
    """The report's examples as issue 12's ``Lineage.section`` chose them, from whole sides."""

    def uid(value) -> str:
        return str(uuid.UUID(bytes=bytes(value).ljust(16, b"\0")))

    def written(j) -> str:
        return uid(old.uid[m.old[j]]) if m.old[j] >= 0 else uid(new.uid[j])

    examples: dict[str, list] = {}
    for code, name in ((BY_SOURCE_ID, "source_id"), (BY_GEOMETRY, "geometry"), (BY_RELABEL, "relabel")):
        examples[name] = [
            {
                "uid": written(j),
                "item": str(new.item[j]),
                "category": str(new.category[j]),
                "was": str(old.category[m.old[j]]),
                "similarity": round(float(m.similarity[j]), 4),
            }
            for j in np.flatnonzero(m.method == code)[:EXAMPLES]
        ]
    examples["new"] = [
        {"uid": written(j), "item": str(new.item[j]), "category": str(new.category[j])}
        for j in np.flatnonzero(m.method == NEW)[:EXAMPLES]
    ]
    examples["removed"] = [
        {"uid": uid(old.uid[i]), "item": str(old.item[i]), "category": str(old.category[i])}
        for i in m.removed[:EXAMPLES]
    ]
    return examples


# --------------------------------------------------------------------------- random deliveries

KINDS = ("bbox", "bbox", "polygon", "mask", "keypoints", "polyline", "cuboid_3d", "classification")
CATEGORIES = ("car", "person", "dog")
GROUPS = ("", "", "", "candidate:a1", "candidate:a2")


def _geometry(rng: np.random.Generator, kind: str) -> dict:
    # A small canvas, so that labels overlap, crowd and contest each other.
    x, y = (float(v) for v in rng.integers(0, 40, 2))
    w, h = (float(v) for v in rng.integers(4, 24, 2))
    if kind == "bbox":
        return {"bbox": [x, y, w, h]}
    if kind in ("polygon", "mask"):
        return {"polygons": [[x, y, x + w, y, x + w, y + h, x, y + h * float(rng.choice([0.5, 1.0]))]]}
    if kind == "keypoints":
        points = []
        for _ in range(3):
            points += [
                x + float(rng.integers(0, int(w))),
                y + float(rng.integers(0, int(h))),
                int(rng.choice([0, 2])),
            ]
        return {"keypoints": points}
    if kind == "polyline":
        return {"points": [x, y, x + w, y + h]}
    if kind == "cuboid_3d":
        return {"cuboid_3d": {"position": [x / 10, y / 10, float(rng.integers(0, 3))]}}
    return {}


def _nudged(rng: np.random.Generator, geometry: dict) -> dict:
    """The same object after a small fix: every coordinate moved by at most a pixel or two."""

    out = {}
    for key, value in geometry.items():
        if key == "polygons":
            out[key] = [[v + float(rng.integers(-2, 3)) for v in ring] for ring in value]
        elif key == "keypoints":
            out[key] = [v if k % 3 == 2 else v + float(rng.integers(-2, 3)) for k, v in enumerate(value)]
        elif key == "cuboid_3d":
            out[key] = {"position": [v + float(rng.uniform(-0.3, 0.3)) for v in value["position"]]}
        else:
            out[key] = [v + float(rng.integers(-2, 3)) for v in value]
    return out


def random_delivery(seed: int) -> tuple[list[dict], list[dict]]:
    """A previous version's labels and a re-delivery of them: kept, nudged, relabelled, deleted,
    added, with uids kept or not and source ids kept, renumbered, shared or missing."""
    rng = np.random.default_rng(seed)
    n_items = int(rng.integers(1, 7))
    sizes = {f"images/{k}.jpg": (int(rng.choice([0, 60])), int(rng.choice([0, 64]))) for k in range(n_items)}
    items = list(sizes)
    old_rows = []
    for n in range(int(rng.integers(0, 45))):
        item, kind = str(rng.choice(items)), str(rng.choice(KINDS))
        old_rows.append(
            {
                "uid": uuid.uuid4(),
                "item": item,
                "category": str(rng.choice(CATEGORIES)),
                "kind": kind,
                "group": str(rng.choice(GROUPS)),
                "source_id": "" if rng.random() < 0.1 else str(n + 1),
                "geometry": _geometry(rng, kind),
                "height": sizes[item][0],
                "width": sizes[item][1],
            }
        )
    keep_uids, keep_ids = rng.random(), rng.random()  # per delivery: how often uids and ids survive
    renumber = rng.random() < 0.3
    new_rows = []
    for row in old_rows:
        edit = rng.choice(["keep", "nudge", "relabel", "delete", "move"], p=[0.35, 0.3, 0.1, 0.1, 0.15])
        if edit == "delete":
            continue
        new = {**row, "uid": row["uid"] if rng.random() < keep_uids * 0.3 else uuid.uuid4()}
        if edit == "nudge":
            new["geometry"] = _nudged(rng, row["geometry"])
        elif edit == "relabel":
            new["category"] = str(rng.choice(CATEGORIES))
        elif edit == "move":
            new["geometry"] = _geometry(rng, row["kind"])
        if rng.random() > keep_ids:
            new["source_id"] = "" if rng.random() < 0.5 else str(int(rng.integers(1, 50)))
        new_rows.append(new)
    for _ in range(int(rng.integers(0, 12))):
        item, kind = str(rng.choice(items + ["images/only-new.jpg"])), str(rng.choice(KINDS))
        height, width = sizes.get(item, (0, 0))
        new_rows.append(
            {
                "uid": uuid.uuid4(),
                "item": item,
                "category": str(rng.choice(CATEGORIES)),
                "kind": kind,
                "group": str(rng.choice(GROUPS)),
                "source_id": str(int(rng.integers(1, 60))) if rng.random() < 0.5 else "",
                "geometry": _geometry(rng, kind),
                "height": height,
                "width": width,
            }
        )
    if renumber:
        ids = [r["source_id"] for r in new_rows]
        rng.shuffle(ids)
        new_rows = [{**r, "source_id": s} for r, s in zip(new_rows, ids, strict=True)]
    rng.shuffle(new_rows)
    return old_rows, new_rows


def bounded_match(old_rows: list[dict], new_rows: list[dict], *, buckets: int, thresholds: Thresholds):
    """What ``match_delivery`` does with the rows: into buckets of items, then ``match_buckets``."""
    item_codes: dict[str, int] = {}
    sides = []
    for rows in (new_rows, old_rows):
        side = lineage._Buckets(buckets)
        for r in rows:
            code = item_codes.setdefault(r["item"], len(item_codes))
            record = lineage._record(
                r["category"], r["kind"], r["group"], r["source_id"], r["geometry"], r["height"], r["width"]
            )
            side.add(r["uid"].bytes, code, record)
        side.flush()
        sides.append(side)
    new, old = sides
    try:
        return lineage.match_buckets(old, new, item_names=list(item_codes), thresholds=thresholds)
    finally:
        new.close()
        old.close()


def assert_same_matches(bounded: Matches, reference: Matches) -> None:
    assert bounded.old.tolist() == reference.old.tolist()
    assert bounded.method.tolist() == reference.method.tolist()
    assert np.allclose(bounded.similarity, reference.similarity, rtol=0, atol=1e-12)
    assert bounded.removed.tolist() == reference.removed.tolist()
    assert (bounded.source_ids, bounded.source_id_pairs, bounded.source_id_consistent) == (
        reference.source_ids,
        reference.source_id_pairs,
        reference.source_id_consistent,
    )


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    buckets=st.integers(1, 5),
    iou=st.sampled_from([0.5, 0.3, 0.8]),
)
def test_the_bounded_matcher_matches_random_deliveries_as_the_in_memory_one_did(seed, buckets, iou):
    old_rows, new_rows = random_delivery(seed)
    thresholds = Thresholds(iou=iou)
    old, new = Side.from_rows(old_rows), Side.from_rows(new_rows)
    reference = reference_match_labels(old, new, thresholds=thresholds)

    bounded, examples = bounded_match(old_rows, new_rows, buckets=buckets, thresholds=thresholds)

    assert_same_matches(bounded, reference)
    assert examples == reference_examples(old, new, reference)
    assert_same_matches(lineage.match_labels(old, new, thresholds=thresholds), reference)


def test_random_deliveries_exercise_every_pass():
    """The generator is worth its name: over a few seeds every method and both id decisions occur."""
    methods, decisions = set(), set()
    for seed in range(40):
        old_rows, new_rows = random_delivery(seed)
        m = reference_match_labels(Side.from_rows(old_rows), Side.from_rows(new_rows))
        methods |= set(m.method.tolist())
        decisions.add(m.source_ids)
    assert methods == {NEW, BY_UID, BY_SOURCE_ID, BY_GEOMETRY, BY_RELABEL}
    assert {"used", "ignored"} <= decisions
    assert 0 < SOURCE_ID_TRUST < 1


def test_uids_for_matching_disabled_are_random_version_4_uuids_held_as_bytes():
    uids = lineage._Uids(lineage._fresh_uids(2000))
    assert len(uids) == 2000 and len(set(uids)) == 2000
    assert {(u.version, u.variant) for u in uids} == {(4, uuid.RFC_4122)}
    assert len(lineage._fresh_uids(0)) == 0
    # NumPy's S16 drops trailing zero bytes; the uid read back is still the one stored.
    zero_tail = uuid.UUID(bytes=b"\x12" * 8 + b"\x80" + b"\x00" * 7)
    assert lineage._Uids(np.array([zero_tail.bytes], dtype="S16"))[0] == zero_tail
