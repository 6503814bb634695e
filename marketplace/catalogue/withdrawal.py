"""Withdrawing a dataset: what staff do instead of deleting one that has released versions (issue #16).

A released version is evidence (buyers hold licenses on it, the ledger witnesses it), so neither a
supplier nor staff can delete its dataset: the models and a database trigger refuse. Staff withdraw it:

- a ``DatasetWithdrawal`` row (reason, who, when), written once, never changed or deleted;
- the dataset leaves the public catalogue (status ``delisted``); its supplier and organisations that
  hold an entitlement still see its page, which says that it is withdrawn and why
  (``marketplace.visibility.datasets`` already shows delisted datasets to them);
- a ``dataset_withdrawn`` event in the dataset's ledger with the reason, and a tree head signed over
  it, so the withdrawal is as provable as the publication. The actor is ``registry:staff``: the
  ledger is never erased, so it names no person (the row keeps the user for the registry itself).

Its offers are deactivated (nobody can order it any more); entitlements are not revoked: what a buyer
licensed stays theirs to use under its terms.
"""

from __future__ import annotations

from http import HTTPStatus

from django.db import transaction
from django.utils import timezone

from governance import ledger

from ..errors import DomainError, ErrorCode, LoginRequired
from ..models import Dataset, DatasetWithdrawal, Offer

ACTOR = "registry:staff"


def withdraw_dataset(*, dataset: Dataset, reason: str, user) -> DatasetWithdrawal:
    """Withdraw a dataset with a reason; staff only. Refuses a second withdrawal (409)."""
    if user is None or not user.is_authenticated:
        raise LoginRequired("Log in as the registry's staff to withdraw a dataset.")
    if not user.is_staff:
        raise DomainError(
            "Only the registry's staff can withdraw a dataset.",
            code=ErrorCode.PERMISSION_DENIED,
            status_code=HTTPStatus.FORBIDDEN,
        )
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("Say why the dataset is withdrawn: buyers read it.", code=ErrorCode.REASON_REQUIRED)
    if len(reason) > DatasetWithdrawal.REASON_MAX_LENGTH:
        raise DomainError(
            f"The reason is longer than {DatasetWithdrawal.REASON_MAX_LENGTH} characters.",
            code=ErrorCode.INVALID,
        )
    with transaction.atomic():
        dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
        if DatasetWithdrawal.objects.filter(dataset=dataset).exists():
            raise DomainError(
                "This dataset is already withdrawn.",
                code=ErrorCode.ALREADY_WITHDRAWN,
                status_code=HTTPStatus.CONFLICT,
            )
        withdrawal = DatasetWithdrawal.objects.create(
            dataset=dataset, reason=reason, withdrawn_by=user, withdrawn_at=timezone.now()
        )
        Dataset.objects.filter(pk=dataset.pk).update(status=Dataset.Status.DELISTED)
        Offer.objects.filter(dataset=dataset, active=True).update(active=False)
        ledger.record_dataset_event(
            dataset=dataset,
            action="dataset_withdrawn",
            actor=ACTOR,
            payload={"reason": reason},
            occurred_at=withdrawal.withdrawn_at,
        )
        ledger.sign_tree_head(dataset=dataset)
    return withdrawal


def withdrawal_of(dataset: Dataset) -> DatasetWithdrawal | None:
    """The dataset's withdrawal, if any."""
    return DatasetWithdrawal.objects.filter(dataset_id=dataset.pk).first()
