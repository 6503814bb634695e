"""Consensus and review: turning several annotators' candidates into one final label, and the queue
of images where they disagreed too much for that to be trusted without a person looking.

Consensus, per object (a cluster of matched candidates, see ``governance.quality.agreement``):
* it exists if a strict majority of the image's annotators drew it;
* its class and every attribute are decided by majority vote (numbers by the median); a tie
  decides nothing and is listed in ``ties`` so a reviewer settles it;
* boxes are fused by averaging the corners of the matched boxes; keypoints by averaging each
  keypoint over the annotators who labelled it, kept when a majority labelled it, with the
  majority's visibility; polygons, masks, polylines and cuboids are not averaged (an average of
  two outlines is no outline): the member that agrees best with the others (the medoid) is taken.
Image classes: a majority vote over the annotators' classification labels.

Review: ``build_review_queue`` opens a task for every image whose agreement score falls under a
threshold. A reviewer accepts, fixes or rejects; every decision is written to the ledger, one
event per final label of the image (``accepted`` / ``rejected``; ``modified`` with before and
after for a fix). Fixing changes a label, so it is only possible on a draft version: a published
version is immutable, and its fixes belong in the next version.
"""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

import numpy as np
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from governance import ledger
from governance.ledger.events import label_state
from governance.models import Annotator, ReviewTask
from governance.quality import agreement
from marketplace.errors import DomainError
from marketplace.formats import model as fmt
from marketplace.models import Category, DatasetVersion, Label

DEFAULT_REVIEW_THRESHOLD = 0.8


# --------------------------------------------------------------------------- voting and fusion


def majority(values: Sequence) -> tuple[object | None, bool]:
    """The most common value and whether it is a tie (then the value is None)."""
    counts = Counter(agreement.value_key(v) for v in values)
    if not counts:
        return None, False
    ranked = counts.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None, True
    winner = ranked[0][0]
    return next(v for v in values if agreement.value_key(v) == winner), False


def vote_attributes(members: Sequence[dict]) -> tuple[dict, list[str]]:
    """Attribute values decided across the members' attribute dicts; the names left tied."""
    decided, ties = {}, []
    for name in sorted({k for m in members for k in m}):
        values = [m[name] for m in members if m.get(name) is not None]
        if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            decided[name] = statistics.median(values)
            continue
        value, tie = majority(values)
        if tie:
            ties.append(name)
        elif value is not None:
            decided[name] = value
    return decided, ties


