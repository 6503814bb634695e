"""Consensus from several annotators' candidates, and the review loop that writes to the ledger."""

import numpy as np
import pytest

from governance.models import Annotator, LabelEvent, ReviewTask
from governance.quality import agreement as ag
from governance.quality import consensus
from marketplace.errors import DomainError
from marketplace.formats import model as fmt
from marketplace.models import Label

from .quality_support import DISPUTED, multi_annotated_version

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # The personas' passwords are hashed with PBKDF2's million rounds otherwise: a second per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --------------------------------------------------------------------------- voting and fusion


def test_the_majority_wins_and_a_tie_decides_nothing():
    assert consensus.majority(["adult", "adult", "child"]) == ("adult", False)
    assert consensus.majority(["adult", "child"]) == (None, True)
    assert consensus.majority([]) == (None, False)


def test_attributes_are_voted_and_numbers_take_the_median():
    decided, ties = consensus.vote_attributes(
        [{"age": "adult", "width_mm": 0.2, "occluded": True}, {"age": "adult", "width_mm": 0.5, "occluded": False},
         {"age": "child", "width_mm": 0.3}]
    )  # fmt: skip
    assert decided == {"age": "adult", "width_mm": 0.3}
    assert ties == ["occluded"]


def test_boxes_are_fused_corner_by_corner():
    assert consensus.fuse_boxes(np.array([[10, 10, 20, 20], [12, 8, 20, 24]])) == [11.0, 9.0, 20.0, 22.0]


def test_keypoints_are_averaged_over_those_who_labelled_them_when_a_majority_did():
    kp = np.array(
        [
            [[10, 10, 2], [50, 50, 1], [0, 0, 0]],
            [[12, 14, 2], [54, 50, 1], [90, 90, 2]],
            [[14, 12, 1], [0, 0, 0], [0, 0, 0]],
        ],
        dtype=float,
    )
    assert consensus.fuse_keypoints(kp) == [12.0, 12.0, 2, 52.0, 50.0, 1, 0.0, 0.0, 0]


def test_an_object_only_one_of_three_annotators_drew_is_not_kept():
    box = [0.0, 0.0, 40.0, 40.0]
    frame = ag.LabelFrame(
        item=np.array([1, 1, 1, 1]),
        annotator=np.array([1, 2, 3, 3]),
        category=np.array([5, 5, 5, 5]),
        kind=np.array(["bbox"] * 4),
        boxes=np.array([box, [2.0, 0.0, 40.0, 40.0], [1.0, 1.0, 40.0, 40.0], [200.0, 200.0, 30.0, 30.0]]),
        uid=np.array(["a", "b", "c", "lonely"], dtype=object),
        geometry=[
            {"bbox": box},
            {"bbox": [2.0, 0.0, 40.0, 40.0]},
            {"bbox": [1.0, 1.0, 40.0, 40.0]},
            {"bbox": [200.0, 200.0, 30.0, 30.0]},
        ],  # fmt: skip
        attributes=[{}, {}, {}, {}],
    )
    proposals = consensus.propose(ag.analyse(frame))
    assert len(proposals) == 1
    assert proposals[0].geometry["bbox"] == [1.0, 0.33, 40.0, 40.0]
    assert sorted(proposals[0].members) == ["a", "b", "c"] and proposals[0].agreeing == 3


# --------------------------------------------------------------------------- writing consensus


def test_consensus_labels_are_written_on_a_draft_with_their_ledger_events(dataset):
    version = multi_annotated_version(dataset, publish=False, finals=False)

    written = consensus.write_consensus(version=version)

    finals = Label.objects.filter(version=version, is_final=True)
    # Per image: two cars (A-3 missed one on the disputed image, but two of three drew it), a person, a class.
    assert written == finals.count() == 5 * 4
    assert set(finals.values_list("source", flat=True)) == {fmt.CONSENSUS}
    disputed = finals.filter(item__key=DISPUTED)
    assert disputed.get(geometry_type=fmt.KEYPOINTS).attributes == {"age_band": "senior"}
    assert disputed.get(geometry_type=fmt.CLASSIFICATION).category.name == "day"
    events = LabelEvent.objects.filter(dataset=dataset, action="consensus")
    assert events.count() == written
    assert (
        len(events.filter(label_uid=disputed.get(geometry_type=fmt.KEYPOINTS).uid).get().payload["members"])
        == 3
    )
    assert consensus.write_consensus(version=version) == 0  # nothing left to decide


