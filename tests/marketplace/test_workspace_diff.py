"""The version diff: items by key, final labels by uid, classes and guidelines, computed in the database."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from django.core.management import call_command

from marketplace.catalogue import publication as catalogue_publication
from marketplace.models import Dataset, Item, Label
from marketplace.workspace import diff as workspace_diff
from marketplace.workspace import lifecycle as workspace_lifecycle
from tests import factories as f
from tests.conftest import build_version

from .workspace_support import fast_passwords  # noqa: F401  (autouse fixture)

pytestmark = pytest.mark.django_db


def expected_diff(old, new) -> dict:
    """The same diff, computed the slow, obvious way: every row into Python and compared."""

    def items(version):
        return {
            key: rest
            for key, *rest in Item.objects.filter(version=version).values_list(
                "key", "sha256", "split", "width", "height", "synthetic", "attributes"
            )
        }

    def labels(version):
        return {
            uid: rest
            for uid, *rest in Label.objects.filter(version=version, is_final=True).values_list(
                "uid",
                "item__key",
                "category__name",
                "geometry_type",
                "geometry",
                "attributes",
                "iscrowd",
                "guideline_version_id",
            )
        }

    oi, ni, ol, nl = items(old), items(new), labels(old), labels(new)
    kept = ol.keys() & nl.keys()
    changed = {u for u in kept if ol[u][:6] != nl[u][:6]}
    before = Counter(v[1] for v in ol.values())
    after = Counter(v[1] for v in nl.values())
    return {
        "items": {
            "before": len(oi),
            "after": len(ni),
            "added": len(ni.keys() - oi.keys()),
            "removed": len(oi.keys() - ni.keys()),
            "changed": sum(1 for k in oi.keys() & ni.keys() if oi[k] != ni[k]),
            "unchanged": sum(1 for k in oi.keys() & ni.keys() if oi[k] == ni[k]),
        },
        "labels": {
            "before": len(ol),
            "after": len(nl),
            "added": len(nl.keys() - ol.keys()),
            "removed": len(ol.keys() - nl.keys()),
            "changed": len(changed),
            "unchanged": len(kept) - len(changed),
            "relabelled": sum(1 for u in kept if ol[u][6] != nl[u][6]),
        },
        "classes": {name: (before[name], after[name]) for name in before.keys() | after.keys()},
        "changed_uids": {str(u) for u in changed},
    }


def test_the_diff_of_the_two_demo_versions_of_urban_street_scenes_is_exact(
    settings, tmp_path, django_assert_max_num_queries, client
):
    settings.MEDIA_ROOT = tmp_path
    call_command("demo", stdout=io.StringIO())
    streets = Dataset.objects.get(slug="urban-street-scenes")
    v1, v2 = streets.versions.get(number=1), streets.versions.get(number=2)

    # A fixed number of aggregate queries, however many labels the versions hold.
    with django_assert_max_num_queries(16):
        diff = workspace_diff.diff_versions(old=v1, new=v2, examples=100)
    want = expected_diff(v1, v2)

    assert diff["items"] == want["items"]
    assert diff["labels"] == want["labels"]
    assert {c["name"]: (c["before"], c["after"]) for c in diff["classes"]} == want["classes"]
    assert {e["uid"] for e in diff["examples"]["changed"]} == want["changed_uids"]
    for c in diff["classes"]:
        assert c["delta"] == c["after"] - c["before"]
        assert c["after"] - c["before"] == c["added"] - c["removed"]
    # What the demo did between the two releases, in its own words: 8 new images and one box
    # tightened on every tenth earlier image, re-labelled under guideline v1.1.
    assert diff["items"]["added"] == 8 and diff["items"]["removed"] == 0 and diff["items"]["changed"] == 0
    assert diff["labels"]["changed"] == diff["labels"]["relabelled"] == 2 and diff["labels"]["removed"] == 0
    assert diff["guideline_versions"]["added"][0]["tag"] == "v1.1"
    assert [g["tag"] for g in diff["guideline_versions"]["kept"]] == ["v1.0"]

    # The changelog on the dataset page says the same, to anyone.
    html = client.get("/datasets/urban-street-scenes/").content.decode()
    changelog = html.split('id="changelog"')[1]
    assert "Version 2" in changelog and "Version 1" in changelog and "First release." in changelog
    assert f"+{want['labels']['added']}" in changelog and "+8" in changelog


def _copy(version, to, *, skip=(), move=(), relabel=None):
    """Copy a version's items and labels into ``to`` with the same uids, as a re-delivery would."""
    cats = {c.name: c for c in to.schema.categories.all()}
    items = {}
    for item in Item.objects.filter(version=version):
        items[item.key] = f.ItemFactory(version=to, key=item.key, sha256=item.sha256, split=item.split)
    for label in Label.objects.filter(version=version).select_related("item", "category"):
        if label.uid in skip:
            continue
        geometry = {"bbox": [0.0, 0.0, 1.0, 1.0]} if label.uid in move else label.geometry
        f.LabelFactory(
            uid=label.uid,
            item=items[label.item.key],
            category=cats[label.category.name],
            geometry_type=label.geometry_type,
            geometry=geometry,
            attributes=label.attributes,
            guideline_version=relabel if relabel and label.uid in move else label.guideline_version,
        )
    return items