def fuse_boxes(boxes: np.ndarray) -> list[float]:
    """The mean [x, y, w, h] of matched boxes, averaged by corner so the result stays a box."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1 = boxes[:, 0].mean(), boxes[:, 1].mean()
    x2, y2 = (boxes[:, 0] + boxes[:, 2]).mean(), (boxes[:, 1] + boxes[:, 3]).mean()
    return [round(float(v), 2) for v in (x1, y1, x2 - x1, y2 - y1)]


def fuse_keypoints(keypoints: np.ndarray) -> list[float]:
    """Per keypoint: the mean position over those who labelled it, if a majority did; else unlabelled."""
    kp = np.asarray(keypoints, dtype=np.float64)  # (members, K, 3)
    members = kp.shape[0]
    labelled = kp[..., 2] > 0
    count = labelled.sum(axis=0)
    keep = count * 2 > members
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (kp[..., :2] * labelled[..., None]).sum(axis=0) / count[:, None]
    visible = (kp[..., 2] == 2).sum(axis=0)
    occluded = (kp[..., 2] == 1).sum(axis=0)
    v = np.where(keep, np.where(visible >= occluded, 2, 1), 0)
    out: list[float] = []
    for k in range(kp.shape[1]):
        if keep[k]:
            out += [round(float(mean[k, 0]), 2), round(float(mean[k, 1]), 2), int(v[k])]
        else:
            out += [0.0, 0.0, 0]
    return out


# --------------------------------------------------------------------------- proposals


@dataclass
class Proposal:
    """One final label that consensus would write: what, and who it came from."""

    item: int
    category: int
    geometry_type: str
    geometry: dict
    attributes: dict
    members: list[str]  # candidate label uids
    agreeing: int  # annotators who drew it
    annotators: int  # annotators of the image
    guideline: int = -1
    ties: list[str] = field(default_factory=list)


def propose(analysis: agreement.Analysis, *, quorum: float = 0.5) -> list[Proposal]:
    """The consensus labels of the analysed candidates: one per cluster that a majority drew."""
    frame = analysis.frame
    if not len(frame):
        return []
    items, item_index = np.unique(frame.item, return_inverse=True)
    real = frame.annotator != agreement.CONSENSUS
    raters = agreement.annotators_per_item(item_index[real], frame.annotator[real], len(items))
    support = np.zeros(len(frame))  # how well each row agrees with its matches: picks the medoid
    for m in analysis.matches:
        np.add.at(support, m.matched_a, m.similarity)
        np.add.at(support, m.matched_b, m.similarity)
    proposals: list[Proposal] = []
    order = np.argsort(analysis.cluster, kind="stable")
    clusters = analysis.cluster[order]
    starts = np.flatnonzero(np.r_[True, clusters[1:] != clusters[:-1]])
    for lo, hi in zip(starts, [*starts[1:], len(order)], strict=True):
        rows = order[lo:hi]
        kind = str(frame.kind[rows[0]])
        if kind not in agreement.MEASURED_KINDS:
            continue  # classifications are voted per image below; 3D cuboids are not matched
        of = int(raters[item_index[rows[0]]])
        agreeing = len(set(frame.annotator[rows].tolist()))
        if agreeing <= of * quorum:
            continue
        proposals.append(_fuse(frame, rows, kind, support, agreeing, of))
    proposals += _vote_classes(frame, items, item_index, raters)
    return proposals


def _fuse(
    frame: agreement.LabelFrame, rows: np.ndarray, kind: str, support, agreeing: int, of: int
) -> Proposal:
    medoid = rows[int(np.argmax(support[rows]))]
    geometry = dict(frame.geometry[medoid])
    if kind == fmt.KEYPOINTS:
        points = [frame.geometry[r].get("keypoints", []) for r in rows]
        if len({len(p) for p in points}) == 1:
            geometry["keypoints"] = fuse_keypoints(np.asarray(points).reshape(len(rows), -1, 3))
    if "bbox" in geometry:
        boxes = [frame.geometry[r]["bbox"] for r in rows if "bbox" in frame.geometry[r]]
        geometry["bbox"] = fuse_boxes(np.asarray(boxes))
    attributes, ties = vote_attributes([frame.attributes[r] for r in rows])
    guideline, _ = majority(frame.guideline[rows].tolist())
    return Proposal(
        item=int(frame.item[rows[0]]),
        category=int(frame.category[rows[0]]),
        geometry_type=kind,
        geometry=geometry,
        attributes=attributes,
        members=[str(frame.uid[r]) for r in rows] if frame.uid is not None else [],
        agreeing=agreeing,
        annotators=of,
        guideline=int(guideline) if guideline is not None else -1,
        ties=ties,
    )


def _vote_classes(frame, items, item_index, raters) -> list[Proposal]:
    rows = np.flatnonzero((frame.kind == fmt.CLASSIFICATION) & (frame.annotator != agreement.CONSENSUS))
    out = []
    for pos in np.unique(item_index[rows]):
        mine = rows[item_index[rows] == pos]
        # One vote per annotator: the first classification label each gave the image.
        _, first = np.unique(frame.annotator[mine], return_index=True)
        votes = mine[first]
        category, tie = majority(frame.category[votes].tolist())
        if tie or category is None:
            continue  # nothing decided: the review queue shows the image (its class agreement is low)
        winners = votes[frame.category[votes] == category]
        if len(winners) * 2 <= raters[pos]:
            continue
        attributes, ties = vote_attributes([frame.attributes[r] for r in winners])
        guideline, _ = majority(frame.guideline[winners].tolist())
        out.append(
            Proposal(
                item=int(items[pos]),
                category=int(category),
                geometry_type=fmt.CLASSIFICATION,
                geometry={},
                attributes=attributes,
                members=[str(frame.uid[r]) for r in winners] if frame.uid is not None else [],
                agreeing=len(winners),
                annotators=int(raters[pos]),
                guideline=int(guideline) if guideline is not None else -1,
                ties=ties,
            )
        )
    return out


def propose_for_version(
    version: DatasetVersion, *, threshold: float = agreement.DEFAULT_THRESHOLD
) -> list[Proposal]:
    """Consensus proposals for a version's candidates."""
    data = agreement.load_version_labels(version)
    return propose(agreement.analyse(data.candidates, threshold=threshold, sigmas=data.sigmas))


