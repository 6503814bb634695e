"""``manage.py sweep_stuck_deliveries``: re-queue (once) or fail deliveries that lost their task."""

from django.core.management.base import BaseCommand

from marketplace.deliveries import sweeping, tasks


class Command(BaseCommand):
    help = (
        "Re-queue deliveries stuck in pending/validating past DELIVERY_STUCK_AFTER; fail them if stuck again."
    )

    def handle(self, *args, **options):
        result = sweeping.sweep_stuck_deliveries(enqueue=tasks.enqueue_ingest)
        self.stdout.write(f"re-queued {result['requeued'] or 'none'}; failed {result['failed'] or 'none'}")
