from django.core.management.base import BaseCommand

from marketplace.demo.loader import load_demo


class Command(BaseCommand):
    help = "Load the demo catalogue (idempotent) and print the demo accounts."

    def handle(self, *args, **options):
        accounts = load_demo()
        self.stdout.write(self.style.SUCCESS("Demo catalogue ready. Log in with:"))
        for username, password, role in accounts:
            self.stdout.write(f"  {role:<9} {username:<10} / {password}")
