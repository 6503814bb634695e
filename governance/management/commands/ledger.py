"""``manage.py ledger verify [--dataset SLUG] [--head FILE ...]``, ``ledger prove EVENT_ID``, ``ledger public-key``.

verify exits 0 when every chain, root and signature checks out and every released version still holds
what its signed version_published event covers (governance.ledger.content_verification); 1 with the first broken
event, or the first changed row (table, row, field), of each dataset that does not. prove prints the JSON bundle that ``verify_offline.py --bundle`` checks.
"""

import json
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Exists, OuterRef, Q

from governance import ledger
from governance.ledger import content_verification, verify_chain
from governance.models import LabelEvent, TreeHead
from marketplace.models import Dataset


class Command(BaseCommand):
    help = "Verify the label ledger, print an event's proof bundle, or print the public key."

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="command", required=True)
        verify = commands.add_parser("verify", help="recompute chains and roots against every tree head")
        verify.add_argument("--dataset", help="only this dataset (slug)")
        verify.add_argument(
            "--head",
            action="append",
            default=[],
            metavar="FILE",
            help="a signed tree head JSON file kept outside the database (repeatable)",
        )
        verify.add_argument(
            "--workers",
            type=int,
            default=None,
            help="processes verifying chunks of the chain (PostgreSQL; default: one per CPU there, else 1)",
        )
        prove = commands.add_parser("prove", help="print the proof bundle of one event")
        prove.add_argument("event_id", type=int)
        commands.add_parser("public-key", help="print the PEM public key that verifies tree heads")

    def handle(self, *args, **options):
        command = options["command"]
        if command == "verify":
            workers = options["workers"] or (os.cpu_count() or 1 if connection.vendor == "postgresql" else 1)
            return self.verify(options["dataset"], options["head"], workers)
        if command == "prove":
            return self.prove(options["event_id"])
        self.stdout.write(ledger.public_key_pem(), ending="")

    def verify(self, slug, head_files, workers=1):
        trusted = []
        for path in head_files:
            try:
                trusted.append(json.loads(Path(path).read_text()))
            except (OSError, ValueError) as error:
                raise CommandError(f"cannot read tree head {path}: {error}", returncode=2) from None
        datasets = Dataset.objects.order_by("slug")  # evaluated before any worker forks
        if slug:
            datasets = datasets.filter(slug=slug)
            if not datasets.exists():
                raise CommandError(f"no dataset {slug!r}", returncode=2)
        else:
            datasets = datasets.filter(
                Q(Exists(LabelEvent.objects.filter(dataset=OuterRef("pk"))))
                | Q(Exists(TreeHead.objects.filter(dataset=OuterRef("pk"))))
            )
        broken = []
        for dataset in list(datasets):
            heads = [h for h in trusted if h.get("dataset") == dataset.slug]
            report = verify_chain.verify_dataset(dataset=dataset, trusted_heads=heads, workers=workers)
            # The ledger proves what was signed; this proves the database still holds it.
            differences = content_verification.verify_dataset(dataset)
            for difference in differences:
                self.stdout.write(f"{dataset.slug}: CONTENT CHANGED — {difference}")
            if differences and dataset.slug not in broken:
                broken.append(dataset.slug)
            if report.ok:
                self.stdout.write(
                    f"{dataset.slug}: {'ledger intact' if differences else 'intact'} — {report.events} events, {report.tree_heads} tree heads, "
                    f"root {report.root_hash}"
                )
                continue
            if dataset.slug not in broken:
                broken.append(dataset.slug)
            where = (
                f"first broken event: seq {report.first_broken_seq}"
                + (f" (id {report.first_broken_event_id})" if report.first_broken_event_id else "")
                + f": {report.reason}"
                if report.first_broken_seq is not None
                else report.reason
            )
            self.stdout.write(f"{dataset.slug}: BROKEN — {where}")
            for problem in report.problems:
                self.stdout.write(f"  - {problem}")
        if broken:
            raise CommandError(f"ledger broken in {', '.join(broken)}", returncode=1)

    def prove(self, event_id):
        event = LabelEvent.objects.select_related("dataset").filter(pk=event_id).first()
        if event is None:
            raise CommandError(f"no ledger event {event_id}", returncode=2)
        try:
            bundle = ledger.proof_bundle(event)
        except ledger.LedgerError as error:
            raise CommandError(str(error), returncode=1) from None
        self.stdout.write(json.dumps(bundle, indent=2, ensure_ascii=False))