@transaction.atomic
def write_consensus(*, version: DatasetVersion, threshold: float = agreement.DEFAULT_THRESHOLD) -> int:
    """Write consensus final labels on a draft, for images that have candidates and no final label yet.

    Each new label gets a "consensus" ledger event naming the candidates it was made from.
    """
    version = DatasetVersion.objects.select_for_update().get(pk=version.pk)
    if version.is_frozen:
        raise DomainError(
            f"{version} is {version.status}: consensus labels go into a new draft.",
            code="version_frozen",
            status_code=HTTPStatus.CONFLICT,
        )
    done = set(Label.objects.filter(version=version, is_final=True).values_list("item_id", flat=True))
    proposals = [p for p in propose_for_version(version, threshold=threshold) if p.item not in done]
    now = timezone.now()
    labels = [
        Label(
            uid=uuid.uuid4(),
            version=version,
            item_id=p.item,
            category_id=p.category,
            geometry_type=p.geometry_type,
            geometry=p.geometry,
            attributes=p.attributes,
            is_final=True,
            source=Label.Source.CONSENSUS,
            guideline_version_id=p.guideline if p.guideline >= 0 else None,
            made_at=now,
            source_ref="consensus",
        )
        for p in proposals
    ]
    Label.objects.bulk_create(labels, batch_size=1000)
    by_uid = {
        lab.uid: lab
        for lab in Label.objects.filter(version=version, uid__in=[lab.uid for lab in labels]).select_related(
            "item", "category", "guideline_version", "version"
        )
    }
    events = (
        ledger.label_event(
            by_uid[lab.uid],
            action="consensus",
            actor="consensus",
            occurred_at=now,
            extra={"members": p.members, "agreeing": p.agreeing, "annotators": p.annotators, "ties": p.ties},
        )
        for lab, p in zip(labels, proposals, strict=True)
    )
    ledger.append_events(dataset=version.dataset, events=events)
    return len(labels)


# --------------------------------------------------------------------------- review queue


def low_agreement_items(
    version: DatasetVersion, *, threshold: float = DEFAULT_REVIEW_THRESHOLD
) -> dict[int, dict]:
    """The images of a version whose agreement score is under the threshold, with their scores."""
    data = agreement.load_version_labels(version)
    if not len(data.candidates):
        return {}
    analysis = agreement.analyse(data.candidates, sigmas=data.sigmas)
    scores = agreement.item_scores(analysis, [name for name, _ in data.attributes])
    return {item: s for item, s in scores.items() if s["score"] < threshold}


def build_review_queue(*, version: DatasetVersion, threshold: float = DEFAULT_REVIEW_THRESHOLD) -> int:
    """Open a review task for every image under the agreement threshold; return how many were opened.

    Idempotent: an image that already has a task (open or decided) does not get a second one. The
    scores are computed before the transaction (a long read holds no lock); the unique (version,
    image) constraint settles a race between two builders.
    """
    if not 0 < threshold <= 1:
        raise DomainError("threshold must be in (0, 1]", code="invalid_threshold")
    low = low_agreement_items(version, threshold=threshold)
    with transaction.atomic():
        existing = set(ReviewTask.objects.filter(version=version).values_list("item_id", flat=True))
        tasks = [
            ReviewTask(
                version=version,
                item_id=item,
                score=s["score"],
                components={k: v for k, v in s.items() if k != "score"},
                threshold=threshold,
            )
            for item, s in sorted(low.items())
            if item not in existing
        ]
        ReviewTask.objects.bulk_create(tasks, ignore_conflicts=True)
    return len(tasks)


def accept_review(*, task: ReviewTask, user, reviewer: Annotator | None = None, note: str = "") -> ReviewTask:
    """The reviewer confirms the image's final labels: an "accepted" event per label."""
    return _decide(task=task, user=user, reviewer=reviewer, note=note, outcome=ReviewTask.Status.ACCEPTED)


def reject_review(*, task: ReviewTask, user, reviewer: Annotator | None = None, note: str = "") -> ReviewTask:
    """The reviewer refuses the image's final labels: a "rejected" event per label."""
    return _decide(task=task, user=user, reviewer=reviewer, note=note, outcome=ReviewTask.Status.REJECTED)


def fix_review(
    *,
    task: ReviewTask,
    user,
    label_uid: uuid.UUID | str,
    category: str | None = None,
    geometry: dict | None = None,
    attributes: dict | None = None,
    reviewer: Annotator | None = None,
    note: str = "",
) -> ReviewTask:
    """The reviewer corrects one final label of the image (drafts only): a "modified" event, before and after."""
    changes = {"category": category, "geometry": geometry, "attributes": attributes}
    if all(v is None for v in changes.values()):
        raise DomainError("Say what to fix: category, geometry or attributes.", code="nothing_to_fix")
    return _decide(
        task=task,
        user=user,
        reviewer=reviewer,
        note=note,
        outcome=ReviewTask.Status.FIXED,
        fix=(str(label_uid), changes),
    )


