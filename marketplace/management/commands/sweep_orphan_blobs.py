"""``manage.py sweep_orphan_blobs [--grace-seconds N]``: delete blobs no row refers to."""

from django.core.management.base import BaseCommand

from marketplace.deliveries import sweeping


class Command(BaseCommand):
    help = "Delete content-addressed blobs no item refers to, older than BLOB_ORPHAN_GRACE_SECONDS."

    def add_arguments(self, parser):
        parser.add_argument(
            "--grace-seconds", type=int, default=None, help="override BLOB_ORPHAN_GRACE_SECONDS"
        )

    def handle(self, *args, grace_seconds, **options):
        result = sweeping.sweep_orphan_blobs(grace_seconds=grace_seconds)
        if result["skipped"]:
            self.stdout.write(f"skipped: {result['in_flight']} deliveries in flight; run again later")
        else:
            self.stdout.write(f"{result['deleted']} orphan blob(s) deleted, {result['kept']} kept")