def test_a_label_is_matched_by_uid_across_versions(dataset):
    old_gv = f.GuidelineVersionFactory(guideline=f.GuidelineFactory(dataset=dataset, title="Guide"), tag="v1")
    new_gv = f.GuidelineVersionFactory(guideline=old_gv.guideline, tag="v2")
    v1 = build_version(dataset, number=1, items=4, guideline_version=old_gv, publish=False)
    v1.guideline_versions.add(old_gv)
    catalogue_publication.publish_version(version=v1)
    v2 = workspace_lifecycle.start_draft(dataset=dataset)
    uids = list(
        Label.objects.filter(version=v1).order_by("item__key", "category__name").values_list("uid", flat=True)
    )
    # Given: label 0 moved (under a new guideline), label 1 removed, one image replaced, one new label.
    items = _copy(v1, v2, skip={uids[1]}, move={uids[0]}, relabel=new_gv)
    Item.objects.filter(pk=items["images/train/0003.jpg"].pk).update(sha256="f" * 64)
    new_label = f.LabelFactory(
        item=items["images/train/0002.jpg"], category=v2.schema.categories.get(name="car")
    )
    v2.guideline_versions.add(old_gv, new_gv)

    diff = workspace_diff.diff_versions(old=v1, new=v2)

    assert diff["items"] == {"before": 4, "after": 4, "added": 0, "removed": 0, "changed": 1, "unchanged": 3}
    assert diff["labels"] == {
        "before": 8,
        "after": 8,
        "added": 1,
        "removed": 1,
        "changed": 1,
        "unchanged": 6,
        "relabelled": 1,
    }
    assert [e["uid"] for e in diff["examples"]["added"]] == [str(new_label.uid)]
    assert [e["uid"] for e in diff["examples"]["removed"]] == [str(uids[1])]
    assert [e["uid"] for e in diff["examples"]["changed"]] == [str(uids[0])]
    assert diff["guideline_versions"]["added"] == [
        {"guideline": "Guide", "tag": "v2", "sha256": new_gv.sha256}
    ]
    assert (
        diff["guideline_versions"]["removed"] == [] and diff["guideline_versions"]["kept"][0]["tag"] == "v1"
    )
    want = expected_diff(v1, v2)
    assert diff["labels"] == want["labels"] and diff["items"] == want["items"]


def test_candidate_labels_are_counted_apart(dataset):
    v1 = build_version(dataset, number=1, items=1)
    v2 = workspace_lifecycle.start_draft(dataset=dataset)
    items = _copy(v1, v2)
    f.LabelFactory(
        item=items["images/train/0000.jpg"], category=v2.schema.categories.get(name="car"), is_final=False
    )
    diff = workspace_diff.diff_versions(old=v1, new=v2)
    assert diff["labels"]["added"] == 0 and diff["candidate_labels"] == {"before": 0, "after": 1}


def test_released_diffs_are_cached_and_drafts_are_not(dataset, django_assert_num_queries):
    v1 = build_version(dataset, number=1, items=2)
    v2 = build_version(dataset, number=2, items=3)
    first = workspace_diff.cached_diff(old=v1, new=v2)
    with django_assert_num_queries(0):
        assert workspace_diff.cached_diff(old=v1, new=v2) == first
    v3 = build_version(dataset, number=3, items=1, publish=False)
    assert workspace_diff.cached_diff(old=v2, new=v3)["items"]["removed"] == 2
    catalogue_publication.publish_version(version=v3)
