"""Server-rendered governance pages: a label's history and a version's provenance. Scoped like the API."""

import json

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

from governance import ledger, provenance
from governance.ledger import signing
from governance.ledger.events import with_geometries
from governance.provenance import history_payload
from marketplace.models import Label


@login_required
def label_history(request, uid):
    """Who did what to one label, when, under which guideline, with a proof for each event."""
    dataset, events = provenance.label_history_events(
        request.user, uid, dataset_slug=request.GET.get("dataset")
    )
    payload = history_payload(dataset, events)
    # Geometries bound by hash are shown beside their hash, from the label rows (ledger.events).
    rows = [
        {
            **entry,
            "payload": json.dumps(
                with_geometries(entry["event"]["payload"], payload["geometries"]),
                indent=1,
                ensure_ascii=False,
            ),
        }
        for entry in payload["events"]
    ]
    latest_label = (
        Label.objects.filter(uid=uid, version__in=provenance.readable_versions(request.user))
        .select_related("version", "item", "category", "annotator", "guideline_version")
        .order_by("-version__number")
        .first()
    )
    return render(
        request,
        "governance/label_history.html",
        {"uid": uid, "dataset": dataset, "label": latest_label, "rows": rows, "history": payload},
    )


@login_required
def version_provenance(request, slug, number):
    """A version's provenance: shares, guideline versions (superseded ones flagged), annotators, labels."""
    version = provenance.get_readable_version(request.user, slug, number)
    summary = provenance.version_provenance(version)
    labels = Paginator(provenance.labels_with_provenance(version), 50).get_page(request.GET.get("page"))
    superseded = Paginator(provenance.superseded_labels(version), 50).get_page(
        request.GET.get("superseded_page")
    )
    return render(
        request,
        "governance/version_provenance.html",
        {
            "dataset": version.dataset,
            "version": version,
            "summary": summary,
            "labels": labels,
            "superseded": superseded,
            "may_read_annotators": provenance.may_read_annotators(request.user, version.dataset),
        },
    )


@login_required
def event_bundle(request, event_id):
    """Download one event's proof bundle for ``verify_offline.py --bundle``."""
    event = provenance.readable_event(request.user, event_id)
    try:
        bundle = ledger.proof_bundle(event)
    except ledger.LedgerError as error:
        return JsonResponse({"code": "no_proof", "detail": str(error)}, status=409)
    response = HttpResponse(json.dumps(bundle, indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="ledger-{event.dataset.slug}-{event.seq}.json"'
    return response


def public_key(request):
    """The tree-head signing key as a PEM file, for ``verify_offline.py --key``."""
    response = HttpResponse(signing.public_key_pem(), content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="registry-ledger-key.pem"'
    return response
