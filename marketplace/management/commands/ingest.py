"""``manage.py ingest PATH --dataset SLUG``: ingest a delivery from the command line, synchronously."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from marketplace.deliveries import service as deliveries
from marketplace.errors import DomainError
from marketplace.models import Dataset, Delivery, Organization


def _zip_directory(folder: Path, target) -> None:
    """Zip a delivery folder (regular files only: links are not followed into the archive)."""
    total, limit = 0, settings.DELIVERY_MAX_UNCOMPRESSED_BYTES
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for root, dirs, files in os.walk(folder, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                if path.is_symlink() or not path.is_file():
                    raise CommandError(f"{path} is a link or a special file: not part of a delivery")
                total += path.stat().st_size
                if total > limit:
                    raise CommandError(f"{folder} holds more than the {limit} bytes a delivery may unpack to")
                zf.write(path, path.relative_to(folder).as_posix())


class Command(BaseCommand):
    help = (
        "Ingest a delivery (a zip, or a folder) into a dataset as its next draft version. Creates the "
        "dataset as a draft of --supplier when it does not exist. Exits non-zero with the report when "
        "the delivery is refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the delivery: a .zip archive or a folder")
        parser.add_argument("--dataset", required=True, help="dataset slug")
        parser.add_argument("--supplier", help="supplier organisation slug (needed to create the dataset)")
        parser.add_argument("--format", default="auto", choices=Delivery.Format.values)
        parser.add_argument("--defaults", default="", help="provenance defaults as a JSON object")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print one JSON object")
        parser.add_argument(
            "--no-matching",
            action="store_true",
            help="a new generation: no label is matched to the previous version's (all get new uids)",
        )
        parser.add_argument(
            "--thresholds", default="", help='matching thresholds as a JSON object, e.g. {"iou": 0.6}'
        )

    def handle(
        self,
        *args,
        path,
        dataset,
        supplier,
        format,
        defaults,
        as_json,
        no_matching=False,
        thresholds="",
        **options,
    ):
        source = Path(path)
        if not source.exists():
            raise CommandError(f"{path} does not exist")
        # /dev/zero, a FIFO or a socket would be copied until the disk is full: regular files only,
        # and no bigger than an upload may be.
        if not source.is_dir():
            if not source.is_file():
                raise CommandError(f"{path} is not a regular file or a folder")
            if source.stat().st_size > settings.DELIVERY_MAX_BYTES:
                raise CommandError(
                    f"{path} is {source.stat().st_size} bytes, more than the {settings.DELIVERY_MAX_BYTES} allowed"
                )
        target = self._dataset(dataset, supplier, source.name)
        try:
            provenance_defaults = json.loads(defaults) if defaults else {}
        except ValueError as error:
            raise CommandError(f"--defaults: {error}") from None
        matching: dict = {"enabled": not no_matching}
        if thresholds:
            try:
                matching["thresholds"] = json.loads(thresholds)
            except ValueError as error:
                raise CommandError(f"--thresholds: {error}") from None
        self._matching = matching

        with tempfile.TemporaryFile() as tmp:
            if source.is_dir():
                _zip_directory(source, tmp)
                tmp.seek(0)
                archive, name = File(tmp, name=f"{source.name}.zip"), f"{source.name}.zip"
                delivery = self._create(target, archive, format, provenance_defaults, name)
            else:
                with source.open("rb") as fh:
                    delivery = self._create(
                        target, File(fh, name=source.name), format, provenance_defaults, source.name
                    )
        result = deliveries.ingest_delivery(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        self._print(delivery, result, as_json=as_json)
        if not result.ok:
            raise CommandError(
                f"delivery {delivery.pk} was refused: {delivery.report.get('problem_counts', {}).get('error', 0)} error(s)",
                returncode=1,
            )

    def _dataset(self, slug: str, supplier: str | None, filename: str) -> Dataset:
        found = Dataset.objects.filter(slug=slug).select_related("supplier").first()
        if found is not None:
            if supplier and found.supplier.slug != supplier:
                raise CommandError(
                    f"dataset {slug!r} is supplied by {found.supplier.slug!r}, not {supplier!r}"
                )
            return found
        if not supplier:
            raise CommandError(f"dataset {slug!r} does not exist: give --supplier to create it")
        org = Organization.objects.filter(slug=supplier).first()
        if org is None:
            raise CommandError(f"no organisation {supplier!r}")
        return Dataset.objects.create(
            slug=slug,
            title=slug.replace("-", " ").replace("_", " ").capitalize(),
            summary=f"Created from the delivery {filename}.",
            supplier=org,
            domain="",
        )

    def _create(self, dataset, archive, format, defaults, name) -> Delivery:
        try:
            return deliveries.create_delivery(
                dataset=dataset,
                archive=archive,
                format=format,
                defaults=defaults,
                original_name=name,
                matching=self._matching,
            )
        except DomainError as error:
            raise CommandError(error.detail) from None

    def _print(self, delivery: Delivery, result: deliveries.IngestResult, *, as_json: bool) -> None:
        report = delivery.report or {}
        counts = report.get("counts", {})
        if as_json:
            body = {
                "delivery": delivery.pk,
                "dataset": delivery.dataset.slug,
                "status": delivery.status,
                "version": result.version_number,
                "format": delivery.format,
                "items": counts.get("items", 0),
                "labels": counts.get("labels_by_kind", {}),
                "candidate_labels": counts.get("candidate_labels", 0),
                "categories": counts.get("categories", 0),
                "provenance": report.get("provenance", {}).get("shares", {}),
                "problems": report.get("problems", []),
                "lineage": report.get("lineage"),
            }
            self.stdout.write(json.dumps(body, ensure_ascii=False))
            return
        if result.ok:
            kinds = ", ".join(f"{k} {n}" for k, n in counts.get("labels_by_kind", {}).items()) or "none"
            self.stdout.write(
                self.style.SUCCESS(
                    f"{delivery.dataset.slug} version {result.version_number} (draft) from delivery {delivery.pk} "
                    f"[{delivery.format}]"
                )
            )
            self.stdout.write(
                f"  {counts.get('items', 0)} items, {counts.get('labels', 0)} labels ({kinds}), "
                f"{counts.get('candidate_labels', 0)} candidates, {counts.get('categories', 0)} categories"
            )
            lineage = report.get("lineage") or {}
            if lineage.get("previous_version") is not None:
                c = lineage["counts"]
                self.stdout.write(
                    f"  against version {lineage['previous_version']}: matched by uid {c['uid']}, source id "
                    f"{c['source_id']}, geometry {c['geometry']}, relabel {c['relabel']}; {c['new']} new, "
                    f"{c['removed']} removed, {c['modified']} modified ({c.get('provenance_only', 0)} in provenance "
                    f"only), {c['unchanged']} unchanged"
                )
        for p in report.get("problems", []):
            where = f"{p['file']}{':' + p['location'] if p['location'] else ''}" or "(delivery)"
            line = f"  {p['severity']:<7} {p['code']:<20} {where}: {p['message']}"
            self.stderr.write(line, self.style.ERROR if p["severity"] == "error" else self.style.WARNING)
        if report.get("problems_not_listed"):
            self.stderr.write(f"  ... {report['problems_not_listed']} more problems not listed")
