"""``manage.py expire_failed_deliveries [--days N]``: delete old failed deliveries' archives."""

from django.core.management.base import BaseCommand

from marketplace.deliveries import retention


class Command(BaseCommand):
    help = "Delete the archives of deliveries that failed more than DELIVERY_FAILED_RETENTION_DAYS ago."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="override DELIVERY_FAILED_RETENTION_DAYS")

    def handle(self, *args, days, **options):
        count = retention.expire_failed_archives(days=days)
        self.stdout.write(f"{count} failed delivery archive(s) expired")