def test_consensus_is_refused_on_a_published_version(dataset):
    version = multi_annotated_version(dataset, finals=False)
    with pytest.raises(DomainError) as refused:
        consensus.write_consensus(version=version)
    assert refused.value.code == "version_frozen"


# --------------------------------------------------------------------------- review


def test_the_review_queue_holds_the_images_annotators_disagreed_on(dataset):
    version = multi_annotated_version(dataset)

    opened = consensus.build_review_queue(version=version, threshold=0.8)

    tasks = ReviewTask.objects.filter(version=version)
    assert opened == 1 and [t.item.key for t in tasks] == [DISPUTED]
    assert tasks[0].score < 0.8 and set(tasks[0].components) >= {"geometry_f1", "attribute_agreement"}
    assert consensus.build_review_queue(version=version, threshold=0.8) == 0  # already queued


def test_accepting_writes_an_accepted_event_for_each_final_label(dataset, supplier):
    version = multi_annotated_version(dataset)
    consensus.build_review_queue(version=version)
    task = ReviewTask.objects.get(version=version)
    reviewer = Annotator.objects.create(organization=dataset.supplier, pseudonym="R-1", role="reviewer")

    consensus.accept_review(task=task, user=supplier, reviewer=reviewer, note="Checked the second car")

    task.refresh_from_db()
    assert task.status == "accepted" and task.decided_by == supplier and task.reviewer == reviewer
    events = LabelEvent.objects.filter(dataset=dataset, action="accepted")
    finals = Label.objects.filter(version=version, item=task.item, is_final=True)
    assert sorted(str(e.label_uid) for e in events) == sorted(
        str(u) for u in finals.values_list("uid", flat=True)
    )
    assert {e.actor for e in events} == {"R-1"}
    assert events.first().payload["note"] == "Checked the second car"
    with pytest.raises(DomainError) as twice:
        consensus.reject_review(task=task, user=supplier)
    assert twice.value.code == "already_decided"


def test_rejecting_writes_rejected_events_named_after_the_user(dataset, supplier):
    version = multi_annotated_version(dataset)
    consensus.build_review_queue(version=version)
    task = ReviewTask.objects.get(version=version)

    consensus.reject_review(task=task, user=supplier)

    assert set(LabelEvent.objects.filter(action="rejected").values_list("actor", flat=True)) == {
        "user:supplier"
    }
    assert ReviewTask.objects.get(pk=task.pk).status == "rejected"


def test_a_fix_on_a_draft_changes_the_label_and_records_before_and_after(dataset, supplier):
    version = multi_annotated_version(dataset, publish=False)
    consensus.build_review_queue(version=version)
    task = ReviewTask.objects.get(version=version)
    person = Label.objects.get(version=version, item=task.item, is_final=True, geometry_type=fmt.KEYPOINTS)

    consensus.fix_review(task=task, user=supplier, label_uid=person.uid, attributes={"age_band": "child"})

    person.refresh_from_db()
    assert person.attributes == {"age_band": "child"}
    event = LabelEvent.objects.get(dataset=dataset, action="modified", label_uid=person.uid)
    assert event.payload["before"]["attributes"] == {"age_band": "senior"}
    assert event.payload["after"]["attributes"] == {"age_band": "child"}
    assert ReviewTask.objects.get(pk=task.pk).status == "fixed"


def test_a_published_label_cannot_be_fixed_and_nothing_is_recorded(dataset, supplier):
    version = multi_annotated_version(dataset)
    consensus.build_review_queue(version=version)
    task = ReviewTask.objects.get(version=version)
    person = Label.objects.get(version=version, item=task.item, is_final=True, geometry_type=fmt.KEYPOINTS)
    before = LabelEvent.objects.count()

    with pytest.raises(DomainError) as refused:
        consensus.fix_review(task=task, user=supplier, label_uid=person.uid, attributes={"age_band": "child"})

    assert refused.value.code == "version_frozen"
    assert LabelEvent.objects.count() == before
    assert ReviewTask.objects.get(pk=task.pk).status == "open"


def test_a_fix_with_a_geometry_outside_the_image_is_refused(dataset, supplier):
    version = multi_annotated_version(dataset, publish=False)
    consensus.build_review_queue(version=version)
    task = ReviewTask.objects.get(version=version)
    car = Label.objects.filter(version=version, item=task.item, is_final=True, geometry_type=fmt.BBOX).first()
    with pytest.raises(DomainError) as refused:
        consensus.fix_review(
            task=task, user=supplier, label_uid=car.uid, geometry={"bbox": [600.0, 0.0, 400.0, 10.0]}
        )
    assert refused.value.code == "invalid_geometry"