@transaction.atomic
def _decide(*, task, user, reviewer, note, outcome, fix=None) -> ReviewTask:
    # Lock the task: two reviewers deciding the same image at once must not both write events.
    task = ReviewTask.objects.select_for_update().select_related("version__dataset", "item").get(pk=task.pk)
    if task.status != ReviewTask.Status.OPEN:
        raise DomainError(
            f"This image was already reviewed ({task.status}).", code="already_decided", status_code=409
        )
    version = task.version
    if reviewer is not None and reviewer.organization_id != version.dataset.supplier_id:
        raise DomainError("The reviewer is not one of the supplier's annotators.", code="invalid_reviewer")
    actor = reviewer.pseudonym if reviewer is not None else f"user:{user.get_username()}"
    now = timezone.now()
    extra = {"review_task": task.pk, "score": task.score, "note": note}
    labels = _labels_under_review(task)
    if fix is None:
        events = [
            ledger.label_event(
                label,
                action=outcome,
                actor=actor,
                occurred_at=now,
                extra=extra,
                version_number=version.number,
            )
            for label in labels
        ]
    else:
        events = [_apply_fix(task, labels, fix, actor=actor, at=now, extra=extra)]
    if not events:
        raise DomainError("The image has no label to review.", code="nothing_to_review", status_code=409)
    ledger.append_events(dataset=version.dataset, events=events)
    task.status = outcome
    task.reviewer = reviewer
    task.decided_by = user
    task.decided_at = now
    task.note = note
    task.save()
    return task


def _labels_under_review(task: ReviewTask) -> list[Label]:
    """The image's final labels; its candidates when consensus has not been written yet."""
    labels = Label.objects.filter(version=task.version, item=task.item).select_related(
        "item", "category", "annotator", "guideline_version", "version"
    )
    finals = [lab for lab in labels if lab.is_final]
    return finals or list(labels)


def _apply_fix(
    task: ReviewTask, labels: list[Label], fix, *, actor: str, at, extra: dict
) -> ledger.EventData:
    label_uid, changes = fix
    if task.version.is_frozen:
        raise DomainError(
            f"{task.version} is {task.version.status}: its labels cannot change. Accept or reject here, "
            "and fix the label in the next version.",
            code="version_frozen",
            status_code=409,
        )
    label = next((lab for lab in labels if str(lab.uid) == label_uid), None)
    if label is None:
        raise DomainError("No such label on this image.", code="not_found", status_code=404)
    # The row is overwritten below: its geometry goes into the event inline, the one place it stays
    # (ledger.events: the hash rule's exception for a state about to be overwritten in place).
    before = label_state(
        category=label.category.name,
        geometry_type=label.geometry_type,
        geometry=label.geometry,
        attributes=label.attributes,
        is_final=label.is_final,
        item=label.item.key,
        inline=True,
    )
    if changes["category"] is not None:
        category = Category.objects.filter(schema__version=task.version, name=changes["category"]).first()
        if category is None:
            raise DomainError(
                f"No class {changes['category']!r} in this version's schema.", code="invalid_category"
            )
        label.category = category
    if changes["geometry"] is not None:
        problems = fmt.validate_geometry(
            label.geometry_type, changes["geometry"], label.item.width, label.item.height
        )
        if problems:
            raise DomainError("; ".join(problems), code="invalid_geometry")
        label.geometry = changes["geometry"]
    if changes["attributes"] is not None:
        if not isinstance(changes["attributes"], dict):
            raise DomainError("attributes must be an object", code="invalid_attributes")
        label.attributes = {**label.attributes, **changes["attributes"]}
    label.save()
    return ledger.label_event(
        label,
        action="modified",
        actor=actor,
        occurred_at=at,
        before=before,
        extra={**extra, "decision": "fixed"},
        version_number=task.version.number,
    )


# --------------------------------------------------------------------------- reviewers


def eligible_reviewers(version: DatasetVersion) -> QuerySet[Annotator]:
    """Who may be named as a review's reviewer: the supplier's active annotators who labelled this dataset."""
    labelled = Label.objects.filter(annotator=OuterRef("pk"), version__dataset_id=version.dataset_id)
    return (
        Annotator.objects.filter(organization_id=version.dataset.supplier_id, active=True)
        .filter(Exists(labelled))
        .order_by("pseudonym")
    )


def reviewer_named(version: DatasetVersion, pseudonym: str) -> Annotator | None:
    """The reviewer a decision names (None when it names nobody), or invalid_reviewer."""
    if not pseudonym:
        return None
    reviewer = eligible_reviewers(version).filter(pseudonym=pseudonym).first()
    if reviewer is None:
        raise DomainError(
            "Name one of the annotators who labelled this dataset as the reviewer.", code="invalid_reviewer"
        )
    return reviewer
