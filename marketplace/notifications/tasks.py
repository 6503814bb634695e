"""Celery task of notifications: email them after the commit that created them."""

from celery import shared_task

from . import service


@shared_task(
    name="marketplace.tasks.send_notification_emails_task",  # the name queued messages carry
    acks_late=True,  # re-running is safe: a notification is emailed once, then marked
    autoretry_for=(OSError,),  # SMTP errors are OSErrors; the unsent ones are retried
    retry_backoff=True,
    max_retries=5,
)
def send_notification_emails_task(notification_ids: list[int]) -> int:
    """Email notifications after the commit that created them (notifications.service)."""
    return service.send_notification_emails(notification_ids=notification_ids)


def email_after_commit(sender, *, notification_ids: list[int], **kwargs) -> None:
    """Receiver of ``notifications_created`` (sent on commit): queue the emails."""
    send_notification_emails_task.delay(notification_ids)
